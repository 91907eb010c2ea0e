"""Calibration and open-set scoring in numpy: temperature, P(digit), threshold, ECE, AUROC.

No TensorFlow here: the benchmark (``benchmarks/open_set.py``) uses the same functions on the
ONNX model's outputs. Everything is fitted on the *validation* split; the test set is only
ever measured.

The open-set model has eleven logits: ten digits and "not a digit". The served graph turns
them into the two outputs of the contract:

- ``probabilities = softmax(z[:10] / T)``: the best guess given that it is a digit, with the
  temperature ``T`` fitted on validation digits (Guo et al., 2017);
- ``digit_score = sigmoid(a * (logsumexp(z[:10]) - z[10]) + b)``: P(digit). With ``a = 1``,
  ``b = 0`` this is exactly one minus the eleven-way softmax's "not a digit" share; ``a`` and
  ``b`` (Platt scaling) are fitted on validation digits and validation negatives weighted
  equally, so the score is calibrated at an even prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_DIGITS = 10
#: ECE bins, as the issue asks (and as Guo et al. report).
ECE_BINS = 15
#: The default strictness refuses at most this share of validation digits. MNIST's target is at
#: most 0.5% refused on the test set and the real-world renderings' 1%: a third of the first
#: leaves room for the difference between validation and test.
MAX_DIGIT_REFUSAL = 0.0015
#: ... and is never above an even-odds score: above it a negative is likelier than a digit.
MAX_THRESHOLD = 0.5


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    peak = x.max(axis=axis, keepdims=True)
    return np.asarray(np.squeeze(peak, axis) + np.log(np.exp(x - peak).sum(axis=axis)))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def digit_margin(logits: np.ndarray) -> np.ndarray:
    """logsumexp of the digit logits minus the not-a-digit logit: the log-odds of a digit."""
    return logsumexp(logits[:, :NUM_DIGITS].astype(np.float64)) - logits[:, NUM_DIGITS].astype(np.float64)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits.astype(np.float64) / temperature
    return float(np.mean(logsumexp(z) - z[np.arange(len(labels)), labels]))


def fit_temperature(digit_logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the validation NLL of the ten-way softmax (golden-section search)."""
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(digit_logits, labels, float(np.exp(a))) < nll(digit_logits, labels, float(np.exp(b))):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


#: Ridge penalty on the Platt slope (margins standardised first). Where validation digits and
#: negatives are (almost) separable the unpenalised fit has no optimum and runs off (a = 5.6e8 in
#: the first full run, threshold 0): the penalty keeps the slope finite.
PLATT_RIDGE = 1e-5


def _platt_loss(params: np.ndarray, x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    z = x @ params
    # log(1 + e^z) - y z, computed without overflow.
    return float(np.sum(weights * (np.logaddexp(0, z) - y * z)) + 0.5 * PLATT_RIDGE * params[0] ** 2)


def fit_platt(margin: np.ndarray, is_digit: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Ridge logistic regression of is_digit on the margin, both classes weighted equally.

    Newton's method with step halving on the standardised margin: the margins of a trained model
    are tens of units apart, where plain Newton steps from a saturated sigmoid overshoot.
    """
    m = margin.astype(np.float64)
    centre, spread = float(np.mean(m)), float(np.std(m)) or 1.0
    y = is_digit.astype(np.float64)
    weights = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    x = np.stack([(m - centre) / spread, np.ones_like(m)], 1)
    params = np.zeros(2)
    ridge = np.diag([PLATT_RIDGE, 0.0])
    loss = _platt_loss(params, x, y, weights)
    for _ in range(iterations):
        p = sigmoid(x @ params)
        gradient = x.T @ (weights * (p - y)) + ridge @ params
        hessian = (x * (weights * p * (1 - p))[:, None]).T @ x + ridge + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-8 and _platt_loss(params - scale * step, x, y, weights) > loss:
            scale /= 2
        params = params - scale * step
        new_loss = _platt_loss(params, x, y, weights)
        if loss - new_loss < 1e-12:
            break
        loss = new_loss
    a = params[0] / spread
    return float(a), float(params[1] - a * centre)


def choose_threshold(digit_scores: np.ndarray) -> float:
    """The default strictness: refuse at most MAX_DIGIT_REFUSAL of validation digits, never above 0.5."""
    quantile = float(np.quantile(digit_scores.astype(np.float64), MAX_DIGIT_REFUSAL, method="lower"))
    return min(quantile, MAX_THRESHOLD)


@dataclass(frozen=True)
class Calibration:
    temperature: float
    platt_a: float
    platt_b: float
    threshold: float

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits[:, :NUM_DIGITS].astype(np.float64) / self.temperature)

    def digit_score(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(self.platt_a * digit_margin(logits) + self.platt_b)


def calibrate(digit_logits: np.ndarray, labels: np.ndarray, negative_logits: np.ndarray) -> Calibration:
    """Fit T on validation digits, (a, b) on validation digits and negatives, then the threshold."""
    temperature = fit_temperature(digit_logits[:, :NUM_DIGITS], labels)
    margins = np.concatenate([digit_margin(digit_logits), digit_margin(negative_logits)])
    is_digit = np.concatenate([np.ones(len(digit_logits)), np.zeros(len(negative_logits))])
    a, b = fit_platt(margins, is_digit)
    scores = sigmoid(a * digit_margin(digit_logits) + b)
    return Calibration(temperature, a, b, choose_threshold(scores))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - confidence| per equal-width confidence bin, weighted by its share."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            error += chosen.mean() * abs(correct[chosen].mean() - confidence[chosen].mean())
    return float(error)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per bin: its confidence range, count, mean confidence and accuracy (for the diagram)."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        chosen = index == b
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(chosen.sum()),
                "confidence": float(confidence[chosen].mean()) if chosen.any() else 0.0,
                "accuracy": float(correct[chosen].mean()) if chosen.any() else 0.0,
            }
        )
    return rows


def auroc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """Area under the ROC curve: P(a random digit scores above a random non-digit), ties half."""
    scores = np.concatenate([positive_scores, negative_scores]).astype(np.float64)
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(starts, counts, strict=True):
        ranks[order[start : start + count]] = start + (count + 1) / 2
    n_pos, n_neg = len(positive_scores), len(negative_scores)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def false_accept_at(positive_scores: np.ndarray, negative_scores: np.ndarray, true_accept: float = 0.995) -> float:
    """Share of non-digits accepted at the threshold that accepts ``true_accept`` of the digits."""
    threshold = np.quantile(positive_scores.astype(np.float64), 1 - true_accept, method="lower")
    return float(np.mean(negative_scores >= threshold))
