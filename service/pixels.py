"""JSON ``pixels``: checking a client's nested lists of numbers and scaling them to model input.

This is parsing, not image processing: the pixels are used as given (the client says they are
already MNIST-form), so every check here is about the shape, the types and the range.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Final

import numpy as np
from numpy.typing import NDArray

from service.errors import PIXELS_NOT_FINITE, PIXELS_RANGE, PIXELS_SHAPE, PIXELS_TYPE, InvalidInput

# Not imported from service.preprocess, which re-exports this module (and needs Pillow).
#: The model's input side: MNIST's 28x28.
SIZE: Final = 28
#: The pixel scale MNIST was stored on (8-bit levels); the model takes them divided by it.
MAX_LEVEL: Final = 255

FloatArray = NDArray[np.float32]


def pixels_to_input(value: object, *, batch: bool) -> FloatArray:
    """JSON ``pixels`` (28x28, or N x 28 x 28 with ``batch``) to float32 (N, 28, 28) scaled to [0, 1].

    The pixels are used as given: the client says they are already MNIST-form.
    """
    expected = "an N x 28 x 28 array of" if batch else "a 28 x 28 array of"
    try:
        array = np.asarray(value)
    except (ValueError, RecursionError):
        raise InvalidInput(PIXELS_SHAPE.format(expected=expected, got="a ragged or too deeply nested array")) from None
    except (OverflowError, TypeError):
        raise InvalidInput(PIXELS_TYPE) from None
    kind = array.dtype.kind
    if kind == "O":
        raise InvalidInput(_object_error(value, expected))
    if kind not in "iuf" or array.ndim == 0:
        if array.ndim == 0 and kind in "iuf":
            raise InvalidInput(PIXELS_SHAPE.format(expected=expected, got="a single number"))
        raise InvalidInput(PIXELS_TYPE)
    wanted = 3 if batch else 2
    if array.ndim != wanted or array.shape[-2:] != (SIZE, SIZE) or array.shape[0] == 0:
        got = " x ".join(str(n) for n in array.shape) + " array"
        raise InvalidInput(PIXELS_SHAPE.format(expected=expected, got=got))
    if not isinstance(value, np.ndarray) and _has_bool(value, array.ndim):
        # numpy quietly turns True into 1 when it sits among numbers.
        raise InvalidInput(PIXELS_TYPE)
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise InvalidInput(PIXELS_NOT_FINITE)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > MAX_LEVEL:
        raise InvalidInput(PIXELS_RANGE.format(low=low, high=high))
    # Scale to [0, 1], as the model was trained.
    scaled = (values / MAX_LEVEL).astype(np.float32)
    return scaled if batch else scaled[None]


def _has_bool(value: object, ndim: int) -> bool:
    """Whether a nested list of the right shape holds a boolean (type-checked per row, in C)."""
    rows: Iterable[Iterable[object]] = value  # type: ignore[assignment]
    if ndim == 3:
        rows = itertools.chain.from_iterable(rows)  # type: ignore[arg-type]
    kinds: set[type] = set()
    for row in rows:
        kinds.update(map(type, row))
    return bool in kinds or np.bool_ in kinds


def _object_error(value: object, expected: str) -> str:
    """Why numpy fell back to an object array: huge integers, or mixed/ragged content."""
    leaves = _leaves(value)
    if any(isinstance(leaf, bool) or not isinstance(leaf, (int, float)) for leaf in leaves):
        return PIXELS_TYPE
    if any(isinstance(leaf, int) for leaf in leaves):
        numbers: list[int | float] = leaves  # type: ignore[assignment]
        return PIXELS_RANGE.format(low=_as_float(min(numbers)), high=_as_float(max(numbers)))
    return PIXELS_SHAPE.format(expected=expected, got="a ragged array")


def _as_float(number: int | float) -> float:
    """A Python number as a float, huge integers as infinities (float() would raise)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _leaves(value: object) -> list[object]:
    """The non-list items of nested lists, iteratively (the nesting may be adversarially deep)."""
    leaves: list[object] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            leaves.append(item)
    return leaves
