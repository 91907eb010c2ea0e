"""The HTTP floor: the same upload endpoint as ``obvious.py``, reading the file and returning a constant.

No model, no decoding. Whatever the service does on top of this is the cost of its real work, so
no implementation on this stack (FastAPI, python-multipart, uvicorn, one worker) can beat it.

    uvicorn benchmarks.floor:app
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, File, UploadFile

app = FastAPI(title="HTTP floor")

ANSWER: dict[str, object] = {"digit": 0, "confidence": 1.0, "probabilities": [1.0] + [0.0] * 9}


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    """Always ready: there is nothing to load."""
    return {"status": "ready"}


@app.post("/predict")
async def predict(file: Annotated[UploadFile, File()]) -> dict[str, object]:
    """Read the upload and return a constant answer."""
    await file.read()
    return ANSWER
