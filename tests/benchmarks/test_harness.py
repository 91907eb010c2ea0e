"""The benchmark harness's own logic: variants, and variants of other commits."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
from pathlib import Path

import pytest

from benchmarks.targets import check_out, parse_variant
from harness import ROOT


def test_variant_with_settings_and_a_commit() -> None:
    target = parse_variant("before@HEAD~1:DIGITS_WORKERS=1,DIGITS_BATCH_MAX_SIZE=8")
    assert (target.name, target.revision) == ("before", "HEAD~1")
    assert target.env == {"DIGITS_WORKERS": "1", "DIGITS_BATCH_MAX_SIZE": "8"}
    assert target.label == "service `before` at `HEAD~1`"
    plain = parse_variant("default:")
    assert (plain.name, plain.revision, plain.env, plain.label) == ("default", "", {}, "service `default`")


@pytest.mark.parametrize("spec", ["obvious", "floor:X=1", "@HEAD", ":X=1"])
def test_variant_names_that_are_refused(spec: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_variant(spec)


def test_a_commit_is_checked_out_for_the_run_and_removed_after() -> None:
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    with contextlib.ExitStack() as stack:
        tree = check_out("HEAD", stack)
        assert (tree / "service" / "__main__.py").is_file()
        listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
        assert str(tree) in listed
    assert not tree.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert str(tree) not in listed


def test_an_unknown_commit_stops_the_run() -> None:
    with contextlib.ExitStack() as stack, pytest.raises(SystemExit, match="cannot check out"):
        check_out("no-such-commit-anywhere", stack)


def test_the_bare_floor_answers_and_every_worker_stops_with_it(tmp_path: Path) -> None:
    from benchmarks.targets import BARE, Target
    from harness import MULTIPART_CONTENT_TYPE, Server, descendants, free_port, multipart_body, post

    port = free_port()
    target = Target(BARE, BARE, workers=2)
    server = Server(BARE, target.argv(port), port=port, log_path=tmp_path / "bare.log")
    with server:
        assert server.process is not None
        status, answer = post(
            port, "/predict", multipart_body("file", [b"\x89PNG" + b"\0" * 70_000]), MULTIPART_CONTENT_TYPE
        )
        assert status == 200 and isinstance(answer, dict) and answer["digit"] == 0
        server.wait_workers(2)
        group = descendants(server.process.pid)
        assert len(group) >= 3  # uvicorn's supervisor and its two workers
    assert not running(group), server.logs()[-2000:]


def running(pids: list[int]) -> list[int]:
    """The processes of ``pids`` that still run: gone or zombie (killed, not reaped yet by init) do not count."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive
