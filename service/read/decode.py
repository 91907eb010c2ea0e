"""Choose, from every candidate's classification, the best way to read each line.

A line's atoms must each belong to exactly one chosen candidate; of all such readings, the one
with the highest total score wins (dynamic programming over candidates ordered by their last
atom). A candidate's score is the log of the model's belief in its best digit (its
``confidence``; with an open-set model, times its ``digit_score``), less what its shape says
against it: wider than a digit, much shorter than its line. Between two chosen neighbours that
share columns (one reading where one digit in two strokes was meant) a cost is paid. The
weights were tuned on the dev split of ``benchmarks/read_numbers.py`` (docs/read.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from service.read.segment import Candidate, Layout


@dataclass(frozen=True)
class Weights:
    """The reading's trade-offs. Defaults: tuned on the dev split (docs/read.md)."""

    #: Added per digit read: above 0 favours cutting and splitting, below 0 merging.
    digit_bonus: float = 0.05
    #: A digit is at most about this wide for its height; the cost grows past it.
    max_aspect: float = 1.1
    aspect_cost: float = 0.0
    #: A digit is at most about this wide for its line's height; the cost grows past it.
    max_width: float = 1.0
    width_cost: float = 1.0
    #: A digit is at least about this share of its line's height; the cost grows below it.
    min_height: float = 0.45
    height_cost: float = 6.0
    #: Cost per share (of the narrower one's width) that two neighbours' columns overlap.
    overlap_cost: float = 1.0
    #: Between neighbours from different marks, a cost per share of the line's height that their
    #: gap falls short of this: digits are spaced, the strokes of one digit are not.
    min_gap: float = 0.08
    gap_cost: float = 0.0
    #: Inside one digit, a cost per share of the line's height that a mark starts right of the
    #: marks before it ends, past this allowance: a digit's strokes overlap, neighbours do not.
    merge_gap: float = 0.05
    merge_cost: float = 5.0
    #: How much an open-set model's digit_score counts beside the confidence (no effect with a
    #: closed-set model, whose digit_score is 1.0). Dev split, open-set model: touching pairs
    #: 63.5% at 1.0, 65.0% at 3.0 (20 per style), numbers 91% at both (10 per style).
    digit_score_weight: float = 3.0


DEFAULT: Final = Weights()
#: Probabilities are floored here before the log, so one piece the model rejects outright
#: cannot outweigh everything else.
FLOOR: Final = 1e-6


def best_readings(
    layout: Layout,
    probabilities: NDArray[np.float32],
    digit_scores: NDArray[np.float32] | None,
    weights: Weights = DEFAULT,
) -> list[list[int]]:
    """For each line, the indices (into ``layout.candidates``) of the candidates read, left to right."""
    confidence = probabilities.max(axis=1).astype(np.float64)
    belief = np.log(np.maximum(confidence, FLOOR))
    if digit_scores is not None:
        belief += weights.digit_score_weight * np.log(np.maximum(digit_scores.astype(np.float64), FLOOR))
    by_line: dict[int, list[int]] = {}
    for k, candidate in enumerate(layout.candidates):
        by_line.setdefault(candidate.line, []).append(k)
    readings = []
    for line in range(len(layout.lines)):
        ks = by_line.get(line, [])
        height = layout.heights[line]
        scores = {
            k: float(belief[k]) + _shape(layout.candidates[k], height, weights) - _merge(layout, k, height, weights)
            for k in ks
        }
        readings.append(_best_path(layout, ks, scores, height, weights))
    return readings


def _shape(candidate: Candidate, line_height: float, weights: Weights) -> float:
    """What the candidate's shape says for (+) or against (-) it being one digit."""
    top, bottom, left, right = candidate.box
    height, width = bottom - top, right - left
    score = weights.digit_bonus
    score -= weights.aspect_cost * max(0.0, width / height - weights.max_aspect)
    line_height = max(line_height, 1.0)
    score -= weights.width_cost * max(0.0, width / line_height - weights.max_width)
    score -= weights.height_cost * max(0.0, weights.min_height - height / line_height)
    return score


def _merge(layout: Layout, k: int, line_height: float, w: Weights) -> float:
    """The cost of reading separate marks as one digit: the gaps between them, beyond a pen-lift's."""
    candidate = layout.candidates[k]
    atoms = layout.lines[candidate.line][candidate.first : candidate.last]
    cost, reach = 0.0, atoms[0].box[3]
    for before, atom in zip(atoms[:-1], atoms[1:], strict=True):
        if atom.mark != before.mark:
            cost += w.merge_cost * max(0.0, (atom.box[2] - reach) / max(line_height, 1.0) - w.merge_gap)
        reach = max(reach, atom.box[3])
    return cost


def _boundary(layout: Layout, a: Candidate, b: Candidate, line_height: float, w: Weights) -> float:
    """The cost of reading ``a`` and ``b`` as two neighbouring digits rather than parts of one."""
    shared = min(a.box[3], b.box[3]) - max(a.box[2], b.box[2])
    narrower = min(a.box[3] - a.box[2], b.box[3] - b.box[2])
    cost = w.overlap_cost * max(0.0, shared / max(narrower, 1))
    atoms = layout.lines[a.line]
    if atoms[a.last - 1].mark != atoms[b.first].mark:
        cost += w.gap_cost * max(0.0, w.min_gap + shared / max(line_height, 1.0))
    return cost


def _best_path(layout: Layout, ks: list[int], scores: dict[int, float], line_height: float, w: Weights) -> list[int]:
    """The highest-scoring cover of the line's atoms by candidates ``ks``."""
    candidates = layout.candidates
    atoms = len(layout.lines[candidates[ks[0]].line]) if ks else 0
    ending: dict[int, list[int]] = {}
    for k in ks:
        ending.setdefault(candidates[k].last, []).append(k)
    best: dict[int, tuple[float, int]] = {}  # candidate -> (score of the best reading ending with it, previous)
    for end in range(1, atoms + 1):
        for k in ending.get(end, []):
            first = candidates[k].first
            if first == 0:
                best[k] = (scores[k], -1)
                continue
            options = [
                (best[p][0] - _boundary(layout, candidates[p], candidates[k], line_height, w), p)
                for p in ending.get(first, [])
                if p in best
            ]
            if options:
                value, previous = max(options)
                best[k] = (value + scores[k], previous)
    finals = [(best[k][0], k) for k in ending.get(atoms, []) if k in best]
    if not finals:
        return []
    path = []
    k = max(finals)[1]
    while k >= 0:
        path.append(k)
        k = best[k][1]
    return path[::-1]
