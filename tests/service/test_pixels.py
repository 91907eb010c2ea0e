"""Tests of service.pixels: JSON pixel arrays checked for shape, type and range, and scaled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.errors import PIXELS_NOT_FINITE, PIXELS_TYPE, InvalidInput
from service.pixels import pixels_to_input

# --- pixels_to_input ------------------------------------------------------------------------------


def grid(value: float = 0) -> list[list[float]]:
    return [[value] * 28 for _ in range(28)]


def test_pixels_single_image() -> None:
    pixels = grid(0)
    pixels[3][4] = 255
    pixels[5][6] = 127.5
    out = pixels_to_input(pixels, batch=False)
    assert out.shape == (1, 28, 28) and out.dtype == np.float32
    assert out[0, 3, 4] == 1.0 and out[0, 5, 6] == pytest.approx(0.5)
    assert out.sum() == pytest.approx(1.5)


def test_pixels_batch() -> None:
    out = pixels_to_input([grid(0), grid(255), grid(51)], batch=True)
    assert out.shape == (3, 28, 28) and out.dtype == np.float32
    assert out[0].max() == 0 and out[1].min() == 1 and out[2].mean() == pytest.approx(0.2)


def test_pixels_are_used_as_given() -> None:
    pixels = grid(0)
    pixels[0][0] = 200  # off-centre, a corner: no recentring, no scaling, no polarity change
    out = pixels_to_input(pixels, batch=False)
    assert out[0, 0, 0] == pytest.approx(200 / 255) and out.sum() == pytest.approx(200 / 255)


def deep(depth: int) -> list[object]:
    value: list[object] = [0]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "batch"),
    [
        (grid()[:27], False),
        ([row[:27] for row in grid()], False),
        ([grid()], False),
        (grid(), True),
        ([], False),
        ([], True),
        ([[]], True),
        (5, False),
        (grid()[:-1] + [[0] * 29], False),
        ([grid(), grid()[:27]], True),
        (deep(40), False),
        (deep(100_000), False),
        (deep(100_000), True),
    ],
    ids=[
        "27-rows",
        "27-cols",
        "3d-single",
        "2d-batch",
        "empty",
        "empty-batch",
        "batch-of-empty",
        "scalar",
        "ragged",
        "ragged-batch",
        "deep-40",
        "deep-100000",
        "deep-100000-batch",
    ],
)
def test_pixels_shape_errors(value: object, batch: bool) -> None:
    with pytest.raises(InvalidInput, match="'pixels' must be") as info:
        pixels_to_input(value, batch=batch)
    assert info.value.status_code == 422
    assert "28 x 28" in info.value.detail


@pytest.mark.parametrize("bad", ["1", True, False, None, {"a": 1}, [1, 2], "abc", b"x", 1 + 2j], ids=repr)
def test_pixels_type_errors(bad: object) -> None:
    pixels: list[list[object]] = [list(row) for row in grid()]
    pixels[7][9] = bad
    with pytest.raises(InvalidInput) as info:
        pixels_to_input(pixels, batch=False)
    if isinstance(bad, list):
        assert "'pixels' must be" in info.value.detail  # a list in a number's place: a shape error
    else:
        assert info.value.detail == PIXELS_TYPE


def test_pixels_all_booleans_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        pixels_to_input([[True] * 28 for _ in range(28)], batch=False)
    assert info.value.detail == PIXELS_TYPE


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_pixels_not_finite(bad: float) -> None:
    pixels = grid()
    pixels[0][0] = bad
    with pytest.raises(InvalidInput) as info:
        pixels_to_input([pixels], batch=True)
    assert info.value.detail == PIXELS_NOT_FINITE


@pytest.mark.parametrize(
    ("bad", "shown"), [(-1, "-1"), (256, "256"), (255.5, "255.5"), (10**30, "1e+30"), (-(10**400), "-inf")]
)
def test_pixels_out_of_range(bad: float, shown: str) -> None:
    pixels: list[list[float]] = grid()
    pixels[27][27] = bad
    with pytest.raises(InvalidInput, match="from 0 to 255") as info:
        pixels_to_input(pixels, batch=False)
    assert shown in info.value.detail


@given(
    arrays(np.float64, (28, 28), elements=st.floats(0, 255)),
    arrays(np.bool_, (28, 28)),
)
@settings(max_examples=30, deadline=None)
def test_any_valid_pixels_are_scaled(values: np.ndarray, as_int: np.ndarray) -> None:
    # JSON numbers arrive as Python ints and floats, mixed freely.
    pixels = [
        [int(v) if integer else float(v) for v, integer in zip(row, flags, strict=True)]
        for row, flags in zip(values, as_int, strict=True)
    ]
    out = pixels_to_input(pixels, batch=False)
    assert out.shape == (1, 28, 28)
    np.testing.assert_allclose(out[0], np.asarray(pixels, dtype=np.float64) / 255, rtol=1e-6, atol=1e-7)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
        lambda children: st.lists(children, max_size=30),
        max_leaves=60,
    )
)
@settings(max_examples=100, deadline=None)
def test_any_json_value_is_accepted_or_refused_cleanly(value: object) -> None:
    for batch in (False, True):
        try:
            out = pixels_to_input(value, batch=batch)
        except InvalidInput:
            continue
        assert out.dtype == np.float32 and out.shape[1:] == (28, 28)
