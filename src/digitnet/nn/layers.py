"""Layers: each one a small class with a ``forward`` and the matching ``backward``.

Every layer follows the same contract, so a network is just a list of them:

* ``forward(x, training)`` computes the output; only when ``training`` is true does it remember
  what ``backward`` will need. Inference stores nothing, so one network can serve many threads;
* ``backward(grad_out)`` receives dL/d(output), stores dL/d(parameter) in ``grads`` and returns
  dL/d(input) (or ``None`` when nothing before the layer needs it). Gradients are written *into*
  the existing ``grads`` arrays (``out=``): the optimiser holds on to those arrays;
* ``params`` / ``grads`` map a parameter's name to its array; ``buffers`` holds saved state that
  is not trained (none for the layers here);
* ``config()`` and ``from_config`` describe the layer in the model file, so new layer kinds only
  need to register themselves here to be saved and loaded.

Arrays are batch-first: ``(N, features)`` for dense layers, ``(N, C, H, W)`` for images.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .init import he_normal

LAYER_TYPES: dict[str, type[Layer]] = {}


def axes_by_stride(a: np.ndarray) -> tuple[int, ...]:
    """``a``'s axes, slowest in memory first: its memory layout, whatever its logical shape
    (``(1, 2, 3, 0)`` for images ``(N, C, H, W)`` stored batch-last, as a convolution returns them)."""
    # sorted() is stable, and for four axes ten times faster than np.argsort: this runs every step.
    return tuple(sorted(range(a.ndim), key=lambda axis: -a.strides[axis]))


def in_layout(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``a`` (same logical shape) with its memory in the layout ``axes`` (see :func:`axes_by_stride`):
    copied only if it differs."""
    if axes_by_stride(a) == tuple(axes):
        return a
    return np.ascontiguousarray(a.transpose(axes)).transpose(np.argsort(axes))


def register(cls: type[Layer]) -> type[Layer]:
    """Make a layer class known to the model file format under its class name."""
    LAYER_TYPES[cls.__name__] = cls
    return cls


class Layer:
    """Base class: a layer without parameters that passes its input through."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    #: Whether ``backward`` must return dL/d(input). The network switches it off for the first
    #: layers, where no one needs that gradient, which saves the largest matrix product of all.
    needs_input_grad: bool = True

    def __init__(self) -> None:
        self.params, self.grads, self.buffers = {}, {}, {}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """The layer's output for a batch ``x`` (examples along the first axis).

        With ``training=True`` the layer keeps what :meth:`backward` needs (and dropout drops);
        without it nothing is kept, so inference leaves the layer unchanged.
        """
        raise NotImplementedError

    def saved(self, value: Any) -> Any:
        """``value``, kept by a training forward pass; a clear error if there was none."""
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs forward(x, training=True) first")
        return value

    def replica(self) -> Layer:
        """A twin for another thread's share of a training batch (:mod:`digitnet.parallel`): the
        same parameter arrays, which both only read while a step runs, and its own gradients,
        buffers and training-time state."""
        twin = copy.copy(self)
        twin.grads = {name: np.zeros_like(grad) for name, grad in self.grads.items()}
        twin.buffers = {name: value.copy() for name, value in self.buffers.items()}
        return twin

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        """Given dLoss/dOutput of the last training forward pass, fill ``grads`` (dLoss/dParameter)
        and return dLoss/dInput (``None`` where no layer below needs it)."""
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one example's output, given one example's input shape."""
        return input_shape

    def summary(self) -> str | None:
        """A short token for one-line architecture summaries (``None``: not worth naming)."""
        return None

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (the type name is added by the network)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype=np.float32) -> Layer:
        """A layer built from :meth:`config`'s arguments, its parameters in ``dtype`` (to be loaded)."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


@register
class Dense(Layer):
    """Fully connected layer: ``y = x @ W + b``.

    ``W`` has shape ``(in_features, out_features)`` so that a batch of row vectors multiplies it
    directly. Backward, for ``g = dL/dy``::

        dL/dW = x.T @ g        dL/db = sum of g over the batch        dL/dx = g @ W.T
    """

    def __init__(
        self, in_features: int, out_features: int, *, rng: np.random.Generator | None = None, dtype=np.float32
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        if rng is None:  # shapes only; the weights are about to be loaded from a file
            weights = np.zeros((in_features, out_features), dtype=dtype)
        else:
            weights = he_normal(in_features, (in_features, out_features), rng, dtype)
        self.params = {"W": weights, "b": np.zeros(out_features, dtype=dtype)}
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.x: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self.x = x
        y = x @ self.params["W"]
        y += self.params["b"]  # in place: one pass, and no second (N, out) array
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        # Written into the existing arrays, so the optimiser can hold on to them.
        np.matmul(self.saved(self.x).T, grad_out, out=self.grads["W"])
        np.sum(grad_out, axis=0, out=self.grads["b"])
        if not self.needs_input_grad:
            return None
        return grad_out @ self.params["W"].T

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.out_features,)

    def summary(self) -> str:
        return str(self.out_features)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features}

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype=np.float32) -> Dense:
        return cls(config["in_features"], config["out_features"], dtype=dtype)


@register
class ReLU(Layer):
    """Rectified linear unit: ``y = max(x, 0)``; its derivative is 1 where ``x > 0``, else 0."""

    active: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self.active = x > 0
        return np.maximum(x, 0)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self.saved(self.active)


@register
class Flatten(Layer):
    """Reshape ``(N, ...)`` to ``(N, features)``: images in, vectors out for dense layers."""

    input_shape: tuple[int, ...] | None = None
    input_axes: tuple[int, ...] | None = None  # the input's memory layout (axes_by_stride)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self.input_shape = x.shape
            self.input_axes = axes_by_stride(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # Back in the input's memory layout (batch-last after a convolution): one small copy
        # here, and the layers before work on contiguous arrays instead of strided ones.
        return in_layout(grad_out.reshape(self.saved(self.input_shape)), self.saved(self.input_axes))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)
