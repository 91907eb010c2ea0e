"""Where Triton's ``perf_analyzer`` is, and the environment it needs to start (docs/perf-analyzer.md).

The binary comes from the tritonclient 2.41.0 wheel, in a venv of its own beside the
nvidia-cuda-runtime-cu12 wheel, whose ``libcudart.so.12`` it loads at start-up. That library's
directory is found from the binary's own venv, so neither the tests nor the benchmark need
``LD_LIBRARY_PATH`` set by hand.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.server import ROOT

#: Where ``.ci/run`` installs it (inside the checkout), then where docs/perf-analyzer.md does.
INSTALLED_PATHS = (ROOT / ".tools" / "pa" / "bin" / "perf_analyzer", Path("/work/tools/pa/bin/perf_analyzer"))
#: Names the binary; set and not runnable is an error, not a reason to skip (.ci/run sets it).
VARIABLE = "PERF_ANALYZER"


def named_perf_analyzer() -> Path | None:
    """The binary ``PERF_ANALYZER`` names, if it is set."""
    value = os.environ.get(VARIABLE)
    return Path(value) if value else None


def find_perf_analyzer() -> Path | None:
    """``PERF_ANALYZER``, else an installed copy (.ci/run's, then the documented one), else ``PATH``."""
    chosen = named_perf_analyzer()
    if chosen is not None:
        return chosen
    for candidate in INSTALLED_PATHS:
        if candidate.is_file():
            return candidate
    found = shutil.which("perf_analyzer")
    return Path(found) if found else None


def cuda_runtime_dir(perf_analyzer: Path) -> Path | None:
    """The nvidia-cuda-runtime-cu12 wheel's lib directory in perf_analyzer's venv: libcudart.so.12."""
    venv = perf_analyzer.resolve().parent.parent
    for candidate in sorted(venv.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib")):
        return candidate
    return None


def perf_analyzer_env(perf_analyzer: Path) -> dict[str, str]:
    """This process's environment with the CUDA runtime's directory on ``LD_LIBRARY_PATH``."""
    env = dict(os.environ)
    cuda = cuda_runtime_dir(perf_analyzer)
    if cuda is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(cuda), env.get("LD_LIBRARY_PATH")]))
    return env
