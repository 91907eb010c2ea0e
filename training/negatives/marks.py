"""Marks that are not digits, drawn with a pen on an empty canvas, and the ones made from MNIST digits.

Pen marks (scribbles, strokes, crosses, arrows, polygons, hatching, textures, noise; held out:
spirals, waves, smileys, stars) and pieces and multi-digit crops of MNIST *training* digits.
Each returns raw ink (1.0) before framing.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from training.negatives.framing import CANVAS, SIZE, Ink, Rng


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
