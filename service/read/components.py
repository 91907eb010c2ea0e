"""Connected components (8-connected) of an ink mask, in numpy: runs, their links, a union-find.

scipy.ndimage.label would do it in C, but scipy is some 100 MB installed and tens of MB per
worker once imported, for one function. Here each row's runs of ink are found at once, the
runs of neighbouring rows that touch are paired with two ``searchsorted`` calls, and the pairs
are merged by repeated hooking and pointer jumping, all in whole-array numpy operations. No
Python loop runs per pixel, per run or per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]


@dataclass
class Components:
    """Components 1..n of a mask: a label image (0 = background) and each one's box, area and mass."""

    labels: NDArray[np.int32]
    top: IntArray
    bottom: IntArray  # exclusive
    left: IntArray
    right: IntArray  # exclusive
    area: IntArray
    mass: NDArray[np.float64]

    @property
    def count(self) -> int:
        return len(self.area)


def label(mask: NDArray[np.bool_], weights: NDArray[np.float32]) -> Components:
    """Label ``mask``'s 8-connected components; ``mass`` sums ``weights`` over each one."""
    if mask.shape[0] > mask.shape[1]:
        # Runs follow rows: label the transpose of tall images, so there are fewer, longer runs.
        t = label(np.ascontiguousarray(mask.T), np.ascontiguousarray(weights.T))
        return Components(np.ascontiguousarray(t.labels.T), t.left, t.right, t.top, t.bottom, t.area, t.mass)
    height, width = mask.shape
    padded = np.zeros((height, width + 2), np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)
    run_rows, starts = np.nonzero(steps == 1)
    ends = np.nonzero(steps == -1)[1]  # exclusive; row-major order pairs each start with its end
    runs = len(starts)
    labels = np.zeros((height, width), np.int32)
    if runs == 0:
        empty = np.zeros(0, np.int64)
        return Components(labels, empty, empty, empty, empty, empty, np.zeros(0))
    stride = width + 2
    # Runs [s, e) in row r and [s2, e2) in row r + 1 touch (8-connected) when s2 <= e and s <= e2.
    next_row = (run_rows + 1) * stride
    first = np.searchsorted(run_rows * stride + ends, next_row + starts, side="left")
    last = np.searchsorted(run_rows * stride + starts, next_row + ends, side="right")
    counts = np.maximum(last - first, 0)
    total = int(counts.sum())
    u = np.repeat(np.arange(runs), counts)
    v = np.repeat(first, counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    root = _union(runs, u, v)
    _, component = np.unique(root, return_inverse=True)
    component = component.astype(np.int64)
    n = int(component.max()) + 1
    lengths = ends - starts
    pixels = int(lengths.sum())
    offsets = np.arange(pixels) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = np.repeat(run_rows * width + starts, lengths) + offsets
    owner = np.repeat(component, lengths)
    labels.reshape(-1)[flat] = owner + 1
    top = np.full(n, height, np.int64)
    bottom = np.zeros(n, np.int64)
    left = np.full(n, width, np.int64)
    right = np.zeros(n, np.int64)
    np.minimum.at(top, component, run_rows)
    np.maximum.at(bottom, component, run_rows + 1)
    np.minimum.at(left, component, starts)
    np.maximum.at(right, component, ends)
    area = np.bincount(component, weights=lengths, minlength=n).astype(np.int64)
    mass = np.bincount(owner, weights=weights.reshape(-1)[flat].astype(np.float64), minlength=n).astype(np.float64)
    return Components(labels, top, bottom, left, right, area, mass)


def _union(n: int, u: IntArray, v: IntArray) -> IntArray:
    """Each node's component root (the smallest node in it), for the undirected edges u-v.

    Hooking every edge's larger root onto its smaller one, then pointer jumping to the roots,
    until no edge joins two roots: a few rounds for strokes and for noise alike.
    """
    parent = np.arange(n)
    while len(u):
        ru, rv = parent[u], parent[v]
        apart = ru != rv
        if not apart.any():
            break
        u, v, ru, rv = u[apart], v[apart], ru[apart], rv[apart]
        low = np.minimum(ru, rv)
        np.minimum.at(parent, np.maximum(ru, rv), low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent
