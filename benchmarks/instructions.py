"""Instruction counts (valgrind's callgrind) of decoding and of preprocessing, per kind of real input.

Timings on a shared 2-core machine move by 2x between runs of the same code; instruction counts
move by well under 1%. For each kind of ``benchmarks.inputs`` and for each of ``decode`` (the
cheapest decode of the bytes, as ``benchmarks.inputs`` counts it) and ``preprocess`` (the
service's ``image_to_input``), a child process runs the call ``--calls`` times under callgrind,
which counts only that loop (``--toggle-collect`` on the ``functools.reduce`` that runs it), not
the imports and set-up. The ratio is preprocessing beyond decoding over decoding, the figure the
target (<= 0.3) is about:

    python -m benchmarks.instructions --kinds canvas transparent
    python -m benchmarks.instructions --before main      # also the preprocessing of a git ref

Needs ``valgrind`` (``apt-get install valgrind``); each child takes about half a minute.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.inputs import KINDS, real_inputs, reduced_decode
from benchmarks.preprocess_cost import MAX_PIXELS, load_before
from harness import ROOT


def child(kind: str, what: str, calls: int, before: str | None) -> None:
    """``before``: the directory an old tree was exported to (``service_before``), or None for this tree."""
    from benchmarks.common import load_test_digits

    if before is not None:
        # The old tree was exported by the parent (no git subprocesses in here: their waiting
        # would count instructions of its own).
        sys.path.insert(0, before)
        module = importlib.import_module("service_before.preprocess")
    else:
        from service import preprocess as module
    digits = load_test_digits(1)
    (item,) = real_inputs(digits.images[0], digits.labels[0], (kind,))
    data = item.data
    # The cheapest decode there is: libjpeg's 1/8 scale for a JPEG, in full for any other format.
    call = (lambda: reduced_decode(data)) if what == "decode" else (lambda: module.image_to_input(data, MAX_PIXELS))
    reduced_decode(data)
    module.image_to_input(data, MAX_PIXELS)
    # The set-up's objects out of the collector's reach, as the service does (gc.freeze in app.py):
    # otherwise each collection's cost depends on how much the set-up left, not on the call.
    gc.collect()
    gc.freeze()
    # Only what runs inside functools.reduce is counted (callgrind --toggle-collect): the loop.
    functools.reduce(lambda _, __: call(), range(calls), None)


def instructions(kind: str, what: str, calls: int, before: str | None) -> int:
    """Instructions callgrind counts in a child process's measured loop."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce"]
        command += [f"--callgrind-out-file={out}", sys.executable, "-m"]
        command += ["benchmarks.instructions", "--child", kind, what, str(calls)]
        command += ["--exported", before] if before else []
        # A fixed hash seed (string hashing, so dict layouts, otherwise differ per process) and
        # one BLAS thread (idle pool threads spin, and callgrind counts their spinning).
        environment = {**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env=environment)
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert match is not None, "no totals in callgrind's output"
        return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--calls", type=int, default=20, help="measured calls per child (default 20)")
    parser.add_argument("--before", help="git ref whose preprocessing to count as well")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WHAT", "CALLS"), help=argparse.SUPPRESS)
    parser.add_argument("--exported", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, what, calls = args.child
        child(kind, what, int(calls), args.exported)
        return
    refs: list[str | None] = [args.before] if args.before else []
    refs.append(None)
    exported = (
        {args.before: str(Path(str(load_before(args.before).__file__)).parent.parent.parent)} if args.before else {}
    )
    header = "| kind | decode Minstr |" + "".join(f" {ref or 'tree'}: beyond Minstr | ratio |" for ref in refs)
    print(header)
    print("|---|---:|" + "---:|---:|" * len(refs))
    for kind in args.kinds:
        # Decoding is benchmarks.inputs' own, whatever the tree: counted once per kind.
        decode = instructions(kind, "decode", args.calls, None) / args.calls
        row = f"| {kind} | {decode / 1e6:.3f} |"
        for ref in refs:
            preprocess = instructions(kind, "preprocess", args.calls, exported.get(ref) if ref else None) / args.calls
            row += f" {(preprocess - decode) / 1e6:.3f} | {(preprocess - decode) / decode:.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
