"""The training CLI takes its options and defaults from TrainConfig, not from a second copy."""

from __future__ import annotations

import dataclasses

from training.cli import _parser
from training.config import TrainConfig


def test_every_config_field_is_an_option_with_the_configs_default() -> None:
    args = vars(_parser().parse_args(["train"]))
    defaults = TrainConfig()
    for spec in dataclasses.fields(TrainConfig):
        if spec.name != "extra":
            assert args[spec.name] == getattr(defaults, spec.name), spec.name


def test_options_parse_to_their_field_types() -> None:
    args = _parser().parse_args(
        ["train", "--epochs", "3", "--learning-rate", "0.01", "--no-augment", "--open-set", "--name", "x"]
    )
    assert (args.epochs, args.learning_rate, args.augment, args.open_set, args.name) == (3, 0.01, False, True, "x")
