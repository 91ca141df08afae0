"""Networks by name, as ``digitnet train --model NAME`` builds them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from .conv import Conv2D, MaxPool2D
from .layers import Dense, Flatten, Layer, ReLU
from .network import Network, build_mlp
from .regularization import BatchNorm, Dropout


def _mlp(hidden: Sequence[int], **kwargs: Any) -> Network:
    return build_mlp(hidden, **kwargs)


def build_cnn(
    hidden: Sequence[int] = (128,),
    *,
    input_shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
    rng: np.random.Generator,
    dtype=np.float32,
    channels: Sequence[int] = (20, 40),
    kernel_size: int = 5,
    padding: str = "valid",
    batch_norm: bool = True,
    dropout: float = 0.25,
    **kwargs: Any,
) -> Network:
    """A small LeNet-style convolutional network.

    For each entry of ``channels``: a ``kernel_size`` convolution, 2x2 max pooling, batch
    normalisation (if ``batch_norm``), ReLU. Then Flatten, (Dense, ReLU) per ``hidden`` size,
    Dropout, and the output Dense. With the defaults, on 28x28 digits::

        1x28x28 -> conv5x5 20 -> pool -> 20x12x12 -> conv5x5 40 -> pool -> 40x4x4 -> 128 -> 10

    Unpadded ("valid") convolutions, as LeNet's, do the work of the digit's 20x20 box and its
    margin and no more: the second convolution runs over 8x8 positions instead of the 14x14 of
    "same" padding, so a training step costs about half. Batch normalisation lets that cheaper
    network reach 99.3% in a few epochs (BENCHMARKS.md, issue 12).

    Pooling comes before batch normalisation and ReLU: ReLU commutes with max pooling (it is
    monotonic), and both then touch four times fewer values.

    Parameters
    ----------
    hidden : sequence of int
        Sizes of the dense hidden layers after the convolutions.
    input_shape : tuple of int
        ``(channels, height, width)`` of one image.
    num_classes : int
    rng : numpy.random.Generator
        Draws the initial weights and, later, the dropout masks.
    dtype : numpy dtype, optional
    channels : sequence of int, optional
        Filters of each convolution stage.
    kernel_size : int, optional
    padding : {"valid", "same"}, optional
        ``"same"`` keeps each map's size (zero padding), ``"valid"`` shrinks it by the kernel.
    batch_norm : bool, optional
        Normalise each stage's pooled maps per channel.
    dropout : float, optional
        Dropout rate before the output layer (0 leaves the layer out).
    **kwargs
        Passed to :class:`Network` (``mean``, ``std``, ``class_names``, ``metadata``).
    """
    layers: list[Layer] = []
    shape = tuple(input_shape)
    for out_channels in channels:
        stage: list[Layer] = [Conv2D(shape[0], out_channels, kernel_size, padding, rng=rng, dtype=dtype), MaxPool2D(2)]
        if batch_norm:
            stage.append(BatchNorm(out_channels, dtype=dtype))
        for layer in [*stage, ReLU()]:
            layers.append(layer)
            shape = layer.output_shape(shape)
    layers.append(Flatten())
    sizes = [int(np.prod(shape)), *hidden]
    for n_in, n_out in pairwise(sizes):
        layers += [Dense(n_in, n_out, rng=rng, dtype=dtype), ReLU()]
    if dropout:
        layers.append(Dropout(dropout, rng=rng))
    layers.append(Dense(sizes[-1], num_classes, rng=rng, dtype=dtype))
    return Network(layers, input_shape, **kwargs)


def _cnn(hidden: Sequence[int], *, input_shape: tuple[int, ...], **kwargs: Any) -> Network:
    # Images too small for unpadded convolutions (scikit-learn's 8x8 digits) keep their size.
    padding = "valid" if _fits_unpadded(min(input_shape[1:]), **kwargs) else "same"
    return build_cnn(hidden, input_shape=input_shape, padding=padding, **kwargs)


def _fits_unpadded(side: int, *, kernel_size: int = 5, channels: Sequence[int] = (20, 40), **_: Any) -> bool:
    """Whether every stage of unpadded convolution and 2x2 pooling leaves at least one pixel
    (defaults as :func:`build_cnn`'s: 16 pixels are the least for two 5x5 stages)."""
    for _stage in channels:
        side = (side - kernel_size + 1) // 2
    return side >= 1


def _cnn_padded(hidden: Sequence[int], **kwargs: Any) -> Network:
    # digitnet's first CNN, kept because the 12-CNN ensemble (--recipe cnn12) is built on it.
    return build_cnn(hidden, channels=(16, 32), padding="same", batch_norm=False, **kwargs)


#: name -> ``builder(hidden, *, input_shape, num_classes, rng, dtype, mean, std, class_names)``
ARCHITECTURES: dict[str, Callable[..., Network]] = {"mlp": _mlp, "cnn": _cnn, "cnn-padded": _cnn_padded}


def build_network(
    name: str,
    *,
    hidden: Sequence[int] = (128,),
    input_shape: tuple[int, ...],
    num_classes: int,
    rng: np.random.Generator,
    dtype=np.float32,
    **kwargs: Any,
) -> Network:
    """Build the architecture ``name``.

    ``mlp`` is the multilayer perceptron, 784-128-10 by default (``hidden`` gives its hidden
    layers); ``cnn`` is the small convolutional network of :func:`build_cnn` with its defaults
    ("same" padding on images under 16 pixels a side); ``cnn-padded`` is digitnet's first CNN (16
    and 32 channels, "same" padding, no batch normalisation), on which the 12-CNN ensemble is built. For
    both CNNs ``hidden`` gives the dense layers after the convolutions.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](hidden, input_shape=input_shape, num_classes=num_classes, rng=rng, dtype=dtype, **kwargs)
