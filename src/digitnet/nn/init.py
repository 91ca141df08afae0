"""Weight initialisation.

Why it matters: with ReLU units, weights drawn with variance 2 / fan_in keep the variance of the
activations roughly constant from layer to layer (He et al., 2015), so a deep stack neither dies
nor explodes at the first step. Biases start at zero.
"""

from __future__ import annotations

import numpy as np


def he_normal(fan_in: int, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Draw weights from N(0, 2 / fan_in), the He initialisation for ReLU networks.

    Parameters
    ----------
    fan_in : int
        Number of inputs that feed each unit.
    shape : tuple of int
        Shape of the weight array.
    rng : numpy.random.Generator
        The run's generator; the same seed gives bit-identical weights.
    dtype : numpy dtype, optional
        float32 (default) or float64.
    """
    std = np.sqrt(2.0 / fan_in)
    return (rng.standard_normal(shape) * std).astype(dtype)
