"""Training writes only metadata that satisfies models/metadata.schema.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from training import metadata
from training.metadata import MetadataError


@pytest.fixture
def shipped() -> dict[str, Any]:
    return json.loads((ROOT / "models" / "mnist-improved.json").read_text())  # type: ignore[no-any-return]


def open_set(meta: dict[str, Any]) -> dict[str, Any]:
    meta = copy.deepcopy(meta)
    meta["outputs"] = [
        {"name": "probabilities", "dtype": "float32", "shape": ["N", 10]},
        {"name": "digit_score", "dtype": "float32", "shape": ["N"]},
    ]
    meta["open_set"] = {"output": "digit_score", "threshold": 0.4, "method": "outlier exposure"}
    meta["calibration"] = {"temperature": 1.3}
    return meta


def test_every_committed_metadata_file_validates() -> None:
    """Digit models against the schema; the pair model (training/pairs.py) has its own, smaller record."""
    for path in sorted((ROOT / "models").glob("mnist-*.json")):
        record = json.loads(path.read_text())
        if path.stem == "mnist-pairs":
            assert {"sha256", "version", "pair_threshold", "metrics", "training"} <= set(record)
            continue
        metadata.validate(record)


def test_open_set_metadata_validates(shipped: dict[str, Any]) -> None:
    metadata.validate(open_set(shipped))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["open_set"].pop("threshold"), "'threshold' is a required property"),
        (lambda m: m["open_set"].update(threshold=1.5), "1.5 is greater than the maximum of 1"),
        (lambda m: m["open_set"].update(output="score"), "'digit_score' was expected"),
        (lambda m: m["calibration"].update(temperature=0), "less than or equal to the minimum of 0"),
        (lambda m: m.pop("sha256"), "'sha256' is a required property"),
    ],
)
def test_invalid_metadata_is_refused_and_not_written(
    tmp_path: Path, shipped: dict[str, Any], change: Any, message: str
) -> None:
    meta = open_set(shipped)
    change(meta)
    target = tmp_path / "model.json"
    with pytest.raises(MetadataError, match="Nothing was written") as error:
        metadata.write(target, meta)
    assert message in str(error.value)
    assert not target.exists()


def test_valid_metadata_is_written(tmp_path: Path, shipped: dict[str, Any]) -> None:
    target = tmp_path / "model.json"
    metadata.write(target, open_set(shipped))
    assert json.loads(target.read_text())["open_set"]["threshold"] == 0.4
