"""Cropping: the digit's bounding box, ignoring specks well away from it."""

from __future__ import annotations

from typing import Final

import numpy as np

from service.errors import NO_DIGIT, InvalidInput
from service.preprocess.form import BoolArray, ByteArray, FloatArray

#: Ink fragments with less than this share of the ink are specks, if they are also far away.
SPECK_SHARE: Final = 0.03
#: How far (relative to the digit's size) soft stroke edges may reach beyond the strokes' cores.
EDGE: Final = 0.04
#: A fragment this close to the digit (a share of the digit's extent, and at least NEAR_PIXELS)
#: belongs to it, however light: the dot of a broken stroke, the far end of a faint 7.
NEAR_SHARE: Final = 0.25
NEAR_PIXELS: Final = 2
#: Cropping rounds: a speck left out on one axis can change the other axis' profile once.
CROP_ROUNDS: Final = 2


def bounds(mask: BoolArray) -> tuple[int, int, int, int]:
    """The bounding box (top, bottom, left, right; end-exclusive) of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def digit_box(ink: ByteArray | FloatArray, strong: float, faint: float) -> tuple[int, int, int, int]:
    """The ink's bounding box, ignoring small specks well away from the digit.

    The box is found on the strokes' cores (values above ``strong``), where stray noise rarely
    reaches, then widened over the soft edges (above ``faint``) right next to it.
    """
    core = ink > strong
    if not core.any():
        raise InvalidInput(NO_DIGIT)
    top, bottom, left, right = 0, ink.shape[0], 0, ink.shape[1]
    for _ in range(CROP_ROUNDS):
        region = core[top:bottom, left:right]
        new_top, new_bottom, dropped_rows = main_span(region, axis=1)
        new_left, new_right, dropped_cols = main_span(region, axis=0)
        top, bottom, left, right = top + new_top, top + new_bottom, left + new_left, left + new_right
        if not (dropped_rows or dropped_cols):
            break  # nothing left out, so the other axis' profile cannot change either
    margin = max(1, round(EDGE * max(bottom - top, right - left)))
    above, below = max(0, top - margin), min(ink.shape[0], bottom + margin)
    rows_filled = np.asarray((ink[above:below, left:right] > faint).any(axis=1), dtype=np.bool_)
    top, bottom = widen(rows_filled, top - above, top, bottom)
    before, after = max(0, left - margin), min(ink.shape[1], right + margin)
    cols_filled = np.asarray((ink[top:bottom, before:after] > faint).any(axis=0), dtype=np.bool_)
    left, right = widen(cols_filled, left - before, left, right)
    return top, bottom, left, right


def widen(filled: BoolArray, before: int, start: int, end: int) -> tuple[int, int]:
    """Extend [start, end) over the filled cells just outside it (``filled`` starts ``before`` earlier)."""
    inner_end = before + end - start
    head = filled[:before][::-1]
    tail = filled[inner_end:]
    grow_start = int(np.argmin(head)) if not head.all() else head.size
    grow_end = int(np.argmin(tail)) if not tail.all() else tail.size
    return start - grow_start, end + grow_end


def main_span(region: BoolArray, axis: int) -> tuple[int, int, bool]:
    """The run of non-empty rows (axis=1) or columns (axis=0) holding the digit, and whether any
    other run was left out: heavy runs and runs close to the digit stay, distant specks go."""
    filled = np.asarray(region.any(axis=axis), dtype=np.bool_)
    index = np.flatnonzero(filled)
    first, last = int(index[0]), int(index[-1]) + 1
    if last - first == index.size:
        return first, last, False  # one solid run: the usual case
    mass = region.view(np.uint8).sum(axis=axis, dtype=np.int64)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], filled, [False])).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    cumulative = np.concatenate(([0], np.cumsum(mass)))
    run_mass = cumulative[ends] - cumulative[starts]
    share = run_mass / run_mass.sum()
    head = tail = int(np.argmax(run_mass))
    changed = True
    while changed:
        changed = False
        extent = ends[tail] - starts[head]
        near = max(NEAR_PIXELS, NEAR_SHARE * extent)
        if head > 0:
            gap = starts[head] - ends[head - 1]
            if share[head - 1] >= SPECK_SHARE or gap <= near:
                head -= 1
                changed = True
        if tail < starts.size - 1:
            gap = starts[tail + 1] - ends[tail]
            if share[tail + 1] >= SPECK_SHARE or gap <= near:
                tail += 1
                changed = True
    return int(starts[head]), int(ends[tail]), int(starts[head]) != first or int(ends[tail]) != last
