"""Letters and symbols rendered from installed fonts (``fc-list``): the glyph negatives.

Font families are split into those used for training and those held out (the benchmark's honest
figure). Glyphs that are digits, or that handwriting cannot tell from one, are never drawn
(:data:`DIGIT_LIKE`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.negatives.framing import CANVAS, Ink, Rng

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
