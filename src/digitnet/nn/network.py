"""The network: a list of layers, run forwards to predict and backwards to learn.

Saving and loading live in :mod:`digitnet.nn.modelfile`, which documents the file format and
checks every file before it allocates anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .conv import fuse_for_training
from .layers import Dense, Flatten, Layer, ReLU
from .losses import softmax

#: Images per forward pass when predicting or scoring many. Why not more: a CNN's feature maps grow
#: with the batch (5,000 images of the default CNN make a 230 MB first one; im2col is chunked
#: apart, see Conv2D.inference_chunk_values), and scoring 5,000 images at once took twice as long
#: as in batches of 500; the MLP does not care.
PREDICT_BATCH = 500


class Network:
    """A feed-forward network over images.

    Parameters
    ----------
    layers : sequence of Layer
        Applied in order; the last one produces the logits.
    input_shape : tuple of int
        One example's shape as the first layer sees it, ``(channels, height, width)``.
    mean, std : float
        Input normalisation: images in [0, 1] are mapped to ``(x - mean) / std`` before the first
        layer. Training data and user images go through the same step.
    class_names : sequence of str
        One name per output, in order.
    metadata : dict, optional
        Free-form facts saved with the model (dataset, training settings, metrics, history).
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        input_shape: tuple[int, ...],
        *,
        mean: float = 0.0,
        std: float = 1.0,
        class_names: Sequence[str] = tuple("0123456789"),
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.mean, self.std = float(mean), float(std)
        self.class_names = list(class_names)
        self.metadata = dict(metadata or {})
        self._mark_layers_needing_input_grad()
        self._training_steps: tuple[list[Layer], list[Layer]] = ([], [])  # (layers, the steps built from them)

    def _mark_layers_needing_input_grad(self) -> None:
        # Nothing before the first layer with parameters is trained, so that layer need not
        # compute dL/d(input): for the 784-128-10 MLP this skips a 128x784 matrix product per batch.
        seen_params = False
        for layer in self.layers:
            layer.needs_input_grad = seen_params
            seen_params = seen_params or bool(layer.params)

    def training_steps(self) -> list[Layer]:
        """The layers as a training pass runs them: :func:`~digitnet.nn.conv.fuse_for_training`
        joins the first convolution and its pooling into one faster step (same results up to
        rounding). Built once, and again whenever the list of layers changes."""
        if self._training_steps[0] != self.layers:
            self._mark_layers_needing_input_grad()
            self._training_steps = (list(self.layers), fuse_for_training(self.layers))
        return self._training_steps[1]

    def replica(self) -> Network:
        """A network for another thread's share of a training batch: the same parameter arrays
        (updated once, for both), its own gradients, buffers and work arrays
        (:class:`digitnet.parallel.DataParallel` runs them)."""
        return Network(
            [layer.replica() for layer in self.layers],
            self.input_shape,
            mean=self.mean,
            std=self.std,
            class_names=self.class_names,
        )

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(name, parameter, gradient)`` for every trainable array, in a fixed order."""
        return [
            (f"layer{i}.{name}", value, layer.grads[name])
            for i, layer in enumerate(self.layers)
            for name, value in layer.params.items()
        ]

    def state(self) -> dict[str, np.ndarray]:
        """Every array that defines the model: parameters and saved buffers, by name."""
        arrays = {}
        for i, layer in enumerate(self.layers):
            for name, value in {**layer.params, **layer.buffers}.items():
                arrays[f"layer{i}.{name}"] = value
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy arrays (as returned by :meth:`state`) into the network, in place."""
        for name, target in self.state().items():
            target[...] = arrays[name]

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (float32 or float64)."""
        for layer in self.layers:
            for value in layer.params.values():
                return value.dtype
        return np.dtype(np.float32)

    # -- learning -----------------------------------------------------------------------------

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Logits for a batch ``x`` that is already normalised and shaped ``(N, *input_shape)``.

        With ``training=True`` every layer keeps what :meth:`backward` needs (and dropout drops);
        otherwise nothing is stored, so several threads may predict with one network at once.
        """
        for layer in self.training_steps() if training else self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_logits: np.ndarray) -> None:
        """Propagate dL/d(logits) back through every layer, filling each layer's ``grads``.

        Needs the forward pass of the same batch with ``training=True`` first.
        """
        grad: np.ndarray | None = grad_logits
        for layer in reversed(self.training_steps()):
            grad = layer.backward(grad)  # type: ignore[arg-type]  # None only ends the loop below
            if grad is None:
                break

    # -- using --------------------------------------------------------------------------------

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Images with values in [0, 1] (``(N, H, W)`` or ``(N, C, H, W)`` or flat) -> network input.

        uint8 images are scaled by 1/255 first.
        """
        images = np.asarray(images)
        scale = 1 / 255 if images.dtype == np.uint8 else 1.0
        x = images.reshape((images.shape[0], *self.input_shape)).astype(self.dtype)  # a fresh copy
        # (x * scale - mean) / std, computed in place: no temporaries the size of the dataset.
        x *= scale / self.std
        x -= self.mean / self.std
        return x

    def predict_proba(self, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Class probabilities ``(N, K)`` for images with values in [0, 1] (or uint8)."""
        batches = [
            softmax(self.forward(self.prepare(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(batches) if batches else np.zeros((0, len(self.class_names)))

    def predict(self, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Predicted class index for each image."""
        return self.predict_proba(images, batch_size).argmax(axis=1)

    def describe(self) -> str:
        """A one-line architecture summary: ``784-128-10`` for the default MLP,
        ``784-conv5x5:20-pool2-bn-conv5x5:40-pool2-bn-128-dropout0.25-10`` for the CNN."""
        tokens = [str(int(np.prod(self.input_shape)))]
        tokens += [token for layer in self.layers if (token := layer.summary()) is not None]
        return "-".join(tokens)

    def num_parameters(self) -> int:
        """How many trainable numbers the network holds."""
        return sum(value.size for _, value, _ in self.parameters())

    # -- the model file -----------------------------------------------------------------------
    # The format, its schema and every check live in :mod:`digitnet.nn.modelfile`; imported
    # inside the methods because that module builds Networks itself.

    def to_metadata(self) -> dict[str, Any]:
        """The metadata a model file of this network holds (architecture first, then ``metadata``)."""
        from .modelfile import network_metadata

        return network_metadata(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` atomically: a crash mid-write never leaves a broken file.

        Raises :class:`~digitnet.errors.ModelFileError` (writing nothing) if the model's metadata
        breaks the format, so that every file written can be read back.
        """
        from .modelfile import save_network

        save_network(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Network:
        """Read a model written by :meth:`save`, checking the whole file before trusting any of it.

        Raises :class:`~digitnet.errors.ModelFileError`, with a one-sentence message, for a file
        that is missing, not a model, damaged, or breaks the format's rules.
        """
        from .modelfile import load_network

        return load_network(path)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], arrays: dict[str, np.ndarray], source: str = "model") -> Network:
        """Rebuild a network from its metadata and arrays, with the model file's checks."""
        from .modelfile import network_from_metadata

        return network_from_metadata(metadata, arrays, source)


def build_mlp(
    hidden: Sequence[int] = (128,),
    *,
    input_shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
    rng: np.random.Generator,
    dtype=np.float32,
    **kwargs: Any,
) -> Network:
    """The 784-128-10 network and its deeper cousins: Flatten, then (Dense, ReLU) per hidden layer, then Dense.

    ``build_mlp((128,))`` is the 784-128-10 network the project began with.
    """
    sizes = [int(np.prod(input_shape)), *hidden, num_classes]
    layers: list[Layer] = [Flatten()]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(n_in, n_out, rng=rng, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Network(layers, input_shape, **kwargs)
