"""The domain work of a request: each input form turned into work for the batcher, and predictions written out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request

from service import errors, lanes, parsing, preprocess
from service.config import Settings
from service.inference import Prepare
from service.responses import JSON

#: Decimal places of the probabilities a client gets: 1e-6 resolves every value a client can act
#: on, and rounding keeps the JSON short (full float64 reprs are 17 digits each).
PROBABILITY_DECIMALS = 6
#: Decimal places of the ``include_input`` image: the drawing page shows it in 256 grey levels.
INPUT_DECIMALS = 3


def prediction(
    probabilities: np.ndarray, digit_score: np.ndarray, strictness: float, inputs: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Probabilities (N, 10) and digit scores (N,) → one dict per image, rounded to what a client can use.

    This runs on the event loop for every request, so it makes few numpy calls (each costs a
    microsecond or more on 11 numbers): the probabilities and the score side by side in one float64
    array, rounded in one call. The digit is picked in Python, as ``argmax`` picks it (the first
    largest): numpy's argmax lets go of the GIL even for 10 values, and the event loop then waited
    for the batcher thread, busy preprocessing (423 µs a call measured against a busy thread, 0.8 µs
    alone; benchmarks/asgi_cost.py).
    """
    count = len(probabilities)
    wide = np.empty((count, 11))
    wide[:, :10] = probabilities
    wide[:, 10] = digit_score
    is_digit = (digit_score >= strictness).tolist()
    out = []
    for exact, row, yes in zip(wide.tolist(), wide.round(PROBABILITY_DECIMALS).tolist(), is_digit, strict=True):
        del exact[10]
        digit = exact.index(max(exact))
        probabilities_row, score = row[:10], row[10]
        out.append(
            {
                "digit": digit,
                "confidence": row[digit],
                "probabilities": probabilities_row,
                "is_digit": yes,
                "digit_score": score,
            }
        )
    if inputs is not None:
        for item, image in zip(out, np.round(inputs.astype(np.float64), INPUT_DECIMALS).tolist(), strict=True):
            item["input"] = image
    return out


# --- Turning each input form into work for the batcher ------------------------------------------


#: Requests with more images or more encoded bytes than this are prepared off the batcher thread.
HEAVY_IMAGES = 8
HEAVY_BYTES = 256 * 1024


@dataclass
class ImagesWork:
    """Preprocess encoded images into one batch; an error names the image (``label`` with its index)."""

    datas: list[bytes]
    max_pixels: int
    label: str | None = "image {}"

    @property
    def heavy(self) -> bool:
        return len(self.datas) > HEAVY_IMAGES or sum(map(len, self.datas)) > HEAVY_BYTES

    def __call__(self, costs: lanes.Costs | None = None, /) -> np.ndarray:
        """The images as float32 (N, 28, 28); ``costs``: their headers' costs, when the lanes read them."""
        out = np.empty((len(self.datas), 28, 28), np.float32)
        for i, data in enumerate(self.datas):
            try:
                out[i] = preprocess.image_to_input(data, self.max_pixels, None if costs is None else costs[i])
            except errors.ServiceError as exc:
                if self.label is not None:
                    exc.detail = f"{self.label.format(i)}: {exc.detail}"
                raise
        return out


def _pixels(value: object, batch: bool) -> Prepare:
    def prepare() -> np.ndarray:
        images = preprocess.pixels_to_input(value, batch=batch)
        blank = np.flatnonzero(images.reshape(len(images), -1).max(axis=1) == 0)
        if len(blank):
            raise errors.InvalidInput(f"image {blank[0]}: {errors.NO_DIGIT}" if batch else errors.NO_DIGIT)
        return images

    return prepare


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise errors.PayloadTooLarge(errors.TOO_MANY_IMAGES.format(count=count, limit=limit))
    if count == 0:
        raise errors.InvalidInput(errors.EMPTY_BATCH)


def _unsupported(content_type: str, field: str, json_forms: str, batch: bool = False) -> errors.UnsupportedMediaType:
    content_type = content_type[: errors.ECHO_CHARS]
    if content_type.startswith("image/") and content_type not in parsing.IMAGE_TYPES:
        return errors.UnsupportedMediaType(errors.UNSUPPORTED_IMAGE_TYPE.format(content_type=content_type))
    # A supported image type sent raw to the batch endpoint is a wrong form, not a wrong image type.
    message = errors.UNSUPPORTED_BATCH_CONTENT_TYPE if batch else errors.UNSUPPORTED_CONTENT_TYPE
    return errors.UnsupportedMediaType(
        message.format(content_type=content_type or "none", field=field, json_forms=json_forms)
    )


async def _body(request: Request, settings: Settings) -> bytes:
    return await parsing.read_body(request.headers.get("content-length"), request.stream(), settings.max_body_bytes)


async def one_image(
    request: Request, settings: Settings, json_forms: str, json_fields: tuple[str, ...]
) -> tuple[str, object]:
    """The one image of a ``/predict`` or ``/read`` request, from whichever input form it uses.

    ``("image", bytes)`` for a raw image body, a multipart ``file`` or JSON ``image`` (base64);
    ``(field, value)`` for another of ``json_fields``.
    """
    content_type = request.headers.get("content-type", "")
    kind = parsing.media_type(content_type)
    if kind in parsing.IMAGE_TYPES:
        return "image", await _body(request, settings)
    if kind == "multipart/form-data":
        parts = parsing.parse_multipart(await _body(request, settings), content_type, "file")
        part = next((p for p in parts if p.name == "file"), None)
        if part is None:
            raise errors.InvalidInput(errors.MISSING_FILE_FIELD.format(field="file"))
        parsing.check_part_type(part)
        return "image", part.data
    if kind == JSON:
        body = parsing.loads_json(await _body(request, settings), json_forms)
        form = parsing.one_of(body, json_fields)
        if form == "image":
            return "image", parsing.decode_base64(body["image"], "'image'")
        return form, body[form]
    raise _unsupported(kind, "file", json_forms)


async def single_work(request: Request, settings: Settings) -> Prepare:
    """The work for ``POST /predict``, from whichever input form the request uses."""
    json_forms = '{"image": "<base64>"} or {"pixels": <28x28 numbers 0-255>}'
    form, value = await one_image(request, settings, json_forms, ("image", "pixels"))
    if form == "image":
        assert isinstance(value, bytes)
        return ImagesWork([value], settings.max_image_pixels, label=None)
    return _pixels(value, batch=False)


async def batch_work(request: Request, settings: Settings) -> Prepare:
    """The work for ``POST /predict/batch``."""
    content_type = request.headers.get("content-type", "")
    kind = parsing.media_type(content_type)
    json_forms = '{"images": ["<base64>", ...]} or {"pixels": <N x 28 x 28 numbers 0-255>}'
    limit = settings.max_batch_images
    if kind == "multipart/form-data":
        parts = [
            p
            for p in parsing.parse_multipart(await _body(request, settings), content_type, "files")
            if p.name == "files"
        ]
        if not parts:
            raise errors.InvalidInput(errors.MISSING_FILE_FIELD.format(field="files"))
        _check_count(len(parts), limit)
        for part in parts:
            parsing.check_part_type(part)
        return ImagesWork([p.data for p in parts], settings.max_image_pixels)
    if kind == JSON:
        body = parsing.loads_json(await _body(request, settings), json_forms)
        form = parsing.one_of(body, ("images", "pixels"))
        value = body[form]
        if not isinstance(value, list):
            raise errors.InvalidInput(
                errors.NOT_A_LIST
                if form == "images"
                else errors.PIXELS_SHAPE.format(expected="N x 28 x 28", got=type(value).__name__)
            )
        _check_count(len(value), limit)
        if form == "images":
            datas = [parsing.decode_base64(item, f"images[{i}]") for i, item in enumerate(value)]
            return ImagesWork(datas, settings.max_image_pixels)
        return lanes.pixels_work(_pixels(value, batch=True), len(value))
    raise _unsupported(kind, "files", json_forms, batch=True)
