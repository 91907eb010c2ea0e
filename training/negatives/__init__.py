"""Images that are not digits, made here, reproducibly, with no download: outlier exposure's data.

Every generator draws ink (1.0) on an empty float canvas; :func:`to_mnist_form` then frames it the
way the service frames an upload (longer side 20 px, strokes brought into MNIST's width band at
80 px, centre of mass at (14, 14) of 28x28), so the model sees negatives exactly as it will see
real uploads that are not digits.

Kinds of negatives (:data:`TRAIN_KINDS`): letters and symbols rendered from installed fonts
(``fc-list``), pen scribbles, loose strokes, crosses, arrows, polygons, hatching, textures,
noise, pieces of MNIST *training* digits and crops of two or three touching training digits.
:data:`HELD_OUT_KINDS` and :data:`HELD_OUT_FAMILIES` never reach training: the benchmark's
held-out figure on them is the honest one.

Glyphs that are digits, or that handwriting cannot tell from one, are never negatives (see
:data:`DIGIT_LIKE`): training the model to refuse them would teach it to refuse real digits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.negatives import marks
from training.negatives.framing import SIZE, Ink, Rng, to_mnist_form
from training.negatives.glyphs import HELD_OUT_FAMILIES, TRAIN_FAMILIES, draw_glyph, fonts_for
from training.negatives.marks import draw_digit_piece, draw_multi_digit

__all__ = [
    "HELD_OUT_FAMILIES",
    "HELD_OUT_KINDS",
    "HELD_OUT_WEIGHTS",
    "TRAIN_FAMILIES",
    "TRAIN_KINDS",
    "TRAIN_WEIGHTS",
    "Negatives",
    "draw",
    "font_inventory",
    "fonts_for",
    "generate",
    "kind_plan",
    "to_mnist_form",
]

TRAIN_KINDS = (
    "glyph",
    "scribble",
    "strokes",
    "cross",
    "arrow",
    "polygon",
    "hatching",
    "texture",
    "noise",
    "digit_piece",
    "multi_digit",
)
HELD_OUT_KINDS = ("glyph", "spiral", "wave", "smiley", "star")
#: Share of each training kind in a generated set (glyphs and the MNIST-made kinds are the
#: hardest negatives, the nearest to digits, so they get the most).
TRAIN_WEIGHTS = {
    "glyph": 0.30,
    "scribble": 0.10,
    "strokes": 0.07,
    "cross": 0.04,
    "arrow": 0.04,
    "polygon": 0.05,
    "hatching": 0.04,
    "texture": 0.04,
    "noise": 0.04,
    "digit_piece": 0.12,
    "multi_digit": 0.16,
}
#: Held-out sets draw half glyphs of held-out families, half held-out kinds of marks.
HELD_OUT_WEIGHTS = {"glyph": 0.5, "spiral": 0.125, "wave": 0.125, "smiley": 0.125, "star": 0.125}


@dataclass(frozen=True)
class Negatives:
    images: np.ndarray  # (N, 28, 28) uint8, MNIST form
    kinds: np.ndarray  # (N,) str: the generator
    sources: np.ndarray  # (N,) str: the font family for glyphs, else the kind

    def __len__(self) -> int:
        return len(self.kinds)


# --- Sets ----------------------------------------------------------------------------------------

MARKS: dict[str, Callable[[Rng], Ink]] = {
    "scribble": marks.draw_scribble,
    "strokes": marks.draw_strokes,
    "cross": marks.draw_cross,
    "arrow": marks.draw_arrow,
    "polygon": marks.draw_polygon,
    "hatching": marks.draw_hatching,
    "texture": marks.draw_texture,
    "noise": marks.draw_noise,
    "spiral": marks.draw_spiral,
    "wave": marks.draw_wave,
    "smiley": marks.draw_smiley,
    "star": marks.draw_star,
}


def draw(
    kind: str,
    rng: Rng,
    fonts: Sequence[tuple[str, str]] = (),
    digits: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> tuple[Ink, str]:
    """One negative of ``kind`` as raw ink (before framing), and its source (family or kind)."""
    if kind == "glyph":
        if not fonts:
            raise ValueError("no fonts of the requested families are installed (fc-list)")
        return draw_glyph(rng, fonts)
    if kind in ("digit_piece", "multi_digit"):
        if digits is None or labels is None:
            raise ValueError(f"{kind} negatives need MNIST training digits")
        if kind == "digit_piece":
            return draw_digit_piece(rng, digits, labels), kind
        return draw_multi_digit(rng, digits), kind
    return MARKS[kind](rng), kind


def kind_plan(count: int, weights: dict[str, float], rng: Rng) -> list[str]:
    """``count`` kinds in the given shares (rounded, remainder to the first), shuffled."""
    total = sum(weights.values())
    plan: list[str] = []
    for kind, weight in weights.items():
        plan += [kind] * int(count * weight / total)
    plan += [next(iter(weights))] * (count - len(plan))
    rng.shuffle(plan)
    return plan


def generate(
    count: int,
    *,
    seed: int,
    held_out: bool = False,
    digits: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> Negatives:
    """``count`` negatives in MNIST form; the same seed (and installed fonts) gives the same set.

    ``held_out=False`` draws the training kinds from the training families (``digits`` and
    ``labels``, MNIST *training* images, feed the pieces and the multi-digit crops);
    ``held_out=True`` draws only what training never sees.
    """
    rng = np.random.default_rng(seed)
    weights = HELD_OUT_WEIGHTS if held_out else TRAIN_WEIGHTS
    fonts = fonts_for(HELD_OUT_FAMILIES if held_out else TRAIN_FAMILIES)
    if not fonts:
        weights = {k: v for k, v in weights.items() if k != "glyph"}
    plan = kind_plan(count, weights, rng)
    images = np.zeros((count, SIZE, SIZE), np.uint8)
    sources = []
    for i, kind in enumerate(plan):
        ink, source = draw(kind, rng, fonts, digits, labels)
        images[i] = to_mnist_form(ink)
        sources.append(source)
    return Negatives(images, np.array(plan), np.array(sources))


def font_inventory() -> dict[str, list[str]]:
    """Which installed font files each side uses (recorded in the model's metadata)."""
    return {
        "train": sorted({Path(f).name for _, f in fonts_for(TRAIN_FAMILIES)}),
        "held_out": sorted({Path(f).name for _, f in fonts_for(HELD_OUT_FAMILIES)}),
    }
