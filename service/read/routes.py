"""``POST /read``: every digit in one image, in reading order, with boxes."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service import errors
from service.config import Settings
from service.read.reader import ReadWork, read, upload_box
from service.read.schemas import Reading
from service.responses import JSON, json_response
from service.routes import ERROR_RESPONSES
from service.runtime import Runtime, runtime_of
from service.work import one_image, prediction

router = APIRouter()

JSON_FORMS = '{"image": "<base64>"}'


async def read_work(request: Request, settings: Settings, open_set: bool) -> ReadWork:
    """The image of a ``/read`` request, from whichever input form it uses (as ``/predict`` takes them)."""
    _, data = await one_image(request, settings, JSON_FORMS, ("image",))
    assert isinstance(data, bytes)
    return ReadWork(data, settings.max_image_pixels, open_set)


async def answer_read(runtime: Runtime, request: Request) -> Response:
    open_set = runtime.classifier is not None and runtime.classifier.open_set
    work = await read_work(request, runtime.settings, open_set)
    if runtime.pool is None or not runtime.ready:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    # Segmenting a whole image is heavy work: off the batcher thread, so /predict's light
    # requests never queue behind it; then one batched model run through the batcher.
    images = await asyncio.get_running_loop().run_in_executor(runtime.pool, work)
    inputs, probabilities, scores = await runtime.predict(lambda: images)
    lines = read(work, probabilities, scores)
    assert work.layout is not None and work.ink is not None and runtime.classifier is not None
    include_input = request.query_params.get("include_input", "").lower() in ("1", "true", "yes", "on")
    chosen = [k for line in lines for k in line]
    formatted = (
        prediction(probabilities[chosen], scores[chosen], runtime.strictness, inputs[chosen] if include_input else None)
        if chosen
        else []
    )
    digits, text = [], []
    position = 0
    for index, line in enumerate(lines):
        characters = []
        for k in line:
            item = formatted[position]
            position += 1
            if item["is_digit"]:
                characters.append(str(item["digit"]))
            item["line"] = index
            item["box"] = upload_box(work.ink, work.layout.candidates[k].box)
            digits.append(item)
        if characters:
            text.append("".join(characters))
    return json_response({"text": "\n".join(text), "digits": digits, "model_version": runtime.classifier.version})


def _body_spec() -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {"file": binary}},
            "encoding": {"file": {"contentType": ", ".join(errors.SUPPORTED_IMAGE_TYPES)}},
        },
        **{kind: {"schema": binary} for kind in errors.SUPPORTED_IMAGE_TYPES},
        JSON: {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {"image": {"type": "string", "description": "Base64 of the image file's bytes."}},
            }
        },
    }
    return {"requestBody": {"required": True, "content": content}}


@router.post(
    "/read",
    response_model=Reading,
    responses=ERROR_RESPONSES,
    openapi_extra=_body_spec(),
    tags=["prediction"],
    summary="Read a written number",
)
async def read_number(request: Request) -> Response:
    """Read every digit in one image (multipart ``file``, a raw image body, or JSON ``image``), in reading order."""
    return await answer_read(runtime_of(request), request)
