"""The obvious implementation: the reference point the project's service is measured against.

This is what a first version of the service looks like when written straight from the FastAPI
and onnxruntime tutorials: an ``UploadFile`` endpoint that decodes the PNG with Pillow, resizes it
to 28x28, scales it, and calls ``session.run`` on that one image, all in the request handler.
Deliberately nothing more: no batching, no worker pool, default session options.

    BENCH_MODEL_PATH=models/mnist-improved.onnx uvicorn benchmarks.obvious:app
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, UploadFile
from PIL import Image

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def model_path() -> Path:
    """``BENCH_MODEL_PATH``, else the improved model, else the baseline if the improved one is missing."""
    if "BENCH_MODEL_PATH" in os.environ:
        return Path(os.environ["BENCH_MODEL_PATH"])
    improved = MODELS_DIR / "mnist-improved.onnx"
    return improved if improved.is_file() else MODELS_DIR / "mnist-baseline.onnx"


session = ort.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name

app = FastAPI(title="obvious digit classifier")


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    """Ready as soon as the module is imported: the session is built at import time."""
    return {"status": "ready"}


@app.post("/predict")
async def predict(file: Annotated[UploadFile, File()]) -> dict[str, object]:
    """Classify one uploaded image."""
    contents = await file.read()
    image = Image.open(io.BytesIO(contents)).convert("L").resize((28, 28))
    x = (np.asarray(image, dtype=np.float32) / 255.0).reshape(1, 28, 28, 1)
    probabilities = session.run(None, {input_name: x})[0][0]
    digit = int(np.argmax(probabilities))
    return {
        "digit": digit,
        "confidence": float(probabilities[digit]),
        "probabilities": [float(p) for p in probabilities],
    }
