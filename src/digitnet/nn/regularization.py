"""Layers that act differently while training: inverted dropout and batch normalisation."""

from __future__ import annotations

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

    @staticmethod
    def _reduce_axes_and_shape(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Axes to average over and the shape that broadcasts a per-channel vector against ``x``."""
        if x.ndim == 2:
            return (0,), (1, -1)
        return (0, *range(2, x.ndim)), (1, -1, *([1] * (x.ndim - 2)))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        axes, channel_shape = self._reduce_axes_and_shape(x)
        gamma = self.params["gamma"].reshape(channel_shape)
        beta = self.params["beta"].reshape(channel_shape)
        if not training:
            scale = gamma / np.sqrt(self.buffers["running_var"].reshape(channel_shape) + self.eps)
            return (x - self.buffers["running_mean"].reshape(channel_shape)) * scale + beta
        mean = x.mean(axis=axes, keepdims=True)
        centred = x - mean
        var = np.mean(centred * centred, axis=axes, keepdims=True)
        inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat, self.inv_std = centred * inv_std, inv_std
        count = x.size // self.channels
        self.buffers["running_mean"] *= 1 - self.momentum
        self.buffers["running_mean"] += self.momentum * mean.reshape(-1)
        self.buffers["running_var"] *= 1 - self.momentum
        self.buffers["running_var"] += self.momentum * var.reshape(-1) * count / max(1, count - 1)
        return self.x_hat * gamma + beta

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_hat, inv_std = self.saved(self.x_hat), self.saved(self.inv_std)
        axes, channel_shape = self._reduce_axes_and_shape(grad_out)
        np.sum(grad_out * x_hat, axis=axes, out=self.grads["gamma"])
        np.sum(grad_out, axis=axes, out=self.grads["beta"])
        d = grad_out * self.params["gamma"].reshape(channel_shape)
        return (d - d.mean(axis=axes, keepdims=True) - x_hat * (d * x_hat).mean(axis=axes, keepdims=True)) * inv_std

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def config(self) -> dict[str, Any]:
        return {"channels": self.channels, "momentum": self.momentum, "eps": self.eps}

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype=np.float32) -> BatchNorm:
        return cls(config["channels"], config.get("momentum", 0.1), config.get("eps", 1e-5), dtype=dtype)
