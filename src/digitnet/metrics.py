"""Scores of a classifier: accuracy, confusion matrix, per-class precision and recall."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(labels) == np.asarray(predictions))) if len(labels) else 0.0


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` counts examples of true class ``i`` predicted as class ``j``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


@dataclass
class Evaluation:
    """A model's scores on one labelled set."""

    accuracy: float
    n: int
    confusion: np.ndarray
    precision: np.ndarray  # per class: of those predicted as k, the fraction truly k
    recall: np.ndarray  # per class: of those truly k, the fraction predicted as k

    @property
    def f1(self) -> np.ndarray:
        """Per-class F1 score, the harmonic mean of precision and recall (0 where both are 0)."""
        total = self.precision + self.recall
        return np.divide(2 * self.precision * self.recall, total, out=np.zeros_like(total), where=total > 0)


def evaluate(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> Evaluation:
    """All scores at once from true and predicted class indices."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    hits = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    return Evaluation(accuracy(labels, predictions), int(len(labels)), matrix, precision, recall)
