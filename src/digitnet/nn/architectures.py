"""Networks by name, as ``digitnet train --model NAME`` builds them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .network import Network, build_mlp


def _mlp(hidden: Sequence[int], **kwargs: Any) -> Network:
    return build_mlp(hidden, **kwargs)


#: name -> builder(hidden, *, input_shape, num_classes, rng, dtype, mean, std, class_names)
ARCHITECTURES: dict[str, Callable[..., Network]] = {"mlp": _mlp}


def build_network(name: str, *, hidden: Sequence[int] = (128,), input_shape: tuple[int, ...],
                  num_classes: int, rng: np.random.Generator, dtype=np.float32, **kwargs: Any) -> Network:
    """Build the architecture ``name`` (``mlp`` is the seed network; ``hidden`` shapes it)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](hidden, input_shape=input_shape, num_classes=num_classes, rng=rng,
                               dtype=dtype, **kwargs)
