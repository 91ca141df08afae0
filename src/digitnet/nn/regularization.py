"""Layers that act differently while training: inverted dropout and batch normalisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .layers import Layer, register


@register
class Dropout(Layer):
    """Inverted dropout: while training, zero each input with probability ``rate``.

    The survivors are scaled by ``1 / (1 - rate)`` during training, so that the expected
    activation is unchanged and inference is the identity (no rescaling at test time)::

        y = x * mask / (1 - rate),   mask ~ Bernoulli(1 - rate)        dL/dx = dL/dy * mask / (1 - rate)

    Parameters
    ----------
    rate : float
        Probability of dropping a unit, in [0, 1).
    rng : numpy.random.Generator, optional
        Draws the masks; pass the run's generator. A loaded model gets a fixed-seed generator, which
        only matters if it is trained further.
    """

    def __init__(self, rate: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.scaled_mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:
            return x
        if self.rate == 0:
            self.scaled_mask = np.ones((), dtype=x.dtype)
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.rate
        self.scaled_mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.rate))
        return x * self.scaled_mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self.saved(self.scaled_mask)

    def replica(self) -> Dropout:
        twin = super().replica()
        assert isinstance(twin, Dropout)
        # A generator is not safe to share between threads; the caller seeds this one from the
        # run's generator (digitnet.parallel does so every epoch).
        twin.rng = np.random.default_rng(0)
        return twin

    def summary(self) -> str:
        return f"dropout{self.config()['rate']:g}"

    def config(self) -> dict[str, Any]:
        return {"rate": self.rate}

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype=np.float32) -> Dropout:
        return cls(config["rate"])


@register
class BatchNorm(Layer):
    """Batch normalisation (Ioffe & Szegedy, 2015) over channels of ``(N, C)`` or ``(N, C, H, W)``.

    While training, each channel is standardised with the batch's own mean and variance (over the
    batch and, for images, all positions), then scaled and shifted by learned ``gamma`` and ``beta``::

        x_hat = (x - mean) / sqrt(var + eps)          y = gamma * x_hat + beta

    Running averages of the mean and (unbiased) variance are kept in ``buffers`` (so they are saved
    with the model) and replace the batch statistics at inference. Backward, with ``m`` values per
    channel and ``d = dL/dy * gamma``::

        dL/dx = (d - mean(d) - x_hat * mean(d * x_hat)) / sqrt(var + eps)

    Parameters
    ----------
    channels : int
    momentum : float, optional
        Weight of the new batch in the running averages (PyTorch's convention, 0.1).
    eps : float, optional
    dtype : numpy dtype, optional
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5, *, dtype=np.float32) -> None:
        super().__init__()
        self.channels, self.momentum, self.eps = channels, float(momentum), float(eps)
        self.params = {"gamma": np.ones(channels, dtype=dtype), "beta": np.zeros(channels, dtype=dtype)}
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.buffers = {"running_mean": np.zeros(channels, dtype=dtype), "running_var": np.ones(channels, dtype=dtype)}
        self.x_hat: np.ndarray | None = None
        self.inv_std: np.ndarray | None = None
        self.count = 0  # values per channel in the batch of the last training forward pass
        #: Set by :mod:`digitnet.parallel` while threads share each batch: sums a per-channel array
        #: over all the shares, so that the statistics are the whole batch's.
        self.share_sums: Callable[[np.ndarray], np.ndarray] | None = None

    @staticmethod
    def _channel_rows(x: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """``x`` as a ``(C, values per channel)`` matrix, and the function that turns such a matrix
        back into ``x``'s shape.

        Why: the statistics are then plain row reductions. After a convolution the images are
        batch-last in memory, ``(C, H, W, N)``, so the matrix is a view, not a copy, and the result
        keeps that layout for the layers after it.
        """
        if x.ndim == 2:
            return x.T, np.transpose
        moved = x.transpose(1, *range(2, x.ndim), 0)  # (C, H, W, N)

        def back_to_x_shape(rows: np.ndarray) -> np.ndarray:
            return rows.reshape(moved.shape).transpose(x.ndim - 1, 0, *range(1, x.ndim - 1))

        return moved.reshape(x.shape[1], -1), back_to_x_shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        rows, back = self._channel_rows(x)
        gamma, beta = self.params["gamma"][:, None], self.params["beta"][:, None]
        if not training:
            scale = gamma / np.sqrt(self.buffers["running_var"][:, None] + self.eps)
            return back((rows - self.buffers["running_mean"][:, None]) * scale + beta)
        if self.share_sums is None:
            count, mean = rows.shape[1], rows.mean(axis=1)
        else:  # the whole batch's mean: every share's sums and counts added
            totals = self.share_sums(np.append(rows.sum(axis=1, dtype=np.float64), rows.shape[1]))
            count, mean = int(totals[-1]), (totals[:-1] / totals[-1]).astype(rows.dtype)
        x_hat = rows - mean[:, None]
        squares = np.einsum("ij,ij->i", x_hat, x_hat)
        var = (squares if self.share_sums is None else self.share_sums(squares)) / count
        inv_std = 1 / np.sqrt(var + self.eps)
        x_hat *= inv_std[:, None]
        self.x_hat, self.inv_std, self.count = x_hat, inv_std, count
        self.buffers["running_mean"] *= 1 - self.momentum
        self.buffers["running_mean"] += self.momentum * mean
        self.buffers["running_var"] *= 1 - self.momentum
        self.buffers["running_var"] += self.momentum * var * count / max(1, count - 1)
        out = x_hat * gamma
        out += beta
        return back(out)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_hat, inv_std = self.saved(self.x_hat), self.saved(self.inv_std)
        g, back = self._channel_rows(grad_out)
        count = self.count
        np.sum(g, axis=1, out=self.grads["beta"])
        np.einsum("ij,ij->i", g, x_hat, out=self.grads["gamma"])
        sum_g, sum_g_x_hat = self.grads["beta"], self.grads["gamma"]
        if self.share_sums is not None:  # the means below are the whole batch's
            sum_g, sum_g_x_hat = np.split(self.share_sums(np.concatenate([sum_g, sum_g_x_hat])), 2)
        # dL/dx = gamma / std * (g - mean(g) - x_hat * mean(g * x_hat)), per channel
        grad_x = x_hat * (-sum_g_x_hat / count)[:, None]
        grad_x += g
        grad_x -= (sum_g / count)[:, None]
        grad_x *= (self.params["gamma"] * inv_std)[:, None]
        return back(grad_x)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def summary(self) -> str:
        return "bn"

    def config(self) -> dict[str, Any]:
        return {"channels": self.channels, "momentum": self.momentum, "eps": self.eps}

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype=np.float32) -> BatchNorm:
        return cls(config["channels"], config.get("momentum", 0.1), config.get("eps", 1e-5), dtype=dtype)
