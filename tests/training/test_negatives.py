"""The not-a-digit generator: reproducible, MNIST-framed, and held-out parts kept out of training."""

from __future__ import annotations

import numpy as np
import pytest

from training import negatives
from training.negatives import (
    HELD_OUT_FAMILIES,
    HELD_OUT_KINDS,
    TRAIN_FAMILIES,
    TRAIN_KINDS,
    generate,
    to_mnist_form,
)
from training.negatives.framing import stroke_width
from training.negatives.glyphs import DIGIT_LIKE, GLYPHS
from training.negatives.marks import draw_digit_piece, draw_multi_digit


@pytest.fixture(scope="module")
def digits(mnist_sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return mnist_sample


def test_same_seed_same_set_other_seed_other_set(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    a = generate(60, seed=3, digits=images, labels=labels)
    b = generate(60, seed=3, digits=images, labels=labels)
    c = generate(60, seed=4, digits=images, labels=labels)
    assert np.array_equal(a.images, b.images) and list(a.kinds) == list(b.kinds)
    assert not np.array_equal(a.images, c.images)


def test_every_training_kind_appears_in_mnist_form(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    made = generate(200, seed=0, digits=images, labels=labels)
    assert made.images.shape == (200, 28, 28) and made.images.dtype == np.uint8
    assert set(made.kinds) == set(TRAIN_KINDS) - ({"glyph"} if not negatives.fonts_for(TRAIN_FAMILIES) else set())
    for image in made.images:
        ys, xs = np.nonzero(image > 25)
        # MNIST form: the longer side of the ink is 20 px (19-21 after rounding), mass near (14, 14).
        assert 18 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 21
        mass = image.astype(np.float64)
        row = (mass.sum(1) @ np.arange(28)) / mass.sum()
        col = (mass.sum(0) @ np.arange(28)) / mass.sum()
        assert abs(row - 14) < 2.5 and abs(col - 14) < 2.5
        assert image.max() >= 200  # full-strength ink, as MNIST's


def test_held_out_sets_use_only_held_out_kinds_and_families() -> None:
    made = generate(80, seed=1, held_out=True)
    assert set(made.kinds) <= set(HELD_OUT_KINDS)
    glyph_sources = set(made.sources[made.kinds == "glyph"])
    assert glyph_sources <= set(HELD_OUT_FAMILIES)
    assert not glyph_sources & set(TRAIN_FAMILIES)
    # The marks held out are never drawn for training.
    assert not (set(HELD_OUT_KINDS) - {"glyph"}) & set(TRAIN_KINDS)


def test_training_sets_never_use_held_out_families(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    made = generate(120, seed=2, digits=images, labels=labels)
    assert not set(made.sources[made.kinds == "glyph"]) & set(HELD_OUT_FAMILIES)


def test_no_glyph_is_a_digit_or_looks_like_one() -> None:
    assert not set(GLYPHS) & DIGIT_LIKE
    assert not set("0123456789") & set(GLYPHS)


def test_no_family_is_on_both_sides() -> None:
    assert not set(TRAIN_FAMILIES) & set(HELD_OUT_FAMILIES)
    train_files = {f for _, f in negatives.fonts_for(TRAIN_FAMILIES)}
    held_files = {f for _, f in negatives.fonts_for(HELD_OUT_FAMILIES)}
    assert not train_files & held_files


def test_multi_digit_crops_hold_more_than_one_digit(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    ink = draw_multi_digit(np.random.default_rng(0), images)
    # Two or three digits side by side: far wider than tall before framing.
    assert ink.shape[1] > 1.4 * 28
    framed = to_mnist_form(ink)
    ys, xs = np.nonzero(framed > 25)
    assert np.ptp(xs) > np.ptp(ys)


def test_digit_pieces_are_part_of_a_digit(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    piece = draw_digit_piece(np.random.default_rng(5), images, labels)
    assert piece.size < 28 * 28 * 0.6


def test_stroke_widths_are_brought_into_mnists_band() -> None:
    thin = np.zeros((200, 200), np.float32)
    thin[20:180, 99:101] = 1  # a hairline
    thin[99:101, 20:180] = 1
    framed = to_mnist_form(thin).astype(np.float32) / 255
    width = stroke_width(framed > 0.5)
    assert width > 1.2  # a 2 px line at 200 px would be 0.2 px at 20 px without the correction


def test_empty_canvas_is_refused() -> None:
    with pytest.raises(ValueError, match="no ink"):
        to_mnist_form(np.zeros((50, 50), np.float32))
