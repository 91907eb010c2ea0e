"""Group an image's marks into lines in reading order, with the pieces of broken digits on their digit's line."""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from service.read.components import Components

#: A mark joins a line when it shares at least this share of the shorter one's height with the
#: line's last mark: neighbours share most of their height even on a drifting baseline.
LINE_OVERLAP: Final = 0.3
#: The line's last marks whose band of height a new mark is compared with.
LINE_RECENT: Final = 3
#: Lines are chained from marks at least this share of the image's tall marks' height (the
#: 75th percentile): digits vary 0.8-1.2 in size, so every whole digit is one. Shorter marks
#: (pieces) go to the nearest line afterwards.
LINE_SEED: Final = 0.55
#: A line whose tallest mark is under this share of the tall marks' height is made of pieces
#: (a broken 2's halves chained apart, a 7's bar) and joins the line nearest it.
FRAGMENT_LINE: Final = 0.7
#: A mark is a piece of the mark above or below it (a 5's top bar, a 4's second stroke) when it
#: is at most this share of that mark's height, shares at least PIECE_SHARE of its own width
#: with it, and is at most PIECE_GAP of that mark's height away.
PIECE_HEIGHT: Final = 0.6
PIECE_SHARE: Final = 0.5
PIECE_GAP: Final = 0.3


def lines_of(marks: Components) -> list[list[int]]:
    """Mark indices grouped into lines, top to bottom, each left to right (by box centre).

    Lines are chained from the marks of a digit's height only; the short ones (pieces of a
    broken digit, a 5's separate bar, a dot of a dashed stroke) then go to the line nearest
    them, so that a piece never starts a line of its own.
    """
    top, bottom, left, right = marks.top, marks.bottom, marks.left, marks.right
    height = bottom - top
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    hosts = _hosts(marks)
    tall = float(np.percentile(height, 75))
    seeds = np.flatnonzero((hosts < 0) & (height >= LINE_SEED * tall))
    lines: list[list[int]] = []
    for i in sorted(seeds.tolist(), key=lambda k: centre_x[k]):
        best, best_share = -1, LINE_OVERLAP
        for index, line in enumerate(lines):
            # The band of the line's last few marks: one piece of a digit broken across
            # (above the other) shares no height with that other piece, but with its neighbours.
            recent = line[-LINE_RECENT:]
            band_top, band_bottom = min(top[recent]), max(bottom[recent])
            shared = min(bottom[i], band_bottom) - max(top[i], band_top)
            share = shared / min(height[i], band_bottom - band_top)
            if share >= best_share:
                best, best_share = index, share
        if best < 0:
            lines.append([i])
        else:
            lines[best].append(i)
    lines = _join_fragments(marks, lines, tall)
    line_of = {i: index for index, line in enumerate(lines) for i in line}
    for i in sorted(set(range(marks.count)) - set(line_of), key=lambda k: centre_x[k]):
        j, hops = i, 0
        while hosts[j] >= 0 and hops < len(hosts):  # a piece of a piece: follow to a whole mark
            j, hops = int(hosts[j]), hops + 1
        index = line_of[j] if j in line_of else _nearest_line(marks, lines, i)
        lines[index].append(i)
    lines.sort(key=lambda line: float(np.median(centre_y[line])))
    return [sorted(line, key=lambda k: centre_x[k]) for line in lines]


def _hosts(marks: Components) -> NDArray[np.int64]:
    """For each mark, the taller mark it is a piece of (right above or below it), or -1."""
    top, bottom, left, right = marks.top, marks.bottom, marks.left, marks.right
    height, width = bottom - top, right - left
    shared_x = np.minimum(right[:, None], right[None, :]) - np.maximum(left[:, None], left[None, :])
    gap_y = np.maximum(top[:, None] - bottom[None, :], top[None, :] - bottom[:, None])
    hosts = (
        (height[:, None] <= PIECE_HEIGHT * height[None, :])
        & (shared_x >= PIECE_SHARE * width[:, None])
        & (gap_y <= PIECE_GAP * height[None, :])
    )
    np.fill_diagonal(hosts, False)
    best: NDArray[np.int64] = np.argmax(np.where(hosts, height[None, :], -1), axis=1)
    return np.where(hosts.any(axis=1), best, -1)


def _nearest_line(marks: Components, lines: list[list[int]], i: int) -> int:
    """The line whose marks nearest ``i`` across are nearest it up or down (gap between bands)."""
    if not lines:
        lines.append([])
        return 0
    centre_x = (marks.left + marks.right) / 2
    best, best_gap = 0, np.inf
    for index, line in enumerate(lines):
        near = sorted(line, key=lambda k: abs(centre_x[k] - centre_x[i]))[:2]
        band_top, band_bottom = min(marks.top[near]), max(marks.bottom[near])
        gap = max(0, band_top - marks.bottom[i], marks.top[i] - band_bottom)
        # Inside two bands at once: the one whose middle is nearer.
        gap += 1e-3 * abs((band_top + band_bottom) - (marks.top[i] + marks.bottom[i]))
        if gap < best_gap:
            best, best_gap = index, gap
    return best


def _join_fragments(marks: Components, lines: list[list[int]], tall: float) -> list[list[int]]:
    """Lines of nothing but short marks (a broken digit's halves, each chained apart) join their nearest line."""
    height = marks.bottom - marks.top
    whole = [line for line in lines if height[line].max() >= FRAGMENT_LINE * tall]
    if not whole:
        return lines
    for line in lines:
        if height[line].max() < FRAGMENT_LINE * tall:
            for i in line:
                whole[_nearest_line(marks, whole, i)].append(i)
    return whole
