"""The deployment files: Dockerfile, .dockerignore, docker-compose.yml, nginx and Kubernetes.

There is no Docker engine where these tests run, so the image is never built. Instead:

* the files are linted and schema-checked offline (hadolint, the compose-spec schema,
  kubernetes-validate) and read for the properties that matter (what the runtime stage copies,
  who it runs as, what it runs);
* the image's runtime is reproduced on the host: a directory laid out like the image's /app
  (copies of what the runtime stage COPYs), the image's environment, and the Dockerfile's exact
  CMD and HEALTHCHECK commands, parsed from the file and run unchanged;
* the slow test builds the image's venv with the builder stage's own RUN commands, so that a
  dependency missing from pyproject.toml's core list fails here, not in production;
* nginx runs the compose load balancer's config in front of two service processes, with a
  stand-in for Docker's DNS server, to show round-robin, re-resolution after scaling, and the
  body-size limit.

Tools that CI installs (hadolint, check-jsonschema, kubernetes-validate, nginx) skip the tests that
need them on a developer's machine without them, and fail under CI=true.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from harness import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
K8S = ROOT / "deploy" / "kubernetes"
K8S_MANIFESTS = ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml")
# The oldest Kubernetes minor still commonly run, and a recent one.
K8S_VERSIONS = ("1.29.0", "1.33.0")
# Python packages that only training needs; none may reach the runtime image.
TRAINING_ONLY = {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "matplotlib", "tqdm"}
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
READY_TIMEOUT_S = 90


def require_tool(name: str) -> str:
    """The path of a command-line tool: beside this Python (pip-installed), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    message = f"{name} is not installed: .ci/run installs it (see docs/deployment.md, 'What is validated')"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload, no-any-return]


# --- Reading the Dockerfile --------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name!r} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages and their instructions: continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and current):
            continue  # comments, and blank lines inside a continuation, are dropped
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            logical.append(current.strip())
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=parts[0], instructions=[]))
        else:
            assert stages, f"instruction before FROM: {line}"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def stage_chain(stages: list[Stage], name: str) -> list[Stage]:
    """A stage and the earlier stages it is built FROM, nearest first."""
    by_name = {s.name: s for s in stages}
    chain = [by_name[name]]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return chain


def image_env(stages: list[Stage], name: str) -> dict[str, str]:
    """The ENV a stage's containers start with (its own and inherited ENV instructions)."""
    env: dict[str, str] = {}
    for stage in reversed(stage_chain(stages, name)):
        for instruction in stage.all("ENV"):
            for item in shlex.split(instruction.args):
                key, _, value = item.partition("=")
                env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), f"${m.group(1)}"), value)
    return env


def copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(from-stage or None for the build context, sources, destination) of each COPY."""
    result = []
    for instruction in stage.all("COPY"):
        words = shlex.split(instruction.args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        result.append((source_stage, paths[:-1], paths[-1]))
    return result


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def healthcheck(runtime: Stage) -> list[str]:
    command = runtime.last("HEALTHCHECK").exec_form()
    assert command, 'HEALTHCHECK must be exec form: HEALTHCHECK [options] CMD ["python", "-c", ...]'
    return command


@pytest.fixture(scope="module")
def settings_fields() -> set[str]:
    from service.config import Settings

    return set(Settings.model_fields)


def test_hadolint_reports_nothing() -> None:
    """No error, warning, info or style finding at all."""
    hadolint = require_tool("hadolint")
    result = run([hadolint, "--no-color", "--format", "json", str(DOCKERFILE)])
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], result.stdout + result.stderr


def test_hadolint_is_not_vacuous(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install fastapi\nCMD python -m service\n")
    findings = {f["code"] for f in json.loads(run([hadolint, "--format", "json", str(bad)]).stdout)}
    assert {"DL3006", "DL3013", "DL3042", "DL3025"} <= findings


def test_multi_stage_and_the_runtime_is_the_default_target(stages: list[Stage], runtime: Stage) -> None:
    names = [s.name for s in stages]
    assert len(stages) >= 3 and {"builder", "train", "runtime"} <= set(names), names
    # `docker build .` without --target builds the last stage: it must be the service.
    assert runtime.name == "runtime"


def test_base_images_are_pinned(stages: list[Stage]) -> None:
    names = {s.name for s in stages}
    external = [s.base for s in stages if s.base not in names]
    assert external, "no base image"
    for image in external:
        assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), (
            f"{image}: pin the full version (python:3.11.x-slim-bookworm) or a digest"
        )
        assert "slim" in image, f"{image}: the runtime base should be a slim image"


def test_runtime_copies_only_the_venv_the_service_and_the_models(stages: list[Stage], runtime: Stage) -> None:
    assert [(src or "context", paths, dest) for src, paths, dest in copies(runtime)] == [
        ("builder", ["/opt/venv"], "/opt/venv"),
        ("context", ["service/"], "./service/"),
        ("context", ["models/"], "./models/"),
    ]
    # Everything else in the runtime image comes from its base stages, which copy nothing.
    for stage in stage_chain(stages, "runtime")[1:]:
        assert not copies(stage), f"stage {stage.name} is a base of runtime and copies files"
    assert not runtime.all("ADD"), "use COPY"


def test_no_training_dependency_in_the_runtime_image(stages: list[Stage]) -> None:
    """Neither the runtime stage nor the builder whose venv it copies mentions a training package."""
    for name in ("runtime", "builder"):
        for stage in stage_chain(stages, name):
            text = " ".join(i.args for i in stage.instructions).lower()
            for word in (*TRAINING_ONLY, "optional-dependencies", "[train", ".[", "training/"):
                assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), f"{word!r} in stage {stage.name}"


def test_runtime_runs_as_an_unprivileged_numeric_user(runtime: Stage) -> None:
    user = runtime.last("USER").args
    uid = user.split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can check it without a passwd file.
    assert uid.isdigit() and int(uid) >= 1000, user
    assert runtime.instructions.index(runtime.last("USER")) > runtime.instructions.index(runtime.all("COPY")[-1])


def test_cmd_is_exec_form_python_dash_m_service(runtime: Stage) -> None:
    assert runtime.last("CMD").exec_form() == ["python", "-m", "service"]
    assert not runtime.all("ENTRYPOINT")


def test_runtime_environment_and_port(stages: list[Stage], runtime: Stage) -> None:
    env = image_env(stages, "runtime")
    assert env["DIGITS_HOST"] == "0.0.0.0"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # HTTP, then the KServe v2 gRPC API.
    assert runtime.last("EXPOSE").args.split() == [env["DIGITS_PORT"], env["DIGITS_GRPC_PORT"]] == ["8000", "8001"]
    workdirs = [i.args for s in reversed(stage_chain(stages, "runtime")) for i in s.all("WORKDIR")]
    assert workdirs[-1] == "/app"


def test_healthcheck_probes_readiness_with_python(runtime: Stage, healthcheck: list[str]) -> None:
    assert healthcheck[:2] == ["python", "-c"]
    assert "/health/ready" in healthcheck[2] and "127.0.0.1" in healthcheck[2]
    options = dict(re.findall(r"--([\w-]+)=(\S+)", runtime.last("HEALTHCHECK").args))
    assert {"interval", "timeout", "start-period", "retries"} <= set(options), options


def test_train_target_installs_the_train_extra_and_writes_app_models(stages: list[Stage]) -> None:
    train = {s.name: s for s in stages}["train"]
    chain_text = " ".join(i.args for s in stage_chain(stages, "train") for i in s.instructions)
    built_from = {src for s in [train] for src, _, _ in copies(s) if src}
    builder_text = " ".join(i.args for s in stages if s.name in built_from for i in s.instructions)
    assert "['optional-dependencies']['train']" in builder_text
    assert "tensorflow" not in chain_text.lower()  # it comes from pyproject.toml, not a second list
    command = (train.last("ENTRYPOINT").exec_form() or []) + (train.last("CMD").exec_form() or [])
    assert command[:4] == ["python", "-m", "training", "train"]
    assert command[command.index("--output-dir") + 1] == "/app/models"


# --- The builder's requirement lists -----------------------------------------------------------


def builder_requirements(stages: list[Stage], stage_name: str) -> list[str]:
    """Run the stage's own `python -c ... > requirements` command against pyproject.toml."""
    stage = {s.name: s for s in stages}[stage_name]
    run_args = next(i.args for i in stage.all("RUN") if "tomllib" in i.args)
    command = run_args.split(" > ")[0]
    result = run(
        ["sh", "-c", command],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


def requirement_name(requirement: str) -> tuple[str, set[str]]:
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", requirement)
    assert match, requirement
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), extras


def dependency_closure(requirements: list[str]) -> set[str]:
    """Every distribution that pip installs for these requirements (read from what is installed here)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [requirement_name(r) for r in requirements]
    while todo:
        name, extras = todo.pop()
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: it cannot be what provides an import here either
        for text in requires:
            requirement = Requirement(text)
            wanted: list[dict[str, Any]] = [{**default_environment(), "extra": extra} for extra in (extras or {""})]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in wanted):
                todo.append(requirement_name(text))
    return {key.split("[")[0] for key in seen}


def test_builder_installs_exactly_the_core_dependencies(stages: list[Stage]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert builder_requirements(stages, "builder") == project["dependencies"]
    assert builder_requirements(stages, "train-builder") == project["optional-dependencies"]["train"]


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every import statement (parsed, so docstrings and comments don't count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_dependencies_provide_every_service_import_and_no_training_package(stages: list[Stage]) -> None:
    """What the image's venv holds is enough for `import service...`, and holds no TensorFlow."""
    closure = dependency_closure(builder_requirements(stages, "builder"))
    assert not closure & TRAINING_ONLY, f"training packages reach the runtime image: {sorted(closure & TRAINING_ONLY)}"
    providers = metadata.packages_distributions()
    stdlib = sys.stdlib_module_names
    missing = {}
    for path in (ROOT / "service").rglob("*.py"):
        for module in imported_modules(path):
            if module in stdlib or module in {"service", "__future__"}:
                continue
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
            if not dists & closure:
                missing[module] = f"{path.relative_to(ROOT)} (provided by {sorted(dists) or 'nothing installed'})"
    assert not missing, f"imported by the service but not in pyproject's core dependencies: {missing}"


# --- .dockerignore --------------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, regex) per line, as Docker reads the file: later lines win, `!` re-includes."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((not negate, re.compile(regex)))
    return patterns


def in_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether a path (relative, with /) is sent to the builder: a pattern matches it or a parent."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for excludes, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = excludes
    return not excluded


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_else(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    sources = {p.rstrip("/") for s in stages for src, paths, _ in copies(s) if src is None for p in paths}
    assert sources == {"pyproject.toml", "service", "models", "training"}, sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert in_context(source, patterns), f"{source} is copied but excluded by .dockerignore"
    assert in_context("service/app.py", patterns) and in_context("models/mnist-improved.onnx", patterns)
    for unwanted in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "docs/deployment.md",
        ".env",
        "test-artifacts/report.html",
        "benchmarks/run.py",
        "service/__pycache__/app.cpython-311.pyc",
        ".ruff_cache/x",
        "Dockerfile",
        "docker-compose.yml",
    ):
        assert not in_context(unwanted, patterns), f"{unwanted} would be sent to the builder"


def test_build_context_is_small() -> None:
    patterns = dockerignore_patterns()
    reincluded = [regex.pattern for excludes, regex in patterns if not excludes]
    total = 0
    for directory, subdirectories, files in os.walk(ROOT):
        base = Path(directory).relative_to(ROOT).as_posix().removeprefix(".").lstrip("/")
        # Skip excluded directories (.venv, .git) unless a `!` line could let something back in.
        subdirectories[:] = [
            d
            for d in subdirectories
            if in_context(f"{base}/{d}".lstrip("/"), patterns)
            or any(p.startswith(re.escape(f"{base}/{d}".lstrip("/"))) for p in reincluded)
        ]
        for name in files:
            relative = f"{base}/{name}".lstrip("/")
            if in_context(relative, patterns):
                assert relative.split("/")[0] in {"pyproject.toml", "service", "models", "training"}, relative
                total += (ROOT / relative).stat().st_size
    assert total < 50 * 1024 * 1024, f"build context is {total / 2**20:.0f} MiB"


# --- docker-compose.yml ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:  # type: ignore[type-arg]
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def interpolate_default(value: object) -> str:
    """What compose substitutes with nothing set in the environment: `${VAR:-default}` -> default."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(value))


def test_compose_file_matches_the_compose_spec() -> None:
    checker = require_tool("check-jsonschema")
    result = run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_is_not_vacuous(tmp_path: Path) -> None:
    checker = require_tool("check-jsonschema")
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("read_only: true", "readonly: true", 1))
    result = run([checker, "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert result.returncode == 1 and "readonly" in result.stdout


def test_api_service(compose: dict, stages: list[Stage], healthcheck: list[str], settings_fields: set[str]) -> None:  # type: ignore[type-arg]
    from service.config import Settings

    api = compose["services"]["api"]
    assert api["build"]["target"] == "runtime" and api["build"].get("context", ".") == "."
    # --scale api=N needs replicas without a fixed host port.
    assert "ports" not in api and "container_name" not in api
    assert api["restart"] == "unless-stopped"
    assert api["read_only"] is True and any(str(t).split(":")[0] == "/tmp" for t in api["tmpfs"])
    limits = api["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and limits["memory"]

    workdir = stage_chain(stages, "runtime")[-1].last("WORKDIR").args
    models = [v for v in api["volumes"] if v["target"] == f"{workdir}/models"]
    assert models and models[0]["source"] == "./models" and models[0]["read_only"] is True

    assert api["healthcheck"]["test"] == ["CMD", *healthcheck], "compose and the Dockerfile probe differently"
    assert "start_period" in api["healthcheck"]

    env = {k: interpolate_default(v) for k, v in api["environment"].items()}
    assert env["DIGITS_HOST"] == "0.0.0.0" and env["DIGITS_PORT"] == "8000"
    # gRPC for clients in the compose network (api:8001); lb proxies HTTP only.
    assert env["DIGITS_GRPC_PORT"] == "8001" and [str(p) for p in api["expose"]] == ["8000", "8001"]
    unknown = {k for k in env if k.startswith("DIGITS_") and k[len("DIGITS_") :].lower() not in settings_fields}
    assert not unknown, f"not settings of the service: {unknown}"
    assert any("${" in str(v) for v in api["environment"].values())
    defaults = Settings()
    assert int(env["DIGITS_MAX_BODY_BYTES"]) == defaults.max_body_bytes
    assert Path(env["DIGITS_MODEL_PATH"]).name == defaults.model_path.name
    assert Path(env["DIGITS_MODEL_PATH"]).parent.as_posix() == f"{workdir}/models"
    # Docker must wait for the drain and the in-flight requests before it sends SIGKILL.
    grace = float(api["stop_grace_period"].rstrip("s"))
    assert grace > float(env["DIGITS_SHUTDOWN_DRAIN_S"]) + float(env["DIGITS_SHUTDOWN_TIMEOUT_S"])


def test_lb_service(compose: dict) -> None:  # type: ignore[type-arg]
    lb = compose["services"]["lb"]
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+[\w.-]*", lb["image"]), lb["image"]
    assert [interpolate_default(p) for p in lb["ports"]] == ["8000:8000"]
    mounts = {v["target"]: v for v in lb["volumes"]}
    conf = mounts["/etc/nginx/nginx.conf"]
    assert (ROOT / conf["source"]).resolve() == NGINX_CONF and conf["read_only"] is True
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    assert lb["read_only"] is True and lb["restart"] == "unless-stopped"
    # nginx.conf keeps every file nginx writes in /tmp, the one writable place.
    written = re.findall(r"^\s*(?:pid|\w+_temp_path)\s+(\S+);", NGINX_CONF.read_text(), re.MULTILINE)
    assert written and all(p.startswith("/tmp/") for p in written)
    assert any(str(t).split(":")[0] == "/tmp" for t in lb["tmpfs"])


def test_train_service(compose: dict, stages: list[Stage]) -> None:  # type: ignore[type-arg]
    train = compose["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["build"]["target"] == "train" and "train" in {s.name for s in stages}
    mounts = {v["target"]: v for v in train["volumes"]}
    assert mounts["/app/models"]["source"] == "./models" and not mounts["/app/models"].get("read_only")
    assert interpolate_default(mounts["/data"]["source"]) == "../shared/datasets/mnist"
    assert train["environment"]["MNIST_DATA_DIR"] == "/data"


# --- Kubernetes -------------------------------------------------------------------------------


def load_manifest(name: str) -> dict:  # type: ignore[type-arg]
    loaded: dict[str, Any] = yaml.safe_load((K8S / name).read_text())
    return loaded


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("manifest", K8S_MANIFESTS)
def test_manifest_is_valid(manifest: str, version: str) -> None:
    validator = require_tool("kubernetes-validate")
    result = run([validator, "--strict", "--kubernetes-version", version, str(K8S / manifest)])
    assert result.returncode == 0 and "passed" in result.stdout, result.stdout + result.stderr


def test_manifest_validation_is_not_vacuous(tmp_path: Path) -> None:
    validator = require_tool("kubernetes-validate")
    bad = tmp_path / "deployment.yaml"
    bad.write_text((K8S / "deployment.yaml").read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    result = run([validator, "--strict", "--kubernetes-version", K8S_VERSIONS[-1], str(bad)])
    assert result.returncode != 0 and "readOnlyRootFileSystem" in result.stdout + result.stderr


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_manifest("kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(K8S_MANIFESTS)
    assert sorted(p.name for p in K8S.glob("*.yaml")) == sorted([*K8S_MANIFESTS, "kustomization.yaml"])
    deployment = load_manifest("deployment.yaml")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0]
    assert [i["name"] for i in kustomization["images"]] == [image]


def test_deployment(runtime: Stage, settings_fields: set[str]) -> None:
    deployment = load_manifest("deployment.yaml")
    spec = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = spec["containers"]

    uid, _, gid = runtime.last("USER").args.partition(":")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == int(uid) and spec["securityContext"]["runAsGroup"] == int(gid)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]

    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    exposed = [int(p) for p in runtime.last("EXPOSE").args.split()]
    assert ports["http"] == int(env["DIGITS_PORT"]) == exposed[0]
    assert ports["grpc"] == int(env["DIGITS_GRPC_PORT"]) == exposed[1]
    # Readiness (and every probe) stays on HTTP.
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", ports["http"])
    assert env["DIGITS_HOST"] == "0.0.0.0"
    unknown = {k for k in env if k.startswith("DIGITS_") and k[len("DIGITS_") :].lower() not in settings_fields}
    assert not unknown, f"not settings of the service: {unknown}"
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()
    assert spec["terminationGracePeriodSeconds"] > float(env["DIGITS_SHUTDOWN_DRAIN_S"]) + float(
        env["DIGITS_SHUTDOWN_TIMEOUT_S"]
    )


def test_service_and_hpa_point_at_the_deployment() -> None:
    deployment = load_manifest("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = load_manifest("service.yaml")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    grpc_port = {p["name"]: p for p in service["spec"]["ports"]}["grpc"]
    assert grpc_port["targetPort"] == "grpc" and grpc_port["port"] == 8001
    assert grpc_port["appProtocol"] == "kubernetes.io/h2c"  # plain-text HTTP/2, as gRPC without TLS is
    hpa = load_manifest("hpa.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    pdb = load_manifest("pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- KServe ----------------------------------------------------------------------------------------

KSERVE = ROOT / "deploy" / "kserve"
#: Each KServe manifest and the schema it is checked against (deploy/kserve/schemas, written from
#: KServe's API types: the CRDs themselves are too large to vendor).
KSERVE_MANIFESTS = {
    "inferenceservice.yaml": "inferenceservice-v1beta1.json",
    "servingruntime.yaml": "servingruntime-v1alpha1.json",
}
#: The fields of a Kubernetes container, which a KServe model spec carries inline.
CONTAINER_FIELDS = {
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
    "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle",
    "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin",
    "stdinOnce", "tty",
}  # fmt: skip


def load_kserve(name: str) -> dict:  # type: ignore[type-arg]
    manifest: dict = yaml.safe_load((KSERVE / name).read_text())  # type: ignore[type-arg]
    return manifest


def kserve_pod() -> dict:  # type: ignore[type-arg]
    """The predictor pod as KServe builds it: the runtime's container under the model spec's container fields."""
    runtime, isvc = load_kserve("servingruntime.yaml")["spec"], load_kserve("inferenceservice.yaml")["spec"]
    predictor = isvc["predictor"]
    (container,) = runtime["containers"]
    container = {**container, **{k: v for k, v in predictor["model"].items() if k in CONTAINER_FIELDS}}
    spec = {"containers": [container], "volumes": runtime.get("volumes", [])}
    spec["terminationGracePeriodSeconds"] = predictor["terminationGracePeriodSeconds"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mnist-digits-predictor"}, "spec": spec}


def test_kserve_manifests_are_listed() -> None:
    assert sorted(p.name for p in KSERVE.glob("*.yaml")) == sorted(KSERVE_MANIFESTS)


@pytest.mark.parametrize("manifest", sorted(KSERVE_MANIFESTS))
def test_kserve_manifest_matches_its_schema(manifest: str) -> None:
    checker = require_tool("check-jsonschema")
    schema = KSERVE / "schemas" / KSERVE_MANIFESTS[manifest]
    result = run([checker, "--schemafile", str(schema), str(KSERVE / manifest)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("manifest", "old", "new"),
    [
        ("inferenceservice.yaml", "protocolVersion: v2", "protocolversion: v2"),
        ("inferenceservice.yaml", "protocolVersion: v2", "protocolVersion: v3"),
        ("inferenceservice.yaml", "scaleMetric: cpu", "scaleMetrics: cpu"),
        ("servingruntime.yaml", "    - grpc-v2", "    - grpc"),
        ("servingruntime.yaml", "supportedModelFormats:", "supportedModelFormat:"),
    ],
)
def test_kserve_schema_check_is_not_vacuous(tmp_path: Path, manifest: str, old: str, new: str) -> None:
    checker = require_tool("check-jsonschema")
    text = (KSERVE / manifest).read_text()
    assert text.count(old) == 1, old
    bad = tmp_path / manifest
    bad.write_text(text.replace(old, new))
    schema = KSERVE / "schemas" / KSERVE_MANIFESTS[manifest]
    result = run([checker, "--schemafile", str(schema), str(bad)])
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kserve_predictor_pod_is_valid_kubernetes(tmp_path: Path, version: str) -> None:
    """The container, probes and volumes of the runtime and the model spec, by Kubernetes' own schema."""
    validator = require_tool("kubernetes-validate")
    pod = tmp_path / "pod.yaml"
    pod.write_text(yaml.safe_dump(kserve_pod()))
    result = run([validator, "--strict", "--kubernetes-version", version, str(pod)])
    assert result.returncode == 0 and "passed" in result.stdout, result.stdout + result.stderr


def test_kserve_predictor_speaks_v2_on_both_ports(runtime: Stage, settings_fields: set[str]) -> None:
    isvc, serving_runtime = load_kserve("inferenceservice.yaml"), load_kserve("servingruntime.yaml")
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["protocolVersion"] == "v2" and model["runtime"] == serving_runtime["metadata"]["name"]
    formats = [f["name"] for f in serving_runtime["spec"]["supportedModelFormats"]]
    assert model["modelFormat"]["name"] in formats
    assert {"v2", "grpc-v2"} <= set(serving_runtime["spec"]["protocolVersions"])
    # Two ports need RawDeployment: Knative allows one per container.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"

    (container,) = kserve_pod()["spec"]["containers"]
    assert container["name"] == "kserve-container"
    deployment = load_manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == deployment["image"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    unknown = {k for k in env if k.startswith("DIGITS_") and k[len("DIGITS_") :].lower() not in settings_fields}
    assert not unknown, f"not settings of the service: {unknown}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http1": int(env["DIGITS_PORT"]), "h2c": int(env["DIGITS_GRPC_PORT"])}
    assert env["DIGITS_HOST"] == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == ports["http1"], f"{probe} must probe HTTP"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()
    uid, _, gid = runtime.last("USER").args.partition(":")
    security = container["securityContext"]
    assert security["runAsUser"] == int(uid) and security["runAsGroup"] == int(gid)
    assert security["readOnlyRootFilesystem"] is True and security["capabilities"]["drop"] == ["ALL"]
    grace = predictor["terminationGracePeriodSeconds"]
    assert grace > float(env["DIGITS_SHUTDOWN_DRAIN_S"]) + float(env["DIGITS_SHUTDOWN_TIMEOUT_S"])
    assert predictor["minReplicas"] <= predictor["maxReplicas"]


# --- The image's runtime, reproduced on the host ---------------------------------------------------


def app_dir_like_the_image(runtime: Stage, destination: Path) -> Path:
    """A copy of what the runtime stage COPYs from the build context, laid out as in /app."""
    patterns = dockerignore_patterns()
    for src, paths, dest in copies(runtime):
        if src is not None:
            continue  # the venv: the caller provides one
        for path in paths:
            target = destination / dest
            for file in (ROOT / path).rglob("*"):
                relative = file.relative_to(ROOT).as_posix()
                if file.is_file() and in_context(relative, patterns):
                    (target / file.relative_to(ROOT / path)).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, target / file.relative_to(ROOT / path))
    return destination


def container_env(stages: list[Stage], venv_bin: Path, port: int, **overrides: str) -> dict[str, str]:
    """The image's ENV, with the venv at its host path and the server on loopback."""
    env = image_env(stages, "runtime")
    env["PATH"] = env["PATH"].replace("/opt/venv/bin", str(venv_bin)).replace("$PATH", os.environ["PATH"])
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITS_", "PYTHON", "VIRTUAL_ENV"))}
    # gRPC on a free port too: the image's 8001 is one per machine, and tests run side by side.
    grpc = {"DIGITS_GRPC_PORT": str(free_port())}
    return {**keep, **env, "DIGITS_HOST": "127.0.0.1", "DIGITS_PORT": str(port), **grpc, **overrides}


def probe(healthcheck: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(healthcheck, env=env, cwd=cwd, capture_output=True, text=True, timeout=30)


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants, from the parent ids in /proc/*/stat."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name in parentheses may hold spaces: the fields after it are fixed.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return pids


@pytest.fixture
def serve(stages: list[Stage], runtime: Stage, healthcheck: list[str], tmp_path: Path) -> Iterator[object]:
    """Start the image's CMD from an image-like /app; yields a function that does so."""
    processes: list[subprocess.Popen[str]] = []
    logs: list[IO[str]] = []

    def ready(env: dict[str, str], app: Path) -> bool:
        if env["DIGITS_HOST"] == "127.0.0.1":
            return probe(healthcheck, env, app).returncode == 0
        # The HEALTHCHECK probes 127.0.0.1, as inside a container; elsewhere ask the address itself.
        try:
            return nginx_request(int(env["DIGITS_PORT"]), "GET", "/health/ready", host=env["DIGITS_HOST"])[0] == 200
        except OSError:
            return False

    def start(venv_bin: Path, **overrides: str) -> tuple[subprocess.Popen[str], dict[str, str], Path]:
        app = app_dir_like_the_image(runtime, tmp_path / f"app{len(processes)}")
        env = container_env(stages, venv_bin, free_port(), **overrides)
        command = runtime.last("CMD").exec_form()
        assert command
        log = open(tmp_path / f"server{len(processes)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            command, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        processes.append(process)
        logs.append(log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready(env, app):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`{' '.join(command)}` never became ready:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.5)
        return process, env, app

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for log in logs:
        log.close()


def test_healthcheck_fails_when_nothing_listens(stages: list[Stage], healthcheck: list[str], tmp_path: Path) -> None:
    env = container_env(stages, Path(sys.executable).parent, free_port())
    result = probe(healthcheck, env, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Connection refused" in result.stderr


def test_healthcheck_fails_while_the_service_is_not_ready(
    stages: list[Stage], healthcheck: list[str], tmp_path: Path
) -> None:
    """A 503 from /health/ready (loading, or draining on SIGTERM) is unhealthy."""
    import http.server

    class NotReady(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status = 503 if self.path == "/health/ready" else 404
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotReady) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = container_env(stages, Path(sys.executable).parent, server.server_address[1])
        result = probe(healthcheck, env, tmp_path)
        server.shutdown()
    assert result.returncode == 1 and "503" in result.stderr, result.stderr


def test_image_cmd_and_healthcheck_in_the_image_layout(serve, healthcheck: list[str]) -> None:  # type: ignore[no-untyped-def]
    """`python -m service` from a directory holding only service/ and models/, with the image's
    environment and default settings (two workers), becomes healthy by the HEALTHCHECK command,
    never loads TensorFlow, and stops cleanly on SIGTERM."""
    process, env, app = serve(Path(sys.executable).parent)

    # The code that ran is the copy in the image-like /app, not the checkout.
    located = subprocess.run(
        [sys.executable, "-c", "import service; print(service.__file__)"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(located.stdout.strip()).is_relative_to(app), located.stdout

    pids = process_tree(process.pid)
    assert len(pids) >= 3, "expected the supervisor and two workers (DIGITS_WORKERS defaults to 2)"

    # The image serves the KServe v2 gRPC API on DIGITS_GRPC_PORT too.
    import tritonclient.grpc

    with tritonclient.grpc.InferenceServerClient(f"127.0.0.1:{env['DIGITS_GRPC_PORT']}") as client:
        assert client.is_server_ready() and client.get_model_repository_index().models
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "tensorflow" not in maps.lower(), f"process {pid} has TensorFlow loaded"

    # `docker stop` signals the container's main process only; uvicorn stops its workers.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=40) == 0
    assert probe(healthcheck, env, app).returncode == 1


def test_service_imports_never_load_tensorflow() -> None:
    code = (
        "import sys, service, service.app, service.config, service.inference, service.routes, service.__main__\n"
        "service.app.create_app(service.config.Settings())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'tf2onnx', 'training'})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_image_venv_built_by_the_builder_stage_serves(stages: list[Stage], serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Build the runtime venv with the builder stage's own commands (core dependencies from PyPI,
    nothing else), then run the image's CMD on it until the HEALTHCHECK passes."""
    venv = tmp_path / "venv"
    build = tmp_path / "build"
    build.mkdir()
    builder = {s.name: s for s in stages}["builder"]
    env = {**os.environ, **image_env(stages, "builder")}
    env["PATH"] = env["PATH"].replace("/opt/venv/bin", str(venv / "bin")).replace("$PATH", os.environ["PATH"])
    env.pop("VIRTUAL_ENV", None)
    base_python = getattr(sys, "_base_executable", sys.executable)
    for instruction in builder.instructions:
        if instruction.keyword == "COPY":
            for source in copies(Stage("x", "x", [instruction]))[0][1]:
                shutil.copy2(ROOT / source, build / source)
        elif instruction.keyword == "RUN":
            command = re.sub(r"/tmp/(?=requirements)", f"{tmp_path}/", instruction.args).replace("/opt/venv", str(venv))
            command = re.sub(r"^python ", f"{shlex.quote(base_python)} ", command) if not venv.exists() else command
            result = subprocess.run(
                ["sh", "-c", command], cwd=build, env=env, capture_output=True, text=True, timeout=900
            )
            if (
                result.returncode != 0
                and "pip install" in command
                and not IN_CI
                and re.search(r"(?i)connection|resolve|network", result.stdout + result.stderr)
            ):
                pytest.skip("PyPI is unreachable: cannot build the image's venv here")
            assert result.returncode == 0, f"RUN {instruction.args}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    installed = {
        requirement_name(line)[0]
        for line in subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    }
    assert not installed & TRAINING_ONLY
    process, _, _ = serve(venv / "bin")
    assert process.poll() is None


# --- nginx in front of two service processes ---------------------------------------------------


class StubDockerDns:
    """Answers A queries for `api` with a list of addresses that the test changes, like Docker's
    embedded DNS server does as `--scale` adds and removes replicas."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.queries = 0
        stub = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                stub.queries += 1
                sock.sendto(stub.answer(data), self.client_address)

        self.server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, query: bytes) -> bytes:
        (ident,) = struct.unpack("!H", query[:2])
        end = query.index(b"\0", 12) + 5
        question = query[12:end]
        labels, i = [], 0
        while question[i]:
            labels.append(question[i + 1 : i + 1 + question[i]].decode())
            i += question[i] + 1
        qtype = struct.unpack("!H", question[i + 1 : i + 3])[0]
        name = ".".join(labels).lower()
        if name != "api":
            return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
        records = list(self.addresses) if qtype == 1 else []
        answers = b"".join(struct.pack("!HHHIH", 0xC00C, 1, 1, 600, 4) + socket.inet_aton(a) for a in records)
        return struct.pack("!HHHHHH", ident, 0x8180, 1, len(records), 0, 0) + question + answers

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def nginx_config_for_test(dns_port: int, lb_port: int, api_port: int, workdir: Path) -> str:
    """The compose config, with only the addresses that differ outside Docker replaced."""
    text = NGINX_CONF.read_text()
    replacements = [
        ("resolver 127.0.0.11 ", f"resolver 127.0.0.1:{dns_port} "),
        ("listen 8000;", f"listen 127.0.0.1:{lb_port};"),
        ("http://api:8000;", f"http://api:{api_port};"),
    ]
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} not found once in {NGINX_CONF}"
        text = text.replace(old, new)
    return re.sub(r"(?<=\s)/tmp/", f"{workdir}/", text)


def test_nginx_config_is_valid() -> None:
    nginx = require_tool("nginx")
    with tempfile.TemporaryDirectory() as prefix:
        # `nginx -t` creates the temp directories: keep them out of the real /tmp.
        conf = Path(prefix) / "nginx.conf"
        conf.write_text(re.sub(r"(?<=\s)/tmp/", f"{prefix}/", NGINX_CONF.read_text()))
        result = run([nginx, "-t", "-q", "-p", prefix, "-e", "stderr", "-c", str(conf)])
    assert result.returncode == 0, result.stderr
    text = NGINX_CONF.read_text()
    assert re.search(r"resolver 127\.0\.0\.11 valid=10s", text)
    assert re.search(r"set \$api http://api:8000;", text) and "proxy_pass $api;" in text


def test_nginx_body_limit_is_the_services(settings_fields: set[str]) -> None:
    from service import errors
    from service.config import Settings

    limit = Settings().max_body_bytes
    size = re.search(r"client_max_body_size\s+(\d+)([km]?);", NGINX_CONF.read_text())
    assert size
    assert int(size.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[size.group(2)] == limit
    assert errors.BODY_TOO_LARGE.format(limit=limit) in NGINX_CONF.read_text()


def nginx_request(
    port: int, method: str, path: str, body: bytes | None = None, host: str = "127.0.0.1"
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(
            method, path, body=body, headers={"Content-Type": "application/octet-stream"} if body else {}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def upstreams(log: Path, since: int) -> Counter[str]:
    lines = log.read_text().splitlines()[since:]
    return Counter(m.group(1) for line in lines if (m := re.search(r"upstream=(\S+)", line)))


def test_nginx_balances_over_replicas_and_picks_up_new_ones(serve, stages: list[Stage]) -> None:  # type: ignore[no-untyped-def]
    """Two `python -m service` processes on 127.0.0.2 and 127.0.0.3 play two replicas of `api`."""
    nginx = require_tool("nginx")
    from service import errors
    from service.config import Settings

    port = free_port()
    replicas = ["127.0.0.2", "127.0.0.3"]
    for address in replicas:
        serve(Path(sys.executable).parent, DIGITS_WORKERS="1", DIGITS_HOST=address, DIGITS_PORT=str(port))
    dns = StubDockerDns()
    dns.addresses = replicas[:1]
    workdir = Path(tempfile.mkdtemp(prefix="digits-nginx-"))
    workdir.chmod(0o755)  # nginx's workers run as an unprivileged user when started as root
    lb_port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config_for_test(dns.port, lb_port, port, workdir))
    log = workdir / "nginx.log"
    with open(log, "w") as out:
        lb = subprocess.Popen(
            [nginx, "-p", str(workdir), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _ = nginx_request(lb_port, "GET", "/health/ready")
                if status == 200:
                    break
            except OSError:
                pass
            assert lb.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

        # One replica: everything goes to it.
        mark = len(log.read_text().splitlines())
        for _ in range(10):
            assert nginx_request(lb_port, "GET", "/model")[0] == 200
        assert set(upstreams(log, mark)) == {f"{replicas[0]}:{port}"}, log.read_text()

        # `--scale api=2`: the DNS answer grows; nginx sees it once its cached answer expires.
        dns.addresses = replicas
        queries = dns.queries
        time.sleep(11)
        mark = len(log.read_text().splitlines())
        for _ in range(20):
            assert nginx_request(lb_port, "GET", "/model")[0] == 200
        seen = upstreams(log, mark)
        assert dns.queries > queries, "nginx did not ask the DNS server again"
        assert set(seen) == {f"{a}:{port}" for a in replicas} and min(seen.values()) >= 5, seen

        # The body limit is the service's: 16 MiB passes to the service, one byte more does not.
        limit = Settings().max_body_bytes
        status, body = nginx_request(lb_port, "POST", "/predict", b"\0" * limit)
        assert status != 413, body
        connection = socket.create_connection(("127.0.0.1", lb_port), timeout=10)
        connection.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
        raw = b""
        while b"}" not in raw and (chunk := connection.recv(65536)):
            raw += chunk
        connection.close()
        response = raw.decode()
        assert response.startswith("HTTP/1.1 413"), response
        assert json.loads(response.split("\r\n\r\n", 1)[1]) == {"detail": errors.BODY_TOO_LARGE.format(limit=limit)}
    finally:
        lb.send_signal(signal.SIGQUIT)
        try:
            lb.wait(timeout=10)
        except subprocess.TimeoutExpired:
            lb.kill()
            lb.wait()
        dns.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _mib(quantity: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)\s*([A-Za-z]*)", quantity.strip()).groups()  # type: ignore[union-attr]
    scale = {"": 2**-20, "k": 2**-10, "m": 1, "g": 1024, "ki": 2**-10, "mi": 1, "gi": 1024}[unit.lower().rstrip("b")]
    return float(number) * scale


def test_each_container_limit_holds_the_memory_bound_docs_cost_states(compose: dict) -> None:  # type: ignore[type-arg]
    """docs/cost.md's worst case per deployment (measured worker + decoder cap) fits its shipped limit."""
    table = (ROOT / "docs" / "cost.md").read_text()
    rows = {
        kind: float(worst.replace(",", ""))
        for kind, worst in re.findall(r"^\| (Kubernetes|Compose) .*?= ([\d,]+) MiB \|", table, flags=re.MULTILINE)
    }
    assert rows.keys() == {"Kubernetes", "Compose"}
    assert _mib(compose["services"]["api"]["deploy"]["resources"]["limits"]["memory"]) >= rows["Compose"]
    manifest = load_manifest("deployment.yaml")
    (container,) = [c for c in manifest["spec"]["template"]["spec"]["containers"] if c["name"] == "api"]
    assert _mib(container["resources"]["limits"]["memory"]) >= rows["Kubernetes"]
