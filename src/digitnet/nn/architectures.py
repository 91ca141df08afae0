"""Networks by name, as ``digitnet train --model NAME`` builds them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from .conv import Conv2D, MaxPool2D
from .layers import Dense, Flatten, Layer, ReLU
from .network import Network, build_mlp
from .regularization import Dropout


def _mlp(hidden: Sequence[int], **kwargs: Any) -> Network:
    return build_mlp(hidden, **kwargs)


def build_cnn(
    hidden: Sequence[int] = (128,),
    *,
    input_shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
    rng: np.random.Generator,
    dtype=np.float32,
    channels: Sequence[int] = (16, 32),
    kernel_size: int = 5,
    dropout: float = 0.25,
    **kwargs: Any,
) -> Network:
    """A small LeNet-style convolutional network.

    For each entry of ``channels``: a ``kernel_size`` convolution with "same" padding, 2x2 max
    pooling, ReLU. Then Flatten, (Dense, ReLU) per ``hidden`` size, Dropout, and the output Dense.
    With the defaults, on 28x28 digits::

        1x28x28 -> conv5x5 16 -> pool -> 16x14x14 -> conv5x5 32 -> pool -> 32x7x7 -> 128 -> 10

    Pooling comes before ReLU: the two commute (ReLU is monotonic, so the max of rectified values is
    the rectified max), and this way ReLU touches four times fewer values.

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
    dropout : float, optional
        Dropout rate before the output layer (0 leaves the layer out).
    **kwargs
        Passed to :class:`Network` (``mean``, ``std``, ``class_names``, ``metadata``).
    """
    layers: list[Layer] = []
    shape = tuple(input_shape)
    for out_channels in channels:
        for layer in (Conv2D(shape[0], out_channels, kernel_size, "same", rng=rng, dtype=dtype), MaxPool2D(2), ReLU()):
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


def _cnn(hidden: Sequence[int], **kwargs: Any) -> Network:
    return build_cnn(hidden, **kwargs)


#: name -> ``builder(hidden, *, input_shape, num_classes, rng, dtype, mean, std, class_names)``
ARCHITECTURES: dict[str, Callable[..., Network]] = {"mlp": _mlp, "cnn": _cnn}


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
    layers); ``cnn`` is the small convolutional network of :func:`build_cnn` (``hidden`` gives its
    dense layers after the convolutions).
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](hidden, input_shape=input_shape, num_classes=num_classes, rng=rng, dtype=dtype, **kwargs)
