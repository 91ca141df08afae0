"""Softmax and the cross-entropy loss, fused.

For logits ``z`` and a one-hot target ``y`` the loss of one example is

    L = -sum_k y_k log p_k,   p = softmax(z) = exp(z) / sum_j exp(z_j).

Its gradient with respect to the logits is simply ``p - y``: computing softmax and cross-entropy
together gives that short, exact form and avoids ever taking ``log(0)``.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, K)`` logits.

    Subtracting each row's maximum first leaves the result unchanged (it cancels in the ratio) but
    keeps ``exp`` from overflowing: the largest exponent is ``exp(0) = 1``.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``log(softmax(logits))``, computed without forming ``softmax`` (no ``log(0)``)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def one_hot(labels: np.ndarray, num_classes: int, dtype=np.float32) -> np.ndarray:
    """Encode integer labels ``(N,)`` as one-hot rows ``(N, num_classes)``."""
    encoded = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    encoded[np.arange(labels.shape[0]), labels] = 1
    return encoded


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax probabilities, with optional label smoothing.

    ``forward`` returns the mean loss over the batch and remembers the probabilities;
    ``backward`` returns dL/dlogits = (p - y) / N.

    Parameters
    ----------
    label_smoothing : float, optional
        Mixes the one-hot target with the uniform distribution: ``y = (1 - e) onehot + e / K``.
        0 (the default) is the plain textbook loss.
    """

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """Mean loss over the batch; ``labels`` are integer class indices.

        Computed as ``-log p_label = log sum_j exp(z_j - m) - (z_label - m)`` with ``m`` the row
        maximum: the same value as ``-(onehot * log_softmax(z)).sum()`` without building the
        one-hot matrix, and the probabilities for :meth:`backward` come out of the same ``exp``.
        """
        n, num_classes = logits.shape
        rows = np.arange(n)
        shifted = logits - logits.max(axis=1, keepdims=True)
        shifted_label = shifted[rows, labels]
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        self.probabilities = np.divide(exp, total, out=exp)
        self.labels, self.rows = labels, rows
        log_total = np.log(total).sum()
        loss = log_total - shifted_label.sum()
        if self.label_smoothing:
            # The uniform part of the target: -(1/K) sum_k log p_k = log(total) - mean_k shifted_k.
            uniform = log_total - shifted.sum() / num_classes
            loss = (1 - self.label_smoothing) * loss + self.label_smoothing * uniform
        return float(loss / n)

    def backward(self) -> np.ndarray:
        """Gradient of the mean loss with respect to the logits: ``(p - y) / N``."""
        n, num_classes = self.probabilities.shape
        grad = self.probabilities.copy()
        # y is (1 - e) at the label plus e / K everywhere (e = 0: the plain one-hot target).
        grad[self.rows, self.labels] -= 1 - self.label_smoothing
        if self.label_smoothing:
            grad -= self.label_smoothing / num_classes
        grad /= n
        return grad
