"""training.report's model card: every shipped model's section, written from its metadata."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT
from training.report import write_model_card

MODELS = ROOT / "models"


def test_the_shipped_card_is_what_the_shipped_metadata_writes(tmp_path: Path) -> None:
    for path in [*MODELS.glob("*.json"), *MODELS.glob("*-reliability.png")]:
        shutil.copy(path, tmp_path)
    card = write_model_card(tmp_path).read_text()
    assert card == (MODELS / "MODEL_CARD.md").read_text()
    for name in ("mnist-improved", "mnist-improved-int8", "mnist-baseline", "mnist-pairs"):
        assert f"## `{name}`" in card


def test_the_pair_model_gets_its_own_section_beside_the_digit_models(tmp_path: Path) -> None:
    shutil.copy(MODELS / "mnist-pairs.json", tmp_path)
    card = write_model_card(tmp_path).read_text()
    assert "## `mnist-pairs`" in card
    assert "input `image` [N, 28, 56, 1] float32" in card
    assert "| test | 90.68% | 93.71% | 94.66% |" in card
