# syntax=docker/dockerfile:1
#
# Image of the digit-recognition service (the default, last target) and of the training job.
#
#   docker build -t mnist-digits .                     # runtime: FastAPI + onnxruntime, no TensorFlow
#   docker build --target train -t mnist-digits-train .  # training: TensorFlow, writes /app/models
#
# docs/deployment.md explains the layout; tests/deploy/test_deploy.py checks it.

# One pinned base for every stage, so the venv built in `builder` runs on the same Python in `runtime`.
FROM python:3.11.13-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app


# --- builder: a venv with the service's dependencies and nothing else ---------------------------
FROM base AS builder
RUN python -m venv /opt/venv
# Only pyproject.toml goes in here, so that this layer is rebuilt when the dependencies change,
# not on every code change. The project itself is not installed: the runtime runs it from /app.
COPY pyproject.toml ./
# `pip install .` would install the project itself (training/ included) and need all its source
# before this layer; reading [project].dependencies with tomllib installs the core (service)
# requirements only, never an extra.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt


# --- train-builder: the same venv plus the `train` extra (TensorFlow, tf2onnx, ...) -------------
FROM builder AS train-builder
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['train']))" \
        > /tmp/requirements-train.txt \
    && pip install --no-cache-dir -r /tmp/requirements-train.txt


# --- train: `docker compose --profile train run train` --------------------------------------------
# Writes the ONNX model, its metadata and its report into /app/models (a bind mount of ./models).
FROM base AS train
# Compose runs this as the host user (so that the new files in ./models are theirs), a uid with no
# home directory in the image: keep Keras' and matplotlib's caches in /tmp.
ENV MNIST_DATA_DIR=/data \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2
COPY --from=train-builder /opt/venv /opt/venv
COPY training/ ./training/
# Without a bind mount, the unprivileged user still needs somewhere to write the model.
RUN mkdir /app/models && chown 10001:10001 /app/models
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["train", "--model", "improved", "--data-dir", "/data", "--output-dir", "/app/models"]


# --- runtime: the service ------------------------------------------------------------------------
FROM base AS runtime
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 digits \
    && useradd --system --uid 10001 --gid digits --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin digits
COPY --from=builder /opt/venv /opt/venv
# The service finds its model as models/ beside the service package (service/config.py), so the
# two directories sit side by side in /app and `python -m service` runs from there. They stay
# owned by root: the service only reads them, and the process cannot rewrite its own code.
COPY service/ ./service/
COPY models/ ./models/
USER 10001:10001
# The service listens on 127.0.0.1 by default; a container must accept connections from outside.
# HTTP on 8000; the KServe v2 gRPC API on 8001 (Triton's port).
ENV DIGITS_HOST=0.0.0.0 \
    DIGITS_PORT=8000 \
    DIGITS_GRPC_PORT=8001
EXPOSE 8000 8001
# Slim images have no curl: probe readiness with the standard library. urlopen raises on a
# refused connection, a timeout or any non-2xx answer (503 while loading or draining), so the
# command exits 1 unless the model is loaded and warmed up.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DIGITS_PORT', '8000') + '/health/ready', timeout=4)"]
CMD ["python", "-m", "service"]
