"""Robustness curves: each perturbation does what its name says, and the curves count accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from digitnet.robustness import PERTURBATIONS, perturbed, robustness_curves


def bars(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Vertical (label 0) and horizontal (label 1) bars, uint8, white on black, centred in 28x28."""
    images = np.zeros((n, 28, 28), np.uint8)
    labels = np.arange(n) % 2
    images[labels == 0, 6:22, 13:15] = 255
    images[labels == 1, 13:15, 6:22] = 255
    return images, labels


class BarReader:
    """A stand-in network: calls a bar horizontal when its ink spreads more across than down."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        rows, columns = np.indices(images.shape[1:])
        weights = images / (images.sum(axis=(1, 2), keepdims=True) + 1e-9)  # eroded away: no ink
        spread_down = (weights * (rows - (weights * rows).sum(axis=(1, 2), keepdims=True)) ** 2).sum(axis=(1, 2))
        spread_across = (weights * (columns - (weights * columns).sum(axis=(1, 2), keepdims=True)) ** 2).sum(
            axis=(1, 2)
        )
        return (spread_across > spread_down).astype(int)


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_every_family_starts_from_or_passes_through_the_unchanged_digits(name):
    images, _ = bars()
    identity = {"rotation": 0, "thickness": 0, "blur": 0, "noise": 0, "shift": 0, "scale": 1.0}[name]
    assert identity in PERTURBATIONS[name].severities
    np.testing.assert_allclose(perturbed(images, name, identity), images / 255.0, atol=1e-6)


def test_rotation_turns_a_vertical_bar_horizontal():
    images, _ = bars(2)
    turned = perturbed(images[:1], "rotation", 90)[0]
    assert turned[13:15, 8:20].mean() > 0.8 and turned[6:12, 13:15].mean() < 0.1


def test_thickness_adds_or_removes_ink_a_pixel_at_a_time():
    images, _ = bars(2)
    ink = [(perturbed(images, "thickness", steps) > 0.5).sum() for steps in (-1, 0, 1, 2)]
    assert ink[0] < ink[1] < ink[2] < ink[3]


def test_blur_spreads_ink_and_keeps_its_total():
    images, _ = bars(2)
    blurred = perturbed(images, "blur", 2)
    assert blurred.max() < 0.9 and (blurred > 0.01).sum() > 2 * (images > 0).sum()
    assert blurred.sum() == pytest.approx(images.sum() / 255.0, rel=0.01)


def test_noise_is_the_same_every_time_and_stays_in_range():
    images, _ = bars()
    first, again = perturbed(images, "noise", 0.3), perturbed(images, "noise", 0.3)
    np.testing.assert_array_equal(first, again)
    assert first.min() >= 0 and first.max() <= 1 and np.abs(first - images / 255.0).mean() > 0.05


def test_shift_moves_each_digit_by_the_distance_asked():
    images, _ = bars()
    moved = perturbed(images, "shift", 5)
    for before, after in zip(images, moved):
        distance = np.hypot(*np.subtract(ndimage.center_of_mass(after), ndimage.center_of_mass(before)))
        assert distance == pytest.approx(5, abs=0.3)


def test_scale_changes_the_size_about_the_centre():
    images, _ = bars(2)
    for factor in (0.5, 1.4):
        scaled = perturbed(images[:1], "scale", factor)[0]
        rows = np.flatnonzero((scaled > 0.25).any(axis=1))
        assert len(rows) == pytest.approx(16 * factor, abs=2)
        assert ndimage.center_of_mass(scaled)[0] == pytest.approx(13.5, abs=0.5)


def test_the_curves_count_accuracy_at_each_severity():
    images, labels = bars()
    curves = robustness_curves(BarReader(), images, labels)
    assert set(curves) == set(PERTURBATIONS)
    assert all(len(curves[name]) == len(family.severities) for name, family in PERTURBATIONS.items())
    rotation = dict(zip(PERTURBATIONS["rotation"].severities, curves["rotation"]))
    assert rotation[0] == rotation[30] == 1.0
    assert rotation[60] == 0.0  # past 45 degrees every bar reads as the other kind
