"""Touching pairs and the pieces /read's cuts leave: inks that meet, good cuts only, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from training import negatives, touching
from training.config import TrainConfig
from training.data import Split
from training.train import make_open_set_data


@pytest.fixture(scope="module")
def digits(mnist_sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return mnist_sample


def _ink_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest distance in px between ink of ``a`` and ink of ``b`` (0: they overlap)."""
    ya, xa = np.nonzero(a > touching.INK)
    yb, xb = np.nonzero(b > touching.INK)
    if np.any((a > touching.INK) & (b > touching.INK)):
        return 0.0
    d = (ya[:, None] - yb[None, :]) ** 2 + (xa[:, None] - xb[None, :]) ** 2
    return float(np.sqrt(d.min()))


def test_a_pair_s_inks_touch_or_overlap_a_little(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    rng = np.random.default_rng(0)
    gaps, overlaps = [], []
    for k in range(40):
        p = touching.pair(rng, images[k], images[k + 40])
        height = max(np.ptp(np.nonzero(p.left > 0.05)[0]), np.ptp(np.nonzero(p.right > 0.05)[0])) + 1
        gaps.append(_ink_gap(p.left, p.right) / height)
        # Neither digit is hidden: the right one's ink starts right of the left one's start.
        left_cols = np.flatnonzero(p.left.max(0) > touching.INK)
        right_cols = np.flatnonzero(p.right.max(0) > touching.INK)
        overlaps.append((left_cols[-1] - right_cols[0]) / height)
        assert right_cols[0] > left_cols[0]
    # A gap of at most OVERLAP's low end (2% of the height), plus a pixel of rounding.
    assert max(gaps) <= -touching.OVERLAP[0] + 2 / 40
    assert sum(g == 0 for g in gaps) >= 25  # most of them share ink
    assert max(overlaps) < 0.5  # overlapping a little, not drawn over each other


def test_pieces_are_good_cuts_labelled_with_their_digit(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    rng = np.random.default_rng(1)
    kept = 0
    for k in range(60):
        a, b = images[k], images[k + 60]
        for ink, side in touching.pieces(rng, a, b):
            kept += 1
            assert side in (0, 1)
            assert ink.shape[0] >= 28 and float(ink.max()) > 0.5
        # The same seed gives the same pair and cut.
    assert kept >= 40  # most pairs give at least one usable piece
    made, made_labels = touching.make_pieces(50, seed=5, digits=images, labels=labels)
    again, again_labels = touching.make_pieces(50, seed=5, digits=images, labels=labels)
    assert made.shape == (50, 28, 28) and made.dtype == np.uint8
    assert np.array_equal(made, again) and np.array_equal(made_labels, again_labels)
    assert set(made_labels.tolist()) <= set(range(10)) and len(set(made_labels.tolist())) >= 6
    # Framed as the service frames a digit: ink centred, longer side about 20 px.
    assert all(img.max() > 128 for img in made)


def test_a_bad_cut_is_not_a_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cut that takes much of the neighbour along, or leaves too little of the digit, is dropped."""
    block = np.zeros((28, 28), np.uint8)
    block[4:24, 6:22] = 255

    def cut_at(share: float) -> list[tuple[np.ndarray, int]]:
        def straight(p: touching.Pair, rng: np.random.Generator) -> np.ndarray:
            left_ink = np.flatnonzero(p.left.max(0) > touching.INK)
            column = left_ink[0] + share * (left_ink[-1] + 1 - left_ink[0])
            return np.broadcast_to(np.arange(p.left.shape[1]) < column, p.left.shape)

        monkeypatch.setattr(touching, "_cut", straight)
        return touching.pieces(np.random.default_rng(2), block, block)

    assert [side for _, side in cut_at(1.0)] == [0, 1]  # between the blocks: both pieces are digits
    assert cut_at(0.3) == []  # left keeps 30% of its block, right holds 70% of the neighbour's
    assert [side for _, side in cut_at(0.8)] == [1]  # left keeps 80%: short of MIN_OWN; right is clean


def test_training_gets_the_pieces_as_digits(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    train, validation = Split(images[:150], labels[:150]), Split(images[150:175], labels[150:175])
    config = TrainConfig(model="improved", negatives=20, validation_negatives=10, touching_pieces=30)
    made = make_open_set_data(config, train, validation)
    assert made.pieces is not None and len(made.pieces.labels) == 30
    assert int(made.pieces.labels.max()) <= 9  # digits, never NOT_A_DIGIT
    none = make_open_set_data(TrainConfig(model="improved", negatives=20, validation_negatives=10), train, validation)
    assert none.pieces is None


def test_multi_digit_negatives_include_pairs_whose_inks_touch(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    rng = np.random.default_rng(3)
    drawn = [negatives.draw_multi_digit(rng, images) for _ in range(40)]
    # touching.pair works at SCALE times MNIST's size: its crops are taller than 28 + 8 px.
    assert sum(d.shape[0] > 28 + 8 for d in drawn) >= 8
