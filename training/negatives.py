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

import math
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Rng = np.random.Generator
Ink = np.ndarray  # float32 (H, W) in [0, 1], 1 = ink

SIZE = 28
#: MNIST fitted each digit into a 20x20 box inside 28x28, centre of mass at (14, 14).
BOX = 20
CENTRE = 14.0
#: The service measures and corrects stroke width with the longer side at 80 px, and brings
#: strokes into 1.7-2.3 px at the 20 px scale (MNIST's middle third). The same here, so a
#: negative's strokes look like an upload's.
STROKE_SIDE = 80
MIN_STROKE, MAX_STROKE = 1.7, 2.3
#: Generators draw on a square canvas of this side (pen widths below are in its pixels).
CANVAS = 96

#: Letters and symbols that look like a digit in someone's handwriting (O/o/Q/D: 0; I/l/i/j/J/|/!
#: and brackets: 1; Z/z: 2; S/s: 5; b/G: 6; B: 8; g/q: 9), plus the digits themselves. They are
#: not negatives: refusing them would mean refusing real digits.
DIGIT_LIKE = frozenset("0123456789OoQDIlijJ|!/\\()[]SsZzgqbBG")
LETTERS = "".join(c for c in "ABCEFHKLMNPRTUVWXYacdefhkmnprtuvwxy" if c not in DIGIT_LIKE)
SYMBOLS = "&#@$%?+=*<>{}~^€£¥§¶©®±×÷√∞πΣΩαβδλμσφψω¿"
GLYPHS = LETTERS + SYMBOLS

#: Font families used for training glyphs, and those kept out of training (held out). Matched
#: against the family name as a prefix. Handwriting-style families sit on both sides.
TRAIN_FAMILIES = (
    "Comic Neue",
    "DkgHandwriting",
    "Breip",
    "femkeklaver",
    "Because We Build",
    "Because We Connect",
    "Because We Create",
    "DejaVu Sans",
    "DejaVu Serif",
    "Liberation Sans",
    "Liberation Serif",
    "FreeSans",
    "FreeSerif",
    "Nimbus Sans",
    "URW Bookman",
    "URW Gothic",
    "P052",
)
HELD_OUT_FAMILIES = (
    "Dancing Script",
    "Humor Sans",
    "Because We Learn",
    "Because We Mentor",
    "Go",
    "C059",
    "Nimbus Roman",
    "Noto Sans",
    "Z003",
)

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


# --- Fonts --------------------------------------------------------------------------------------


@cache
def installed_fonts() -> tuple[tuple[str, str], ...]:
    """(family, file) of every installed TrueType/OpenType font, sorted, from ``fc-list``."""
    if shutil.which("fc-list") is None:
        return ()
    out = subprocess.run(
        ["fc-list", "--format", "%{family[0]}|%{file}\n"], capture_output=True, text=True, check=False
    ).stdout
    fonts = set()
    for line in out.splitlines():
        family, _, file = line.partition("|")
        if file.endswith((".ttf", ".otf")):
            fonts.add((family, file))
    return tuple(sorted(fonts))


def _family_of(family: str, families: Sequence[str]) -> str | None:
    # Longest prefix first, so "Go" does not claim "Go Mono" before a longer entry could.
    for name in sorted(families, key=len, reverse=True):
        # Noto's family names go on into scripts without Latin letters ("Noto Sans Adlam").
        if family == name or (family.startswith(name + " ") and not name.startswith("Noto")):
            return name
    return None


def fonts_for(families: Sequence[str]) -> list[tuple[str, str]]:
    """(family group, file) of the installed fonts belonging to ``families``."""
    picked = []
    for family, file in installed_fonts():
        if "Mono" in family:
            continue  # monospaced letters are stretched versions of the same shapes
        group = _family_of(family, families)
        if group is not None:
            picked.append((group, file))
    return picked


@cache
def _font(file: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(file, size)


@cache
def _missing_glyph(file: str) -> bytes:
    """The font's rendering of a code point no font has: what a missing glyph looks like."""
    return _render_glyph_bytes(file, "\U0010fffd")


def _render_glyph_bytes(file: str, char: str) -> bytes:
    image = Image.new("L", (CANVAS, CANVAS))
    ImageDraw.Draw(image).text((CANVAS // 2, CANVAS // 2), char, fill=255, font=_font(file, 56), anchor="mm")
    return image.tobytes()


def has_glyph(file: str, char: str) -> bool:
    rendered = _render_glyph_bytes(file, char)
    return any(rendered) and rendered != _missing_glyph(file)


def draw_glyph(rng: Rng, fonts: Sequence[tuple[str, str]]) -> tuple[Ink, str]:
    """One letter or symbol from one of ``fonts``, slightly rotated; returns (ink, family)."""
    families = sorted({family for family, _ in fonts})
    for _ in range(50):
        # Family first, then one of its files: DejaVu's 17 files must not outvote Breip's one.
        family = families[rng.integers(len(families))]
        files = [file for name, file in fonts if name == family]
        file = files[rng.integers(len(files))]
        char = GLYPHS[rng.integers(len(GLYPHS))]
        if has_glyph(file, char):
            break
    image = Image.new("L", (CANVAS * 2, CANVAS * 2))
    ImageDraw.Draw(image).text((CANVAS, CANVAS), char, fill=255, font=_font(file, 100), anchor="mm")
    image = image.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255, family


# --- Marks drawn with a pen ---------------------------------------------------------------------


def _pen(rng: Rng) -> int:
    return int(rng.integers(3, 9))


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (CANVAS, CANVAS))
    return image, ImageDraw.Draw(image)


def _ink(image: Image.Image) -> Ink:
    return np.asarray(image, dtype=np.float32) / 255


def _line(draw: ImageDraw.ImageDraw, points: np.ndarray, width: int) -> None:
    draw.line([tuple(p) for p in points.tolist()], fill=255, width=width, joint="curve")
    r = width / 2
    for x, y in points[[0, -1]].tolist():  # round pen ends
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def _rotate(points: np.ndarray, angle: float, centre: float = CANVAS / 2) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    shifted = points - centre
    return np.stack([c * shifted[:, 0] - s * shifted[:, 1], s * shifted[:, 0] + c * shifted[:, 1]], 1) + centre


def draw_scribble(rng: Rng) -> Ink:
    """A random-walk pen trail with momentum: the loops and tangles of a doodle."""
    image, draw = _canvas()
    n = int(rng.integers(25, 90))
    heading, speed = rng.uniform(0, 2 * math.pi), rng.uniform(3, 6)
    turn = np.cumsum(rng.normal(0, 0.45, n))
    steps = np.stack([np.cos(heading + turn), np.sin(heading + turn)], 1) * speed
    points = np.cumsum(steps, 0)
    points -= points.mean(0) - CANVAS / 2
    _line(draw, np.clip(points, 4, CANVAS - 4), _pen(rng))
    return _ink(image)


def draw_strokes(rng: Rng) -> Ink:
    """Three to six loose straight strokes (fewer could spell a 1, 4 or 7)."""
    image, draw = _canvas()
    width = _pen(rng)
    for _ in range(int(rng.integers(3, 7))):
        _line(draw, rng.uniform(10, CANVAS - 10, (2, 2)), width)
    return _ink(image)


def draw_cross(rng: Rng) -> Ink:
    """A plus, an x or an asterisk, arms of unequal length."""
    image, draw = _canvas()
    width, arms = _pen(rng), int(rng.choice([2, 2, 3, 4]))
    base = rng.uniform(0, math.pi)
    for k in range(arms):
        angle = base + k * math.pi / arms + rng.normal(0, 0.08)
        a, b = rng.uniform(20, 42, 2)
        direction = np.array([math.cos(angle), math.sin(angle)])
        _line(draw, np.array([CANVAS / 2 - a * direction, CANVAS / 2 + b * direction]), width)
    return _ink(image)


def draw_arrow(rng: Rng) -> Ink:
    """A shaft with a head (sometimes two), pointing anywhere."""
    image, draw = _canvas()
    width = _pen(rng)
    tail, head = np.array([[16.0, CANVAS / 2], [CANVAS - 16.0, CANVAS / 2]])
    spread, barb = rng.uniform(0.35, 0.8), rng.uniform(14, 26)
    strokes = [np.array([tail, head])]
    ends = [(head, math.pi)] + ([(tail, 0.0)] if rng.random() < 0.3 else [])
    for point, back in ends:
        for side in (-1, 1):
            angle = back + side * spread
            strokes.append(np.array([point, point + barb * np.array([math.cos(angle), math.sin(angle)])]))
    angle = rng.uniform(0, 2 * math.pi)
    for stroke in strokes:
        _line(draw, _rotate(stroke, angle), width)
    return _ink(image)


def _regular(n: int, radius: float, rng: Rng, jitter: float = 0.08) -> np.ndarray:
    angles = np.arange(n) * 2 * math.pi / n + rng.uniform(0, 2 * math.pi)
    r = radius * (1 + rng.normal(0, jitter, n))
    return np.stack([np.cos(angles) * r, np.sin(angles) * r], 1) + CANVAS / 2


def draw_polygon(rng: Rng) -> Ink:
    """A triangle, square, diamond, pentagon or hexagon, outlined or filled. No circles: a 0."""
    image, draw = _canvas()
    points = _regular(int(rng.choice([3, 4, 4, 5, 6])), rng.uniform(26, 40), rng)
    if rng.random() < 0.25:
        draw.polygon([tuple(p) for p in points.tolist()], fill=255)
    else:
        _line(draw, np.vstack([points, points[:1]]), _pen(rng))
    return _ink(image)


def draw_hatching(rng: Rng) -> Ink:
    """Parallel lines across a patch, sometimes cross-hatched."""
    image, draw = _canvas()
    width = int(rng.integers(3, 6))
    gap = rng.uniform(9, 16)
    half = rng.uniform(25, 40)
    for angle in [rng.uniform(0, math.pi)] + ([rng.uniform(0, math.pi)] if rng.random() < 0.4 else []):
        for offset in np.arange(-half, half + 1e-6, gap):
            stroke = np.array([[CANVAS / 2 - half, CANVAS / 2 + offset], [CANVAS / 2 + half, CANVAS / 2 + offset]])
            _line(draw, _rotate(stroke, angle), width)
    return _ink(image)


def draw_texture(rng: Rng) -> Ink:
    """A regular pattern: a grid of dots, a checkerboard or a lattice of lines."""
    image, draw = _canvas()
    step = rng.uniform(12, 22)
    style = rng.integers(3)
    grid = np.arange(12, CANVAS - 11, step)
    for i, y in enumerate(grid):
        for j, x in enumerate(grid):
            if style == 0:
                r = rng.uniform(2.5, 5)
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
            elif style == 1 and (i + j) % 2 == 0:
                draw.rectangle((x, y, x + step, y + step), fill=255)
    if style == 2:
        width = _pen(rng)
        for v in grid:
            _line(draw, np.array([[v, grid[0]], [v, grid[-1]]]), width)
            _line(draw, np.array([[grid[0], v], [grid[-1], v]]), width)
    return _ink(image)


def draw_noise(rng: Rng) -> Ink:
    """Blurred random noise, thresholded: blotches, or a speckled patch."""
    size = int(rng.integers(6, 20))
    field = rng.random((size, size)).astype(np.float32)
    picture = Image.fromarray(field).resize((CANVAS, CANVAS), Image.Resampling.BICUBIC)
    values = np.asarray(picture, dtype=np.float32)
    level = np.quantile(values, rng.uniform(0.55, 0.85))
    return np.asarray(np.clip((values - level) * 6, 0, 1))


# --- Held-out marks ------------------------------------------------------------------------------


def draw_spiral(rng: Rng) -> Ink:
    image, draw = _canvas()
    turns = rng.uniform(1.8, 3.5)
    t = np.linspace(0, turns * 2 * math.pi, 160)
    r = 4 + t / t[-1] * rng.uniform(30, 42)
    points = np.stack([np.cos(t) * r, np.sin(t) * r * rng.uniform(0.7, 1.0)], 1) + CANVAS / 2
    _line(draw, _rotate(points, rng.uniform(0, 2 * math.pi)), _pen(rng))
    return _ink(image)


def draw_wave(rng: Rng) -> Ink:
    """A sine wave or a zigzag of two to four periods."""
    image, draw = _canvas()
    x = np.linspace(8, CANVAS - 8, 120)
    periods, amplitude = rng.uniform(2, 4), rng.uniform(10, 22)
    phase = 2 * math.pi * periods * (x - 8) / (CANVAS - 16)
    y = np.sin(phase) if rng.random() < 0.5 else 2 / math.pi * np.arcsin(np.sin(phase))
    points = np.stack([x, CANVAS / 2 + amplitude * y], 1)
    _line(draw, _rotate(points, rng.uniform(-0.5, 0.5)), _pen(rng))
    return _ink(image)


def draw_smiley(rng: Rng) -> Ink:
    image, draw = _canvas()
    width, r = _pen(rng), rng.uniform(30, 42)
    c = CANVAS / 2
    draw.ellipse((c - r, c - r, c + r, c + r), outline=255, width=width)
    for side in (-1, 1):
        e = rng.uniform(3, 6)
        x, y = c + side * r * 0.38, c - r * 0.3
        draw.ellipse((x - e, y - e, x + e, y + e), fill=255)
    mouth = r * 0.55
    draw.arc((c - mouth, c - mouth * 0.6, c + mouth, c + mouth), 20, 160, fill=255, width=width)
    return _ink(image)


def draw_star(rng: Rng) -> Ink:
    image, draw = _canvas()
    n = int(rng.choice([5, 5, 6]))
    outer = _regular(n, rng.uniform(32, 42), rng, 0.04)
    width = _pen(rng)
    if n == 5:  # a pentagram, drawn in one stroke
        _line(draw, outer[[0, 2, 4, 1, 3, 0]], width)
    else:  # a six-pointed star: two triangles
        _line(draw, outer[[0, 2, 4, 0]], width)
        _line(draw, outer[[1, 3, 5, 1]], width)
    return _ink(image)


# --- Made from MNIST training digits -------------------------------------------------------------

#: Pieces that would still read as a digit: a 1's piece is a 1; the lower half of a 4, 7 or 9
#: is a 1; either half of an 8 is a 0; the lower half of a 6 is a 0, the upper of a 9 too.
_UNSAFE_PIECES = {
    1: {"top", "bottom", "left", "right"},
    4: {"bottom"},
    7: {"bottom"},
    8: {"top", "bottom"},
    9: {"top", "bottom"},
    6: {"bottom"},
    0: {"left", "right"},
}


def draw_digit_piece(rng: Rng, digits: np.ndarray, labels: np.ndarray) -> Ink:
    """A third to a half of one training digit, cut off by a straight line: a bad segmentation cut."""
    while True:
        i = int(rng.integers(len(digits)))
        side = str(rng.choice(["top", "bottom", "left", "right"]))
        if side not in _UNSAFE_PIECES.get(int(labels[i]), set()):
            break
    digit = digits[i].astype(np.float32) / 255
    ys, xs = np.nonzero(digit > 0.1)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    share = rng.uniform(0.3, 0.5)
    if side == "top":
        digit = digit[top : top + max(2, round((bottom - top) * share))]
    elif side == "bottom":
        digit = digit[bottom - max(2, round((bottom - top) * share)) : bottom]
    elif side == "left":
        digit = digit[:, left : left + max(2, round((right - left) * share))]
    else:
        digit = digit[:, right - max(2, round((right - left) * share)) : right]
    return np.asarray(digit)


def draw_multi_digit(rng: Rng, digits: np.ndarray) -> Ink:
    """Two or three training digits side by side, touching or overlapping a little."""
    count = 2 if rng.random() < 0.8 else 3
    pieces = []
    for _ in range(count):
        d = digits[int(rng.integers(len(digits)))].astype(np.float32) / 255
        xs = np.nonzero(d.max(0) > 0.1)[0]
        pieces.append(d[:, xs.min() : xs.max() + 1])
    width = sum(p.shape[1] for p in pieces) + 8
    canvas = np.zeros((SIZE + 8, width), np.float32)
    x = 0
    for p in pieces:
        dy = int(rng.integers(0, 8))
        h, w = p.shape
        region = canvas[dy : dy + h, x : x + w]
        np.maximum(region, p, out=region)
        # Overlap by 0-3 px: touching, as people write numbers quickly.
        x += max(1, w - int(rng.integers(0, 4)))
    return canvas


# --- Framing -------------------------------------------------------------------------------------


def _stroke_width(mask: np.ndarray) -> float:
    """Twice the area over the perimeter: a long thin stroke's width (the service's measure)."""
    padded = np.pad(mask, 1)
    perimeter = np.count_nonzero(padded[1:] != padded[:-1]) + np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    return 2.0 * np.count_nonzero(mask) / perimeter if perimeter else 0.0


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def to_mnist_form(ink: Ink) -> np.ndarray:
    """Frame ink as the service frames an upload: uint8 28x28, longer side 20, centred by mass.

    Raises ValueError for an empty canvas.
    """
    if float(ink.max(initial=0)) <= 0.05:
        raise ValueError("no ink")
    top, bottom, left, right = _bounds(ink > 0.05)
    crop = np.ascontiguousarray(ink[top:bottom, left:right], dtype=np.float32)
    longer = max(crop.shape)
    scale = STROKE_SIDE / longer
    middle = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    picture = Image.fromarray(crop).resize(middle, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR)
    strokes = np.clip(np.asarray(picture, dtype=np.float32) / max(float(np.asarray(picture).max()), 1e-6), 0, 1)
    width = _stroke_width(strokes > 0.5) * BOX / STROKE_SIDE
    # Whole-pixel dilation or erosion at 80 px (a quarter pixel at 20 px per step).
    steps = 0
    if width < MIN_STROKE:
        steps = round((MIN_STROKE - width) * STROKE_SIDE / BOX / 2)
    elif width > MAX_STROKE:
        steps = -round((width - MAX_STROKE) * STROKE_SIDE / BOX / 2)
    if steps:
        picture = Image.fromarray(np.pad(strokes, abs(steps) + 1))
        rank = ImageFilter.MaxFilter(3) if steps > 0 else ImageFilter.MinFilter(3)
        for _ in range(abs(steps)):
            picture = picture.filter(rank)
        eroded = np.asarray(picture, dtype=np.float32)
        strokes = eroded if eroded.max() > 0.05 else strokes  # never erode a mark away entirely
    top, bottom, left, right = _bounds(strokes > 0.02)
    strokes = np.ascontiguousarray(strokes[top:bottom, left:right])
    h, w = strokes.shape
    longer = max(h, w)
    final = (max(1, round(w * BOX / longer)), max(1, round(h * BOX / longer)))
    small = np.clip(np.asarray(Image.fromarray(strokes).resize(final, Image.Resampling.BOX)), 0, 1)
    return _centre(small)


def _centre(digit: np.ndarray) -> np.ndarray:
    h, w = digit.shape
    mass = float(digit.sum())
    row = float(digit.sum(1) @ np.arange(h)) / mass
    col = float(digit.sum(0) @ np.arange(w)) / mass
    top = min(max(math.floor(CENTRE - row + 0.5), 0), SIZE - h)
    left = min(max(math.floor(CENTRE - col + 0.5), 0), SIZE - w)
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top : top + h, left : left + w] = digit
    return np.round(out * 255).astype(np.uint8)


# --- Sets ----------------------------------------------------------------------------------------

MARKS: dict[str, Callable[[Rng], Ink]] = {
    "scribble": draw_scribble,
    "strokes": draw_strokes,
    "cross": draw_cross,
    "arrow": draw_arrow,
    "polygon": draw_polygon,
    "hatching": draw_hatching,
    "texture": draw_texture,
    "noise": draw_noise,
    "spiral": draw_spiral,
    "wave": draw_wave,
    "smiley": draw_smiley,
    "star": draw_star,
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
