"""Choose, from every candidate's classification, the best way to read each line.

A line's atoms must each belong to exactly one chosen candidate; of all such readings, the one
with the highest total score wins (dynamic programming over candidates ordered by their last
atom). A candidate's score is the log of the model's belief in its best digit (its
``confidence``; with an open-set model, times its ``digit_score``), less what its shape says
against it: wider than a digit, much shorter than its line. Between two chosen neighbours that
share columns (one reading where one digit in two strokes was meant) a cost is paid. A
candidate the pair model read (:mod:`service.read.pairs`) may also be chosen as two digits: its
score is the log of both digits' confidence and of its ``pair_score``. The weights were tuned on
the dev split of ``benchmarks/read_numbers.py`` (docs/read.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from service.read.pairs import PairReadings
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
    #: How much the pair model's pair_score counts beside its two digits' confidence, and what is
    #: added to a pair reading (beside its two digits' digit_bonus).
    pair_score_weight: float = 3.0
    pair_bonus: float = 0.0
    #: Two digits are at most about this wide for their line's height; the cost grows past it.
    max_pair_width: float = 2.2


class Choice(NamedTuple):
    """One step of a reading: a candidate read as one digit, or (``pair`` set) as two."""

    candidate: int  # index into Layout.candidates
    pair: int | None = None  # index into PairReadings' lists


DEFAULT: Final = Weights()
#: Probabilities are floored here before the log, so one piece the model rejects outright
#: cannot outweigh everything else.
FLOOR: Final = 1e-6


def best_readings(
    layout: Layout,
    probabilities: NDArray[np.float32],
    digit_scores: NDArray[np.float32] | None,
    weights: Weights = DEFAULT,
    pairs: PairReadings | None = None,
) -> list[list[Choice]]:
    """For each line, the candidates read (as one digit or as a pair), left to right."""
    confidence = probabilities.max(axis=1).astype(np.float64)
    belief = np.log(np.maximum(confidence, FLOOR))
    if digit_scores is not None:
        belief += weights.digit_score_weight * np.log(np.maximum(digit_scores.astype(np.float64), FLOOR))
    by_line: dict[int, list[Choice]] = {}
    for k, candidate in enumerate(layout.candidates):
        by_line.setdefault(candidate.line, []).append(Choice(k))
    pair_belief = _pair_belief(pairs, weights) if pairs is not None else {}
    for p, k in enumerate(pairs.candidates if pairs is not None else []):
        by_line.setdefault(layout.candidates[k].line, []).append(Choice(k, p))
    readings = []
    for line in range(len(layout.lines)):
        choices = by_line.get(line, [])
        height = layout.heights[line]
        scores = {}
        for choice in choices:
            k = choice.candidate
            if choice.pair is None:
                scores[choice] = float(belief[k]) + _shape(layout.candidates[k], height, weights)
            else:
                scores[choice] = pair_belief[choice.pair] + _pair_shape(layout.candidates[k], height, weights)
            scores[choice] -= _merge(layout, k, height, weights)
        readings.append(_best_path(layout, choices, scores, height, weights))
    return readings


def _pair_belief(pairs: PairReadings, weights: Weights) -> dict[int, float]:
    """Each pair reading's log belief: both digits' confidence and (weighted) its pair_score."""
    first = np.log(np.maximum(pairs.first.max(axis=1).astype(np.float64), FLOOR))
    second = np.log(np.maximum(pairs.second.max(axis=1).astype(np.float64), FLOOR))
    score = np.log(np.maximum(pairs.scores.astype(np.float64), FLOOR))
    belief = first + second + weights.pair_score_weight * score
    return {p: float(b) for p, b in enumerate(belief)}


def _pair_shape(candidate: Candidate, line_height: float, weights: Weights) -> float:
    """What the candidate's shape says for (+) or against (-) it being two digits side by side."""
    top, bottom, left, right = candidate.box
    height, width = bottom - top, right - left
    line_height = max(line_height, 1.0)
    score = 2 * weights.digit_bonus + weights.pair_bonus
    score -= weights.width_cost * max(0.0, width / line_height - weights.max_pair_width)
    score -= weights.height_cost * max(0.0, weights.min_height - height / line_height)
    return score


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


def _best_path(
    layout: Layout, choices: list[Choice], scores: dict[Choice, float], line_height: float, w: Weights
) -> list[Choice]:
    """The highest-scoring cover of the line's atoms by ``choices``."""
    candidates = layout.candidates
    atoms = len(layout.lines[candidates[choices[0].candidate].line]) if choices else 0
    ending: dict[int, list[Choice]] = {}
    for choice in choices:
        ending.setdefault(candidates[choice.candidate].last, []).append(choice)
    # choice -> (score of the best reading ending with it, the choice before it)
    best: dict[Choice, tuple[float, Choice | None]] = {}
    for end in range(1, atoms + 1):
        for choice in ending.get(end, []):
            candidate = candidates[choice.candidate]
            if candidate.first == 0:
                best[choice] = (scores[choice], None)
                continue
            options = [
                (best[p][0] - _boundary(layout, candidates[p.candidate], candidate, line_height, w), p)
                for p in ending.get(candidate.first, [])
                if p in best
            ]
            if options:
                value, previous = max(options, key=_rank)
                best[choice] = (value + scores[choice], previous)
    finals = [(best[c][0], c) for c in ending.get(atoms, []) if c in best]
    if not finals:
        return []
    path = []
    step: Choice | None = max(finals, key=_rank)[1]
    while step is not None:
        path.append(step)
        step = best[step][1]
    return path[::-1]


def _rank(option: tuple[float, Choice]) -> tuple[float, int, int]:
    """Order of options: by score, ties to the later candidate (and pair) as plain tuples would."""
    value, choice = option
    return value, choice.candidate, -1 if choice.pair is None else choice.pair
