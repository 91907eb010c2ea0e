"""How far the working tree's 28x28 model inputs are from a git ref's, on the same uploads.

A speed change that is meant to be exact must give the same inputs: this script runs both
preprocessings (``benchmarks.preprocess_cost.load_before``) on the committed test images
(tests/data), on the five kinds of ``benchmarks.inputs`` and on ``--per-style`` fresh renderings
of every real-world style, and prints, per group, how many inputs are identical, the largest
absolute difference, and any upload that one side refused and the other did not:

    python -m benchmarks.same_outputs --before main --per-style 20
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from types import ModuleType

import numpy as np

from benchmarks.canvas import canvas_png, centre_lines
from benchmarks.common import load_test_digits
from benchmarks.inputs import real_inputs
from benchmarks.preprocess_cost import MAX_PIXELS, load_before
from benchmarks.styles import STYLES
from harness import ROOT
from service import preprocess


def uploads(per_style: int) -> Iterator[tuple[str, bytes]]:
    """(group, bytes) of every upload compared."""
    for path in sorted((ROOT / "tests" / "data").rglob("*")):
        if path.suffix.lower() in (".png", ".jpg", ".gif", ".bmp", ".tiff", ".webp"):
            yield f"tests/data/{path.parent.name}", path.read_bytes()
    digits = load_test_digits(max(per_style, 1))
    for item in real_inputs(digits.images[0], digits.labels[0]):
        yield f"inputs:{item.kind}", item.data
    # Transparent canvases big enough to be shrunk (by 2, 3 and 4) before the levels are read.
    for digit in digits.images[:per_style]:
        for side in (140, 420, 700, 1000):
            yield f"transparent canvas {side} px", canvas_png(centre_lines(digit), side, transparent=True)
    rng = np.random.default_rng(20261202)
    for name, style in STYLES.items():
        for digit in digits.images[:per_style]:
            yield f"style:{name}", style(digit, rng, 1.0)[0]


def model_input(module: ModuleType, data: bytes) -> np.ndarray | str:
    """The model input, or the refusal's class name (the old tree raises its own copy of the errors)."""
    try:
        return np.asarray(module.image_to_input(data, MAX_PIXELS))
    except Exception as exc:  # noqa: BLE001 - see above
        return type(exc).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="main")
    parser.add_argument("--per-style", type=int, default=20)
    args = parser.parse_args()
    before = load_before(args.before)
    groups: dict[str, list[float]] = {}
    for group, data in uploads(args.per_style):
        old, new = model_input(before, data), model_input(preprocess, data)
        if isinstance(old, str) or isinstance(new, str):
            difference = 0.0 if old == new else float("inf")
            if difference:
                named = [side if isinstance(side, str) else "ok" for side in (old, new)]
                print(f"{group}: before {named[0]}, after {named[1]}")
        else:
            difference = float(np.abs(old - new).max())
        groups.setdefault(group, []).append(difference)
    print("| group | uploads | identical | max abs difference |")
    print("|---|---:|---:|---:|")
    for group, differences in groups.items():
        identical = sum(d == 0 for d in differences)
        print(f"| {group} | {len(differences)} | {identical} | {max(differences):.3g} |")


if __name__ == "__main__":
    main()
