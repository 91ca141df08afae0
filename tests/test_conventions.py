"""Training 1s and 7s rewritten in other writers' conventions (digitnet.conventions)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from digitnet.augment import STRENGTHS
from digitnet.conventions import crossed_seven, flag_direction, flagged_one, rewrite
from digitnet.data import Dataset
from digitnet.experiment import ExperimentConfig, with_conventions

DIGITS = tuple(str(d) for d in range(10))


def plain_one() -> np.ndarray:
    """An upright single-stroke 1, three pixels wide, centred as MNIST centres digits."""
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 13:16] = 255
    return image


def plain_seven() -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[4:7, 8:20] = 255  # the top bar
    for row in range(7, 24):  # the stem, leaning left as it goes down
        column = 19 - (row - 7) // 3
        image[row, column - 1 : column + 2] = 255
    return image


def test_a_flagged_one_is_wider_at_the_top_than_along_its_stem_and_stays_mnist_like():
    rng = np.random.default_rng(0)
    for _ in range(10):
        flagged = flagged_one(plain_one(), rng)
        assert flagged.shape == (28, 28) and flagged.dtype == np.uint8
        ink = flagged >= 128
        rows = np.flatnonzero(ink.any(axis=1))
        top, height = rows[0], rows[-1] - rows[0] + 1
        upper = ink[top : top + int(0.4 * height)].any(axis=0).sum()  # flag and stem
        middle = ink[top + int(0.55 * height) : top + int(0.8 * height)].any(axis=0).sum()  # stem only
        assert upper >= middle + 2, "no flag drawn beside the top of the stem"
        # Refitted as MNIST's digits are: 20 pixels tall, centre of mass near the middle.
        assert 19 <= height <= 21
        centre = ndimage.center_of_mass(flagged.astype(float))
        assert abs(centre[0] - 14) <= 1.0 and abs(centre[1] - 14) <= 1.0


def test_a_flag_turns_left_from_the_stem_but_never_flatter_than_sixty_degrees_so_no_seven_is_made():
    def degrees_from_vertical(direction):
        return np.degrees(np.arctan2(-direction[0], direction[1]))

    assert degrees_from_vertical(flag_direction((0.0, 1.0), 30.0)) == pytest.approx(30.0)
    leaning = (-np.sin(np.radians(20)), np.cos(np.radians(20)))  # a stem running down to the left
    assert degrees_from_vertical(flag_direction(leaning, 30.0)) == pytest.approx(50.0)
    assert degrees_from_vertical(flag_direction(leaning, 50.0)) == pytest.approx(60.0)
    assert np.hypot(*flag_direction(leaning, 50.0)) == pytest.approx(1.0)


def test_a_crossed_seven_gains_a_bar_through_its_stem():
    rng = np.random.default_rng(0)
    seven = plain_seven()
    crossed = crossed_seven(seven, rng)
    rows = np.nonzero(crossed >= 128)[0]
    middle = slice(rows.min() + (rows.max() - rows.min()) // 3, rows.max() - (rows.max() - rows.min()) // 4)
    widest_in_middle = (crossed[middle] >= 128).sum(axis=1).max()
    assert widest_in_middle >= 6, "no bar across the stem"


def test_rewrite_changes_only_ones_and_sevens_about_the_share_asked_and_is_reproducible():
    labels = np.tile(np.arange(10, dtype=np.uint8), 60)
    images = np.stack([plain_seven() if label == 7 else plain_one() for label in labels])
    first = rewrite(images, labels, DIGITS, 0.5, np.random.default_rng(3))
    again = rewrite(images, labels, DIGITS, 0.5, np.random.default_rng(3))
    changed = (first != images).any(axis=(1, 2))
    assert np.array_equal(first, again)
    assert set(labels[changed]) == {1, 7}
    for digit in (1, 7):
        assert 15 <= changed[labels == digit].sum() <= 45  # 60 of each, half asked
    assert not np.shares_memory(first, images)


def test_rewrite_leaves_other_datasets_alone():
    labels = np.arange(10, dtype=np.uint8)
    small = np.full((10, 8, 8), 200, np.uint8)
    assert np.array_equal(rewrite(small, labels, DIGITS, 1.0, np.random.default_rng(0)), small)
    clothes = tuple(f"class {d}" for d in range(10))
    images = np.stack([plain_one()] * 10)
    assert np.array_equal(rewrite(images, labels, clothes, 1.0, np.random.default_rng(0)), images)


def tiny_digits(n: int = 120) -> Dataset:
    labels = np.arange(n, dtype=np.uint8) % 10
    images = np.stack([plain_seven() if label == 7 else plain_one() for label in labels])
    return Dataset("tiny", DIGITS, images, labels, images[:10], labels[:10])


def test_the_reader_rewrites_only_the_training_part_never_validation_or_test():
    assert STRENGTHS["reader"].conventions > 0
    data = tiny_digits()
    train_index, val_index = np.arange(0, 100), np.arange(100, 120)
    rewritten = with_conventions(ExperimentConfig(augment="reader"), data, train_index, np.random.default_rng(0))
    changed = (rewritten.train_images != data.train_images).any(axis=(1, 2))
    assert changed[train_index].any()
    assert not changed[val_index].any()
    assert np.array_equal(rewritten.test_images, data.test_images)


def test_other_augmentations_rewrite_nothing_and_draw_nothing_from_the_generator():
    data = tiny_digits()
    for augment in (None, "none", "light", "medium", "strong"):
        rng = np.random.default_rng(0)
        same = with_conventions(ExperimentConfig(model="cnn", augment=augment), data, np.arange(100), rng)
        assert same is data
        assert rng.random() == np.random.default_rng(0).random()


def test_float_images_keep_their_scale_and_only_the_rewritten_ones_change():
    data = tiny_digits()
    floats = Dataset(
        "tiny", DIGITS, data.train_images * np.float32(0.7 / 255), data.train_labels, data.test_images, data.test_labels
    )
    train_index = np.arange(0, 100)
    rewritten = with_conventions(ExperimentConfig(augment="reader"), floats, train_index, np.random.default_rng(0))
    changed = (rewritten.train_images != floats.train_images).any(axis=(1, 2))
    assert changed.any() and set(floats.train_labels[changed]) <= {1, 7}
    assert 0.5 < rewritten.train_images[changed].max() <= 1.0  # still [0, 1] ink, not zeroed
    np.testing.assert_array_equal(rewritten.train_images[~changed], floats.train_images[~changed])
