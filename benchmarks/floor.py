"""The HTTP floor: the same upload endpoint as ``obvious.py``, reading the file and returning a constant.

No model, no decoding. Whatever the service does on top of this is the cost of its real work, so
no implementation on this stack (FastAPI, python-multipart, uvicorn) with as many workers can beat
it. ``bare.py`` is the floor below this one: uvicorn alone.

    uvicorn benchmarks.floor:app --workers 2
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
