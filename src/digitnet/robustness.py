"""How accuracy falls as test digits are rotated, thickened, blurred, made noisy, shifted or scaled.

Each perturbation is a family of severities, one of which (0, or 1.0 for scale) leaves the digits
unchanged. The
same test digits (white ink on black, values in [0, 1]) are perturbed at every severity with
scipy.ndimage, and the model reads them exactly as it reads the test set. Noise and shift
directions come from a fixed seed, so a curve is the same every time it is drawn::

    curves = robustness_curves(network, data.test_images[:2000], data.test_labels[:2000])
    curves["rotation"]  # accuracy at 0, 10, 20, 30, 45 and 60 degrees
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .metrics import accuracy

#: Digits per curve point by default: enough for about +-0.5 points of noise at 99 %.
DEFAULT_COUNT = 2000
_SEED = 12345
_CROSS = ndimage.generate_binary_structure(2, 1)[np.newaxis]  # a 3x3 cross, image by image


@dataclass(frozen=True)
class Perturbation:
    """A family of distortions: ``apply(images, severity, rng)`` for each of ``severities``."""

    title: str
    unit: str
    severities: tuple[float, ...]
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _rotate(images: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    return ndimage.rotate(images, degrees, axes=(2, 1), reshape=False, order=1)


def _stroke(images: np.ndarray, steps: float, rng: np.random.Generator) -> np.ndarray:
    """Thicker (``steps > 0``) or thinner strokes: grey dilation or erosion by a 3x3 cross, repeated."""
    morph = ndimage.grey_dilation if steps > 0 else ndimage.grey_erosion
    for _ in range(int(abs(steps))):
        images = morph(images, footprint=_CROSS)
    return images


def _blur(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma))


def _noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(images + rng.normal(0.0, sigma, images.shape).astype(images.dtype), 0.0, 1.0)


def _shift(images: np.ndarray, pixels: float, rng: np.random.Generator) -> np.ndarray:
    """Each digit moved ``pixels`` in a direction of its own (part of it may leave the frame)."""
    angles = rng.uniform(0.0, 2 * np.pi, len(images))
    moved = [
        ndimage.shift(image, (pixels * np.sin(a), pixels * np.cos(a)), order=1) for image, a in zip(images, angles)
    ]
    return np.stack(moved) if moved else images


def _scale(images: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Each digit enlarged or shrunk by ``factor`` about the image centre."""
    centre = (np.array(images.shape[1:]) - 1) / 2
    matrix = np.diag([1.0, 1 / factor, 1 / factor])
    offset = np.concatenate([[0.0], centre - centre / factor])
    return ndimage.affine_transform(images, matrix, offset=offset, order=1)


#: Every perturbation by name, in the order the figures show them.
PERTURBATIONS: dict[str, Perturbation] = {
    "rotation": Perturbation("Rotation", "degrees", (0, 10, 20, 30, 45, 60), _rotate),
    "thickness": Perturbation(
        "Stroke thickness", "pixels added to each side of a stroke (-: removed)", (-1, 0, 1, 2, 3), _stroke
    ),
    "blur": Perturbation("Blur", "Gaussian sigma, pixels", (0, 0.5, 1, 1.5, 2, 3), _blur),
    "noise": Perturbation("Noise", "Gaussian sigma, of full ink", (0, 0.1, 0.2, 0.3, 0.4, 0.5), _noise),
    "shift": Perturbation("Shift", "pixels", (0, 2, 4, 6, 8), _shift),
    "scale": Perturbation("Scale", "size factor", (0.5, 0.7, 0.85, 1.0, 1.2, 1.4), _scale),
}


def perturbed(images: np.ndarray, name: str, severity: float) -> np.ndarray:
    """``images`` (uint8, or floats in [0, 1]) under one perturbation, as float32 in [0, 1]."""
    pixels = np.asarray(images, dtype=np.float32)
    if np.asarray(images).dtype == np.uint8:
        pixels /= 255.0
    rng = np.random.default_rng(_SEED)
    return np.clip(PERTURBATIONS[name].apply(pixels, severity, rng), 0.0, 1.0).astype(np.float32)


def robustness_curves(network, images: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Accuracy of ``network`` on ``images`` at each severity of each perturbation.

    Parameters
    ----------
    network : Network
        A model reading 28x28 digits (or any size: the perturbations keep the image size).
    images : numpy.ndarray
        ``(N, H, W)`` test digits, uint8 or floats in [0, 1], white ink on black.
    labels : numpy.ndarray
        ``(N,)`` true labels.

    Returns
    -------
    dict of str to list of float
        For each name in :data:`PERTURBATIONS`, the accuracy at each of its severities.
    """
    labels = np.asarray(labels, dtype=np.int64)
    return {
        name: [accuracy(labels, network.predict(perturbed(images, name, severity))) for severity in family.severities]
        for name, family in PERTURBATIONS.items()
    }
