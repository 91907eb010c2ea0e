"""Classification metrics from predicted probabilities, and evaluation of an ONNX file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NUM_CLASSES = 10


@dataclass
class Metrics:
    accuracy: float
    loss: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]  # rows: true label, columns: predicted label

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class": {
                str(c): {
                    "precision": self.precision[c],
                    "recall": self.recall[c],
                    "f1": self.f1[c],
                    "support": self.support[c],
                }
                for c in range(NUM_CLASSES)
            },
            "confusion_matrix": self.confusion,
        }

    def table(self) -> str:
        """The per-class precision/recall/F1 table and the confusion matrix, as text."""
        lines = [f"accuracy {self.accuracy:.4%}   loss {self.loss:.4f}", ""]
        lines.append("class  precision  recall     f1  support")
        for c in range(NUM_CLASSES):
            lines.append(
                f"{c:>5}  {self.precision[c]:>9.4f}  {self.recall[c]:>6.4f}  {self.f1[c]:>5.4f}  {self.support[c]:>7}"
            )
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        lines.append("     " + "".join(f"{c:>6}" for c in range(NUM_CLASSES)))
        for c, row in enumerate(self.confusion):
            lines.append(f"{c:>5}" + "".join(f"{v:>6}" for v in row))
        return "\n".join(lines)


def compute_metrics(probabilities: np.ndarray, labels: np.ndarray) -> Metrics:
    """Accuracy, cross-entropy, per-class precision/recall/F1 and the confusion matrix."""
    labels = labels.astype(np.int64)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted_count = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted_count, out=np.zeros(NUM_CLASSES), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros(NUM_CLASSES), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(NUM_CLASSES), where=denominator > 0)
    picked = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    loss = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
    return Metrics(
        accuracy=float(np.mean(predicted == labels)),
        loss=loss,
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=support.tolist(),
        confusion=confusion.tolist(),
    )


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) → float32 (N, 28, 28, 1): pixel intensity scaled to [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., None]


def onnx_predict(
    model_path: Path | str, images: np.ndarray, batch_size: int = 1000, progress: bool = False
) -> np.ndarray:
    """Probabilities of an ONNX model for uint8 (N, 28, 28) images."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="evaluating", unit="batch")
    out = [session.run(None, {input_name: to_model_input(images[i : i + batch_size])})[0] for i in starts]
    return np.concatenate(out)


def evaluate_onnx(model_path: Path | str, data_dir: str | None = None, progress: bool = True) -> Metrics:
    """Evaluate an ONNX file on the 10,000 MNIST test images."""
    from training.data import load_mnist

    test = load_mnist(data_dir).test
    return compute_metrics(onnx_predict(model_path, test.images, progress=progress), test.labels)
