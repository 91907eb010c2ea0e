"""The tritonclient examples of docs/kserve-v2.md (HTTP) and docs/grpc.md (gRPC), run as written.

Each page's Python block is taken from the page itself and run against ``python -m service``, with
only the ports changed (the docs name 8000 and 8001) and the image files it opens put beside it,
so that an example that drifts from the service fails here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, ROOT
from tests.service.v2.conftest import Server

#: The files the examples open, and the real-world images that stand in for them.
FILES = {"seven.png": "small_7.png", "three.jpg": "chalkboard_3.jpg", "digit.png": "coloured_7.png"}


def python_block(page: str, after: str) -> str:
    """The first ```python block of docs/<page> after the line ``after``."""
    text = (ROOT / "docs" / page).read_text()
    start = text.index(after)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {after!r} in {page}"
    return match.group(1)


def run_example(server: Server, code: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, source in FILES.items():
        shutil.copy(DATA / "realworld" / source, workdir / name)
    monkeypatch.chdir(workdir)
    code = code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}").replace(
        "127.0.0.1:8001", f"127.0.0.1:{server.grpc_port}"
    )
    assert str(server.port) in code or str(server.grpc_port) in code
    namespace: dict[str, Any] = {}
    exec(compile(code, "<docs example>", "exec"), namespace)
    return namespace


def check_tooling(server: Server, config: Any, stats: Any, index: Any) -> None:
    """What the examples' config, statistics and index calls return, as the comments beside them say."""
    assert config["name"] == server.model and int(config["max_batch_size"]) == 256
    # gRPC's JSON writes 64-bit integers as strings, as protobuf's JSON mapping does.
    assert [t["name"] for t in config["input"]] == ["image"]
    assert [int(d) for d in config["input"][0]["dims"]] == [28, 28, 1]
    (entry,) = stats["model_stats"]
    assert entry["name"] == server.model and int(entry["inference_stats"]["success"]["count"]) > 0
    assert [(m["name"], m["version"], m["state"]) for m in index] == [
        (server.model, "2", "READY"),
        (server.bytes_model, "2", "READY"),
    ]


def predicted_digit(server: Server, name: str) -> int:
    """What /predict reads in the file the example opens as ``name``."""
    file = (DATA / "realworld" / FILES[name]).read_bytes()
    response = server.http.post("/predict", files={"file": (name, file, "application/octet-stream")})
    assert response.status_code == 200, response.text
    digit: int = response.json()["digit"]
    return digit


def test_http_example(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_example(server, python_block("kserve-v2.md", "## tritonclient"), tmp_path, monkeypatch)
    # Its first print: the two files' digits, is_digit and top probabilities, as /predict reads them.
    first = capsys.readouterr().out.splitlines()[0]
    expected = [predicted_digit(server, "seven.png"), predicted_digit(server, "three.jpg")]
    assert first.startswith(f"[{expected[0]} {expected[1]}] [ True  True]"), first
    assert done["result"].as_numpy("digit").shape == (2,)
    assert done["result"].as_numpy("probabilities") is None  # only the output it asked for
    check_tooling(server, done["config"], done["stats"], done["index"])


def test_grpc_example(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_example(server, python_block("grpc.md", "# The KServe v2 API over gRPC"), tmp_path, monkeypatch)
    # Its prints: the blank images' digits and the probabilities' shape, then the file's digit.
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("(2, 10)") and printed[1] == f"[{predicted_digit(server, 'digit.png')}]", printed
    assert done["metadata"]["versions"] == ["2"] and [t["name"] for t in done["metadata"]["inputs"]] == ["image"]
    check_tooling(server, done["config"], done["stats"], done["index"])
