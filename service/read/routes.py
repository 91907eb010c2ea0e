"""``POST /read``: every digit in one image, in reading order, with boxes."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service import errors
from service.openapi import files_body_spec
from service.read.reader import ReadWork, digits_of, read, upload_box
from service.read.schemas import Reading
from service.responses import json_response
from service.routes import ERROR_RESPONSES, PredictionRoute
from service.runtime import Runtime, runtime_of
from service.work import one_image, prediction

#: A PredictionRoute, so that ``include_input`` is read as on /predict, by the same code.
router = APIRouter(route_class=PredictionRoute)

JSON_FORMS = '{"image": "<base64>"}'


async def read_work(request: Request, runtime: Runtime) -> ReadWork:
    """The image of a ``/read`` request, from whichever input form it uses (as ``/predict`` takes them)."""
    _, data = await one_image(request, runtime.settings, JSON_FORMS, ("image",))
    assert isinstance(data, bytes)
    open_set = runtime.classifier is not None and runtime.classifier.open_set
    return ReadWork(data, runtime.settings.max_image_pixels, open_set, runtime.pair_model)


async def answer_read(runtime: Runtime, request: Request, include_input: bool) -> Response:
    work = await read_work(request, runtime)
    if runtime.pool is None or not runtime.ready:
        raise errors.Unavailable(errors.MODEL_NOT_READY)
    # Segmenting a whole image is heavy work: off the batcher thread, so /predict's light
    # requests never queue behind it; then one batched model run through the batcher.
    images = await asyncio.get_running_loop().run_in_executor(runtime.pool, work)
    inputs, probabilities, scores = await runtime.predict(lambda: images)
    lines = digits_of(work, read(work, probabilities, scores), probabilities, scores, inputs)
    assert work.ink is not None and runtime.classifier is not None
    chosen = [d for line in lines for d in line]
    formatted = (
        prediction(
            np.stack([d.probabilities for d in chosen]),
            np.array([d.digit_score for d in chosen], np.float32),
            runtime.strictness,
            np.stack([d.image for d in chosen]) if include_input else None,
        )
        if chosen
        else []
    )
    digits, text = [], []
    position = 0
    for index, line in enumerate(lines):
        characters = []
        for reading in line:
            item = formatted[position]
            position += 1
            if item["is_digit"]:
                characters.append(str(item["digit"]))
            item["line"] = index
            item["box"] = upload_box(work.ink, reading.box)
            digits.append(item)
        if characters:
            text.append("".join(characters))
    return json_response({"text": "\n".join(text), "digits": digits, "model_version": runtime.classifier.version})


#: /read's JSON form: one base64 image (it reads no pixel arrays).
IMAGE_JSON = {
    "type": "object",
    "required": ["image"],
    "properties": {"image": {"type": "string", "description": "Base64 of the image file's bytes."}},
}


@router.post(
    "/read",
    response_model=Reading,
    responses=ERROR_RESPONSES,
    openapi_extra=files_body_spec("file", False, IMAGE_JSON),
    tags=["prediction"],
    summary="Read a written number",
)
async def read_number(
    request: Request,
    include_input: bool = Query(False, description="Also return the 28x28 image the model saw for each digit."),
) -> Response:
    """Read every digit in one image (multipart ``file``, a raw image body, or JSON ``image``), in reading order."""
    return await answer_read(runtime_of(request), request, include_input)
