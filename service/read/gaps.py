"""How far apart the ink of neighbouring marks is: the pieces of one broken digit nearly touch.

A fine pen's stroke fades out in places (its antialiased core falls to the background), and an
erased band or a pen lift breaks a digit, so one digit can be several marks. Their pieces are a
pen's width or two apart; separate digits are written a tenth of their height apart or more.
:mod:`service.read.segment` counts nearly touching marks as one for its span of candidates.
(A decoder cost for reading two of them as two digits gained nothing on the dev split.)
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from service.read.components import Components

#: Marks whose boxes are further apart than this share of their line's height are not measured.
REACH: Final = 0.2
#: Edge pixels measured per mark, at most (evenly spread): bounds the work for big scribbles to
#: 512 x 512 distances per pair, within a pixel or two of the true gap.
MAX_EDGE: Final = 512


def ink_gaps(marks: Components, lines: list[list[int]], heights: list[float]) -> dict[tuple[int, int], float]:
    """For pairs (a, b), a < b, of marks on one line with boxes within REACH: the gap between their ink, in px."""
    labels = marks.labels
    padded = np.pad(labels, 1)
    inner = (
        (padded[:-2, 1:-1] == labels)
        & (padded[2:, 1:-1] == labels)
        & (padded[1:-1, :-2] == labels)
        & (padded[1:-1, 2:] == labels)
    )
    ys, xs = np.nonzero((labels > 0) & ~inner)
    owner = labels[ys, xs].astype(np.int64) - 1
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(marks.count + 1))
    points: list[NDArray[np.float64]] = []
    for k in range(marks.count):
        chosen = order[bounds[k] : bounds[k + 1]]
        if len(chosen) > MAX_EDGE:
            chosen = chosen[np.linspace(0, len(chosen) - 1, MAX_EDGE).astype(np.int64)]
        points.append(np.stack((ys[chosen], xs[chosen]), axis=1).astype(np.float64))
    gaps: dict[tuple[int, int], float] = {}
    for line, height in zip(lines, heights, strict=True):
        reach = REACH * height
        for i, a in enumerate(line):
            for b in line[i + 1 :]:
                gap_x = max(marks.left[a] - marks.right[b], marks.left[b] - marks.right[a])
                gap_y = max(marks.top[a] - marks.bottom[b], marks.top[b] - marks.bottom[a])
                if max(gap_x, gap_y) > reach or not len(points[a]) or not len(points[b]):
                    continue
                apart = points[a][:, None, :] - points[b][None, :, :]
                # Edge pixels of touching-by-a-corner marks are 1 apart: the gap is the pixels between.
                gap = float(np.sqrt((apart**2).sum(axis=2).min())) - 1
                gaps[(min(a, b), max(a, b))] = max(gap, 0.0)
    return gaps


def groups_of(count: int, gaps: dict[tuple[int, int], float], line_of: dict[int, float], near: float) -> list[int]:
    """Each mark's group: marks whose ink is within ``near`` of their line's height are one group (chained)."""
    parent = list(range(count))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for (a, b), gap in gaps.items():
        if gap <= near * line_of[a]:
            parent[max(root(a), root(b))] = min(root(a), root(b))
    return [root(k) for k in range(count)]
