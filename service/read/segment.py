"""Split an ink map into candidate digits: marks, lines, cut paths, and the pieces to classify.

The ink's strong components are the marks. Specks (tiny marks) next to a mark join it; the
others are ignored, as ``/predict`` ignores distant specks. Marks are grouped into lines in
reading order; a small mark right above or below a bigger one (a 5's separate top bar) goes
to that mark's line. A mark wide for its height may be two or more touching digits: it gets
cut paths, each the cheapest way from its top to its bottom through little ink near a minimum
of its column profile. Marks and the pieces between cut paths are a line's *atoms*, left to
right; every run of up to MAX_SPAN consecutive atoms is a *candidate* digit, framed as MNIST
frames a digit. :mod:`service.read.decode` picks, once the model has scored every candidate,
the best way to cover each line with candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from service.errors import NO_DIGIT, InvalidInput
from service.read.components import Components, label
from service.read.gaps import groups_of, ink_gaps
from service.read.ink import STRONG, FloatArray, frame
from service.read.lines import lines_of

#: Marks are made of ink above this level (0-1, stroke core 1): the stroke core's half, the level
#: preprocess finds a digit's box on. Measured on the dev split, 0.3 read fine pens better
#: (numbers 64 -> 72%) and blurred photos worse (two lines 92 -> 76%).
MARK_LEVEL: Final = STRONG
#: A mark with less ink than this share of the biggest mark's is a speck (a comma of noise, a
#: dust grain): it joins a mark it touches or nearly touches, else it is ignored. A 1 has
#: 30-50% of an 8's ink, a 5's separate top bar 8-20%, specks well under 1%.
SPECK_SHARE: Final = 0.04
#: How close (relative to the mark's longer side) a speck must be to join it, as in preprocess.
SPECK_REACH: Final = 0.25
#: Most marks considered: the biggest are kept, the rest are treated as specks. An image with
#: thousands of marks cannot make a reading slow (a page of 8-digit lines holds far fewer).
MAX_MARKS: Final = 96
#: Marks at least this wide for their height get cut paths, and at least this wide for their
#: line's height (a piece of a broken digit is not cut again). MNIST digits are at most about
#: as wide as tall (a 0, a slanted 2); two touching digits are 1.2-2 times, but a 1 touching
#: a 7 can be under 0.8. An open-set model's digit_score rejects the pieces of a digit, so it
#: tries narrower marks (dev split, open-set model: touching 60.0 -> 63.5%, 20 per style;
#: numbers 91% both ways, 10 per style). The closed-set model keeps the narrow gates: on the
#: dev split the loose ones changed it within noise (touching 52.5 -> 53.5%, numbers 87% both).
#: Open-set aspect 0.6 -> 0.5 (a narrow `11`, `19` is 0.55 wide for its height), with
#: OPEN_SET_PIECE_AREA: dev touching 63.7 -> 65.3%, numbers unchanged.
CUT_ASPECT: Final = 0.85
CUT_WIDTH: Final = 0.75
OPEN_SET_CUT_ASPECT: Final = 0.5
OPEN_SET_CUT_WIDTH: Final = 0.55
#: Most cut paths per mark, and each cut's pieces at least this share of the mark's height wide.
MAX_CUTS: Final = 4
MIN_PIECE: Final = 0.15
#: A cut path drifts at most this share of the mark's height either side of its column; each
#: step sideways costs this much ink, so the path stays straight unless a stroke is in the way.
CUT_WINDOW: Final = 0.2
CUT_DRIFT: Final = 0.1
#: A cut path may cross at most this many stroke widths of ink (touching digits meet in about one).
CUT_MAX_STROKES: Final = 1.5
#: Each piece a cut leaves holds at least this share of the mark's ink pixels.
MIN_PIECE_AREA: Final = 0.12
#: ... with an open-set model, this share: a 1 cut off a 3's tail is a small piece, and the
#: model's digit_score rejects a true sliver (dev, 30/style: touching 63.7 -> 65.3% with the
#: 0.5 aspect gate, numbers 93.3% unchanged).
OPEN_SET_PIECE_AREA: Final = 0.06
#: Runs of consecutive atoms over up to this many marks are candidates: a digit in three strokes,
#: or a digit broken by one cut and the next.
MAX_SPAN: Final = 3
#: ... and of at most this many atoms (pieces of cut marks, or of a fine pen's digit: up to 12).
#: Dev split, 20 per style, served model, 8 -> 12: numbers 92.0 -> 93.5% (thin pen 60 -> 75%),
#: broken 77.5 -> 78.0%, touching and two-lines unchanged, CPU per image +3% (numbers).
MAX_RUN_ATOMS: Final = 12
#: Marks whose ink is at most this share of their line's height apart count as one mark for
#: MAX_SPAN (a fine pen's stroke fades out in places: its digits fall in 3-5 pieces).
NEAR_PIECES: Final = 0.06
#: Most candidates classified for one image (each costs ~0.3 ms to frame and ~0.1 ms to run).
#: Past this, longer spans are dropped, then shorter ones; 8 digits in a line make about 30.
MAX_CANDIDATES: Final = 384
#: A candidate that is all of one mark (or of marks that nearly touch) and at least this wide for
#: its line's height and for its own height may be two touching digits: the pair model reads it
#: whole too (:mod:`service.read.pairs`). A narrow `11` is 0.55 as wide as tall.
PAIR_MIN_WIDTH: Final = 0.45
PAIR_MIN_ASPECT: Final = 0.45
#: Most candidates the pair model reads for one image (each costs ~0.5 ms to frame, ~0.3 ms to run).
MAX_PAIRS: Final = 32


@dataclass
class Atom:
    """One mark, or the piece of a mark between two cut paths (``None``: the mark's own edge)."""

    mark: int  # label in the Components
    left_cut: NDArray[np.int64] | None = None  # column per row of the mark's box: piece starts here
    right_cut: NDArray[np.int64] | None = None  # piece ends before this column
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right in the ink map
    cut_top: int = 0  # the row of the ink map where the cuts' rows start (the mark's top)


@dataclass
class Candidate:
    """A run of a line's atoms read as one digit."""

    line: int
    first: int  # atom indices [first, last) within the line
    last: int
    box: tuple[int, int, int, int]
    whole: bool = False  # every mark of the image: framed the /predict way


@dataclass
class Layout:
    """What /read's decoding needs: lines of atoms, the candidates and their 28x28 inputs."""

    lines: list[list[Atom]]
    heights: list[float]  # each line's typical mark height
    labels: NDArray[np.int32]  # the marks' label image
    #: Gap in px between the ink of two marks (lower label first) of one line, when their boxes are near.
    gaps: dict[tuple[int, int], float] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    images: FloatArray = field(default_factory=lambda: np.zeros((0, 28, 28), np.float32))
    #: Candidates that may be two touching digits (indices into ``candidates``), for the pair model.
    pairs: list[int] = field(default_factory=list)


def marks_of(values: FloatArray) -> Components:
    """The ink's marks: strong components, specks joined to their mark or dropped, at most MAX_MARKS."""
    components = label(values > MARK_LEVEL, values)
    if components.count == 0:
        return components
    mass = components.mass
    big = mass >= SPECK_SHARE * mass.max()
    if np.count_nonzero(big) > MAX_MARKS:
        big[:] = False
        big[np.argsort(-mass, kind="stable")[:MAX_MARKS]] = True
    keep = np.flatnonzero(big)
    small = np.flatnonzero(~big)
    owner = np.zeros(components.count + 1, np.int64)  # new label per old label (0: dropped)
    owner[keep + 1] = keep + 1
    c = components
    if len(small):
        # Gap between boxes (0 when they touch or overlap), against each mark's reach.
        gap_y = np.maximum(c.top[small, None] - c.bottom[None, keep], c.top[None, keep] - c.bottom[small, None])
        gap_x = np.maximum(c.left[small, None] - c.right[None, keep], c.left[None, keep] - c.right[small, None])
        gap = np.maximum(np.maximum(gap_x, gap_y), 0)
        side = np.maximum(c.bottom - c.top, c.right - c.left)[keep]
        near = gap <= np.maximum(2, SPECK_REACH * side)[None, :]
        nearest = np.argmin(np.where(near, gap, np.iinfo(np.int64).max), axis=1)
        joined = near[np.arange(len(small)), nearest]
        owner[small[joined] + 1] = keep[nearest[joined]] + 1
    labels = owner[c.labels]
    top = np.full(c.count, c.labels.shape[0])
    bottom = np.zeros(c.count, np.int64)
    left = np.full(c.count, c.labels.shape[1])
    right = np.zeros(c.count, np.int64)
    targets = owner[1:] - 1
    alive = targets >= 0
    np.minimum.at(top, targets[alive], c.top[alive])
    np.maximum.at(bottom, targets[alive], c.bottom[alive])
    np.minimum.at(left, targets[alive], c.left[alive])
    np.maximum.at(right, targets[alive], c.right[alive])
    area = np.bincount(targets[alive], weights=c.area[alive], minlength=c.count).astype(np.int64)
    new_mass = np.bincount(targets[alive], weights=c.mass[alive], minlength=c.count).astype(np.float64)
    return _renumber(labels, keep, top, bottom, left, right, area, new_mass)


def _renumber(
    labels: NDArray[np.int64],
    keep: NDArray[np.int64],
    top: NDArray[np.int64],
    bottom: NDArray[np.int64],
    left: NDArray[np.int64],
    right: NDArray[np.int64],
    area: NDArray[np.int64],
    mass: NDArray[np.float64],
) -> Components:
    """Labels 1..len(keep) for the kept marks, in their order."""
    table = np.zeros(len(top) + 1, np.int32)
    table[keep + 1] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return Components(table[labels], top[keep], bottom[keep], left[keep], right[keep], area[keep], mass[keep])


# --- Cuts -----------------------------------------------------------------------------------------


def cut_columns(profile: NDArray[np.float64], side: int, height: int) -> list[int]:
    """Columns (within a mark's box) where touching digits may meet: the lowest minima of ink."""
    margin = max(1, round(MIN_PIECE * height))
    if len(profile) < 2 * margin + 1:
        return []
    smooth = np.convolve(profile, np.ones(3) / 3, mode="same")
    inner = np.arange(margin, len(profile) - margin)
    values = smooth[inner]
    is_min = (values <= smooth[inner - 1]) & (values <= smooth[inner + 1])
    chosen: list[int] = []
    for column in inner[is_min][np.argsort(values[is_min], kind="stable")].tolist():
        if all(abs(column - c) >= margin for c in chosen):
            chosen.append(column)
        if len(chosen) == side:
            break
    return sorted(chosen)


def cut_path(ink: FloatArray, column: int, height: int) -> NDArray[np.int64]:
    """The cheapest top-to-bottom path through ``ink`` (one mark's box) near ``column``.

    Dynamic programming over rows: each row the path moves at most one column, paying
    CUT_DRIFT per move and the ink it crosses, within CUT_WINDOW of the mark's height.
    Returns the path's column for every row: the piece to its right starts there.
    """
    rows, cols = ink.shape
    reach = max(1, round(CUT_WINDOW * height))
    low, high = max(1, column - reach), min(cols - 1, column + reach + 1)
    cost = ink[:, low:high].astype(np.float64)
    cost += CUT_DRIFT * 0.01 * np.abs(np.arange(low, high) - column)[None, :]  # straight when free
    width = high - low
    total = cost[0].copy()
    moves = np.zeros((rows, width), np.int8)
    infinity = np.full(1, np.inf)
    for row in range(1, rows):
        stay = total
        from_left = np.concatenate((infinity, total[:-1])) + CUT_DRIFT
        from_right = np.concatenate((total[1:], infinity)) + CUT_DRIFT
        options = np.stack((from_left, stay, from_right))
        best = np.argmin(options, axis=0)
        moves[row] = best - 1
        total = options[best, np.arange(width)] + cost[row]
    path = np.zeros(rows, np.int64)
    path[-1] = int(np.argmin(total))
    for row in range(rows - 1, 0, -1):
        path[row - 1] = path[row] + moves[row, path[row]]
    return path + low


#: Most atoms in one image: cut paths stop being added past it.
MAX_ATOMS: Final = 192


def atoms_of(
    marks: Components, values: FloatArray, line: list[int], budget: int, line_height: float, open_set: bool = False
) -> list[Atom]:
    """A line's atoms left to right: its marks, wide ones cut into pieces (while ``budget`` lasts).

    ``open_set``: the model says when an image is not one digit, so narrower marks are tried cut too.
    """
    aspect, wide = (OPEN_SET_CUT_ASPECT, OPEN_SET_CUT_WIDTH) if open_set else (CUT_ASPECT, CUT_WIDTH)
    atoms: list[Atom] = []
    for mark in line:
        top, bottom = int(marks.top[mark]), int(marks.bottom[mark])
        left, right = int(marks.left[mark]), int(marks.right[mark])
        height, width = bottom - top, right - left
        whole = Atom(mark, box=(top, bottom, left, right))
        if width < aspect * height or width < wide * line_height or budget <= 1:
            atoms.append(whole)
            budget -= 1
            continue
        own = marks.labels[top:bottom, left:right] == mark + 1
        ink = np.where(own, values[top:bottom, left:right], np.float32(0))
        # A cut between touching digits crosses about one stroke; one through a digit (a 0's
        # middle, an 8's waist) crosses two or more.
        most_ink = CUT_MAX_STROKES * stroke_width(own) * (1 + np.sqrt(2)) / 2
        paths = []
        for column in cut_columns(own.sum(axis=0).astype(np.float64), min(MAX_CUTS, budget - 1), height):
            path = cut_path(ink, column, height)
            if float(ink[np.arange(height), path].sum()) <= most_ink:
                paths.append(path + left)
        pieces = _pieces(
            mark, own, paths, (top, bottom, left, right), OPEN_SET_PIECE_AREA if open_set else MIN_PIECE_AREA
        )
        atoms.extend(pieces)
        budget -= len(pieces)
    centre = [(a.box[2] + a.box[3]) / 2 for a in atoms]
    return [atoms[k] for k in np.argsort(centre, kind="stable").tolist()]


def stroke_width(mask: NDArray[np.bool_]) -> float:
    """Mean stroke width in pixels: twice the area over the perimeter (a long thin stroke's)."""
    edges = int(np.count_nonzero(mask[1:] != mask[:-1])) + int(np.count_nonzero(mask[:, 1:] != mask[:, :-1]))
    edges += int(np.count_nonzero(mask[0])) + int(np.count_nonzero(mask[-1]))
    edges += int(np.count_nonzero(mask[:, 0])) + int(np.count_nonzero(mask[:, -1]))
    return 2.0 * int(np.count_nonzero(mask)) / max(edges, 1)


def _pieces(
    mark: int,
    own: NDArray[np.bool_],
    paths: list[NDArray[np.int64]],
    box: tuple[int, int, int, int],
    min_share: float = MIN_PIECE_AREA,
) -> list[Atom]:
    """The pieces of a mark between its cut paths; a cut leaving a sliver (under ``min_share`` of its ink) goes."""
    top, bottom, left, right = box
    columns = np.arange(left, right)[None, :]
    for k in range(1, len(paths)):  # paths that cross would leave empty pieces
        paths[k] = np.maximum(paths[k], paths[k - 1])
    area = np.count_nonzero(own)
    while True:
        bounds: list[NDArray[np.int64] | None] = [None, *paths, None]
        pieces, sizes = [], []
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            inside = own.copy()
            if start is not None:
                inside &= columns >= start[:, None]
            if end is not None:
                inside &= columns < end[:, None]
            sizes.append(np.count_nonzero(inside))
            if not sizes[-1]:
                pieces.append(Atom(mark, start, end, box, top))
                continue
            rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
            piece_box = (top + int(rows[0]), top + int(rows[-1]) + 1, left + int(cols[0]), left + int(cols[-1]) + 1)
            pieces.append(Atom(mark, start, end, piece_box, top))
        smallest = int(np.argmin(sizes))
        if not paths or sizes[smallest] >= min_share * area:
            break
        # Drop the cut on the sliver's side with the smaller neighbour: the sliver joins that one.
        if smallest == 0:
            del paths[0]
        elif smallest == len(paths) or sizes[smallest - 1] < sizes[smallest + 1]:
            del paths[smallest - 1]
        else:
            del paths[smallest]
    return pieces if len(pieces) > 1 else [Atom(mark, box=box)]


# --- Candidates -----------------------------------------------------------------------------------


def layout_of(values: FloatArray, open_set: bool = False) -> Layout:
    """Marks, lines, atoms and candidates of an ink map (no framing yet); ``open_set`` as in :func:`atoms_of`."""
    marks = marks_of(values)
    if marks.count == 0:
        raise InvalidInput(NO_DIGIT)
    lines = lines_of(marks)
    budget = MAX_ATOMS
    atom_lines: list[list[Atom]] = []
    heights: list[float] = []
    for line in lines:
        # The line's digit height: pieces (a 5's bar) are marks too, so not the median.
        heights.append(float(np.percentile((marks.bottom - marks.top)[line], 75)))
        atoms = atoms_of(marks, values, line, max(budget, len(line)), heights[-1], open_set)
        budget -= len(atoms)
        atom_lines.append(atoms)
    layout = Layout(atom_lines, heights, marks.labels, ink_gaps(marks, lines, heights))
    height_of = {k: height for line, height in zip(lines, heights, strict=True) for k in line}
    group = groups_of(marks.count, layout.gaps, height_of, NEAR_PIECES)
    span = MAX_SPAN
    runs = [_runs(atoms, span, group) for atoms in atom_lines]
    while span > 1 and sum(map(len, runs)) > MAX_CANDIDATES:
        span -= 1
        runs = [_runs(atoms, span, group) for atoms in atom_lines]
    one_line = len(atom_lines) == 1
    for index, (atoms, line_runs) in enumerate(zip(atom_lines, runs, strict=True)):
        for first, last in line_runs:
            whole = one_line and first == 0 and last == len(atoms)
            layout.candidates.append(_candidate(atoms, index, first, last, whole))
    # Single atoms first, so that whatever a cap leaves out, every line can still be read.
    layout.candidates.sort(key=lambda c: c.last - c.first > 1)
    del layout.candidates[MAX_CANDIDATES:]
    layout.pairs = _pair_candidates(layout, group)
    return layout


def _pair_candidates(layout: Layout, group: list[int]) -> list[int]:
    """Candidates that hold all of one group of marks and are wide enough to be two digits."""
    found = []
    for k, candidate in enumerate(layout.candidates):
        atoms = layout.lines[candidate.line]
        groups = {group[a.mark] for a in atoms[candidate.first : candidate.last]}
        if len(groups) != 1:
            continue
        outside = atoms[: candidate.first] + atoms[candidate.last :]
        if any(group[a.mark] in groups for a in outside):
            continue
        top, bottom, left, right = candidate.box
        width, height = right - left, bottom - top
        if width >= PAIR_MIN_WIDTH * layout.heights[candidate.line] and width >= PAIR_MIN_ASPECT * height:
            found.append(k)
        if len(found) == MAX_PAIRS:
            break
    return found


def _runs(atoms: list[Atom], span: int, group: list[int]) -> list[tuple[int, int]]:
    """Runs [first, last) of consecutive atoms that touch at most ``span`` groups of marks.

    A mark's pieces count once, and so do marks that nearly touch (``group``): a fine pen's
    digit in four pieces is still a candidate.
    """
    runs = []
    for first in range(len(atoms)):
        marks: set[int] = set()
        for last in range(first + 1, min(len(atoms), first + MAX_RUN_ATOMS) + 1):
            marks.add(group[atoms[last - 1].mark])
            if len(marks) > span:
                break
            runs.append((first, last))
    return runs


def _candidate(atoms: list[Atom], line: int, first: int, last: int, whole: bool) -> Candidate:
    run = atoms[first:last]
    box = (
        min(a.box[0] for a in run),
        max(a.box[1] for a in run),
        min(a.box[2] for a in run),
        max(a.box[3] for a in run),
    )
    return Candidate(line, first, last, box, whole)


def crop_of(
    values: FloatArray, labels: NDArray[np.int32], atoms: list[Atom], box: tuple[int, int, int, int]
) -> FloatArray:
    """The ink of ``atoms`` only, in their box: their strong pixels and the soft edge right around them."""
    top, bottom, left, right = box
    top, left = max(0, top - 1), max(0, left - 1)
    bottom, right = min(values.shape[0], bottom + 1), min(values.shape[1], right + 1)
    sub = labels[top:bottom, left:right]
    columns = np.arange(left, right)[None, :]
    keep = np.zeros(sub.shape, np.bool_)
    for atom in atoms:
        inside = sub == atom.mark + 1
        for cut, keep_right in ((atom.left_cut, True), (atom.right_cut, False)):
            if cut is None:
                continue
            # The cut has a column for each row of the mark's box; the mark has no ink elsewhere.
            limit = np.zeros(bottom - top, np.int64)
            start, end = max(top, atom.cut_top), min(bottom, atom.cut_top + len(cut))
            limit[start - top : end - top] = cut[start - atom.cut_top : end - atom.cut_top]
            inside &= (columns >= limit[:, None]) if keep_right else (columns < limit[:, None])
        keep |= inside
    padded = np.pad(keep, 1)
    near = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:] | keep
    keep |= near & (sub == 0)
    return np.where(keep, values[top:bottom, left:right], np.float32(0))


def frame_candidates(layout: Layout, values: FloatArray, whole: FloatArray | None) -> FloatArray:
    """Each candidate's 28x28 model input; ``whole`` is the /predict framing of the whole image."""
    images = np.empty((len(layout.candidates), 28, 28), np.float32)
    for k, candidate in enumerate(layout.candidates):
        if candidate.whole and whole is not None:
            images[k] = whole
            continue
        images[k] = frame(candidate_crop(layout, values, k))
    return images


def candidate_crop(layout: Layout, values: FloatArray, k: int) -> FloatArray:
    """Candidate ``k``'s own ink in its box (as :func:`frame_candidates` crops it)."""
    candidate = layout.candidates[k]
    atoms = layout.lines[candidate.line][candidate.first : candidate.last]
    return crop_of(values, layout.labels, atoms, candidate.box)
