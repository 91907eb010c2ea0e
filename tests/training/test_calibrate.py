"""Calibration and open-set measures, on synthetic scores whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from training import calibrate


def synthetic_logits(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax at ``temperature`` is calibrated: labels are drawn from it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 10))
    probabilities = calibrate.softmax(logits / temperature)
    labels = np.array([rng.choice(10, p=p) for p in probabilities])
    return logits, labels


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels() -> None:
    logits, labels = synthetic_logits(20_000, temperature=2.5)
    assert calibrate.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


def test_ece_is_small_when_calibrated_and_large_when_overconfident() -> None:
    logits, labels = synthetic_logits(20_000, temperature=2.0, seed=1)
    assert calibrate.expected_calibration_error(calibrate.softmax(logits / 2.0), labels) < 0.02
    assert calibrate.expected_calibration_error(calibrate.softmax(logits / 0.5), labels) > 0.1


def test_reliability_bins_cover_every_image() -> None:
    logits, labels = synthetic_logits(1_000, temperature=1.0, seed=2)
    rows = calibrate.reliability(calibrate.softmax(logits), labels)
    assert len(rows) == calibrate.ECE_BINS and sum(r["count"] for r in rows) == 1_000


def test_auroc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    positive, negative = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    positive[:20] = negative[:20]  # ties count a half
    pairs = (positive[:, None] > negative[None, :]).mean() + 0.5 * (positive[:, None] == negative[None, :]).mean()
    assert calibrate.auroc(positive, negative) == pytest.approx(pairs, abs=1e-12)
    assert calibrate.auroc(np.ones(5), np.zeros(5)) == 1.0


def test_false_accept_at_true_accept() -> None:
    positive = np.linspace(0.5, 1.0, 1000)
    negative = np.linspace(0.0, 0.6, 1000)
    # 99.5% of the positives are at or above their 0.5% quantile (about 0.5025).
    threshold = np.quantile(positive, 0.005, method="lower")
    assert calibrate.false_accept_at(positive, negative) == pytest.approx(np.mean(negative >= threshold))


def test_platt_scaling_fits_the_log_odds() -> None:
    rng = np.random.default_rng(4)
    margin = rng.normal(0, 3, 40_000)
    is_digit = rng.random(40_000) < calibrate.sigmoid(2.0 * margin - 1.0)
    # Both classes are weighted equally, which moves the intercept by the log of the class ratio.
    a, b = calibrate.fit_platt(margin, is_digit)
    ratio = is_digit.mean() / (1 - is_digit.mean())
    assert a == pytest.approx(2.0, rel=0.05)
    assert b == pytest.approx(-1.0 - np.log(ratio), abs=0.1)


def test_threshold_refuses_at_most_the_allowed_share_of_validation_digits() -> None:
    scores = np.linspace(0, 1, 10_001) ** 0.01  # almost all near 1, a thin tail towards 0
    threshold = calibrate.choose_threshold(scores)
    assert np.mean(scores < threshold) <= calibrate.MAX_DIGIT_REFUSAL
    assert threshold <= calibrate.MAX_THRESHOLD


def test_calibrated_outputs_equal_the_served_graphs_formulas() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 4, (50, 11))
    fitted = calibrate.Calibration(temperature=1.7, platt_a=0.8, platt_b=0.3, threshold=0.5)
    expected_p = np.exp(logits[:, :10] / 1.7) / np.exp(logits[:, :10] / 1.7).sum(1, keepdims=True)
    np.testing.assert_allclose(fitted.probabilities(logits), expected_p, rtol=1e-12)
    # With a = 1, b = 0 the score is one minus the eleven-way softmax's "not a digit" share.
    plain = calibrate.Calibration(1.0, 1.0, 0.0, 0.5)
    np.testing.assert_allclose(plain.digit_score(logits), 1 - calibrate.softmax(logits)[:, 10], rtol=1e-10)
