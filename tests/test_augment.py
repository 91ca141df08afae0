"""Random distortions of training batches: exact where the maths says so, seeded, and label-preserving."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from digitnet.augment import INTERPOLATIONS, STRENGTHS, Augmenter, Strength, gaussian_upsampling_matrix, make_augmenter

BACKGROUND = np.float32(-0.4242)  # a normalised black pixel, (0 - 0.1307) / 0.3081


def identity(n):
    return np.tile(np.eye(2), (n, 1, 1)), np.zeros((n, 2))


def sampler(interpolation):
    """An augmenter whose ``transform`` reads the input with the given interpolation."""
    return Augmenter(Strength(interpolation=interpolation), background=BACKGROUND)


both_interpolations = pytest.mark.parametrize("interpolation", INTERPOLATIONS)


@both_interpolations
@pytest.mark.parametrize(
    "shape",
    [(5, 1, 28, 28), (3, 28, 28), (4, 2, 13, 17)],
    ids=["network batch", "plain images", "two channels, odd size"],
)
def test_identity_transform_returns_the_input_exactly(shape, interpolation, rng):
    batch = rng.standard_normal(shape).astype(np.float32)
    out = sampler(interpolation).transform(batch, *identity(shape[0]))
    assert out.dtype == batch.dtype
    np.testing.assert_array_equal(out, batch)


def test_zero_strength_returns_the_input(rng):
    batch = rng.standard_normal((6, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(Augmenter(Strength())(batch, rng), batch)


@both_interpolations
def test_an_integer_shift_moves_every_pixel_and_fills_with_background(interpolation, rng):
    batch = rng.standard_normal((2, 1, 8, 9)).astype(np.float32)
    matrices, shifts = identity(2)
    shifts[:] = [2, -1]  # each output pixel reads 2 to the right and 1 above: content moves left, down
    out = sampler(interpolation).transform(batch, matrices, shifts)
    np.testing.assert_array_equal(out[:, :, 1:, :-2], batch[:, :, :-1, 2:])
    np.testing.assert_array_equal(out[:, :, 0, :], BACKGROUND)
    np.testing.assert_array_equal(out[:, :, :, -2:], BACKGROUND)


def test_a_half_pixel_shift_averages_neighbours(rng):
    batch = rng.standard_normal((1, 1, 4, 6)).astype(np.float64)
    matrices, shifts = identity(1)
    shifts[:] = [0.5, 0]
    out = sampler("bilinear").transform(batch, matrices, shifts)
    np.testing.assert_allclose(out[..., :-1], (batch[..., :-1] + batch[..., 1:]) / 2, rtol=1e-6)


def test_nearest_sampling_reads_the_closest_pixel(rng):
    batch = rng.standard_normal((1, 1, 5, 6)).astype(np.float32)
    matrices, shifts = identity(1)
    shifts[:] = [0.4, -0.4]  # closer to the pixel itself than to any neighbour
    np.testing.assert_array_equal(sampler("nearest").transform(batch, matrices, shifts), batch)
    shifts[:] = [0.6, 1.6]  # closer to the pixel one right and two down
    out = sampler("nearest").transform(batch, matrices, shifts)
    np.testing.assert_array_equal(out[..., :-2, :-1], batch[..., 2:, 1:])
    np.testing.assert_array_equal(out[..., -2:, :], BACKGROUND)


def test_nearest_sampling_only_copies_input_pixels_or_background(rng):
    batch = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    strong_but_nearest = Strength(**{**STRENGTHS["strong"].to_dict(), "interpolation": "nearest"})
    out = Augmenter(strong_but_nearest, background=BACKGROUND)(batch, rng)  # affine and elastic
    for image, distorted in zip(batch, out):
        assert np.isin(distorted, np.append(image.ravel(), BACKGROUND)).all()
    assert not np.array_equal(out, batch)


@both_interpolations
def test_a_quarter_turn_rotates_the_image(interpolation, rng):
    batch = rng.standard_normal((1, 1, 7, 7)).astype(np.float32)
    rotate = np.array([[[0.0, 1.0], [-1.0, 0.0]]])  # output (x, y) reads input (y, -x), y pointing down
    out = sampler(interpolation).transform(batch, rotate, np.zeros((1, 2)))
    np.testing.assert_allclose(out[0, 0], np.rot90(batch[0, 0], k=-1), atol=1e-6)  # clockwise


@pytest.mark.parametrize("name", sorted(STRENGTHS))
def test_augmentation_is_reproducible_from_the_seed_and_leaves_the_input_alone(name, rng):
    batch = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    original = batch.copy()
    augment = Augmenter(name, background=BACKGROUND)
    first = augment(batch, np.random.default_rng(42))
    second = augment(batch, np.random.default_rng(42))
    other = augment(batch, np.random.default_rng(43))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(batch, original)
    assert first.shape == batch.shape and first.dtype == batch.dtype


@pytest.mark.parametrize("name", ["light", "medium"], ids=["nearest", "bilinear"])
def test_batches_of_changing_size_give_the_same_result_as_a_fresh_augmenter(name, rng):
    """The work arrays are reused between calls; switching batch sizes must not leak state."""
    batches = [rng.standard_normal((size, 1, 12, 12)).astype(np.float32) for size in (5, 3, 5, 4)]
    reused = Augmenter(name, background=BACKGROUND)
    results = []
    for seed, batch in enumerate(batches):
        expected = Augmenter(name, background=BACKGROUND)(batch, np.random.default_rng(seed))
        results.append(reused(batch, np.random.default_rng(seed)))
        np.testing.assert_array_equal(results[-1], expected)
    # earlier results are the caller's own arrays: later calls did not overwrite them
    np.testing.assert_array_equal(
        results[0], Augmenter(name, background=BACKGROUND)(batches[0], np.random.default_rng(0))
    )


def test_affine_only_strengths_sample_nearest_and_elastic_ones_bilinear():
    for name, strength in STRENGTHS.items():
        assert strength.interpolation == ("bilinear" if strength.elastic > 0 else "nearest"), name


@pytest.mark.parametrize("name", sorted(STRENGTHS))
def test_augmented_pixels_stay_within_the_input_range(name, rng):
    """Bilinear interpolation mixes existing values and nearest copies them: neither overshoots;
    noise is clipped to the range from no ink to full ink."""
    batch = rng.uniform(0, 1, (16, 1, 28, 28)).astype(np.float32)
    batch[:, :, 0, 0] = 1.0  # full ink is in the batch
    out = Augmenter(name, background=0.0, full_ink=1.0)(batch, rng)
    assert out.min() >= 0 and out.max() <= 1.0 + 1e-6


def test_elastic_fields_are_smooth_with_the_requested_size(rng):
    augment = Augmenter(Strength(elastic=1.5, elastic_grid=4))
    fields = augment.random_elastic(400, 28, 28, rng)
    assert fields.shape == (400, 2, 28, 28)
    assert abs(float(np.sqrt((fields**2).mean())) - 1.5) < 0.1
    neighbour_correlation = np.corrcoef(fields[..., :-1].ravel(), fields[..., 1:].ravel())[0, 1]
    assert neighbour_correlation > 0.9


def test_upsampling_matrix_rows_have_unit_length():
    matrix = gaussian_upsampling_matrix(28, 5)
    assert matrix.shape == (28, 5)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1, rtol=1e-12)


def test_unknown_strength_is_refused_and_none_means_no_augmentation():
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmenter("extreme")
    with pytest.raises(ValueError, match="unknown interpolation"):
        Strength(interpolation="bicubic")
    assert make_augmenter("none") is None and make_augmenter(None) is None
    assert isinstance(make_augmenter("light", BACKGROUND), Augmenter)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STRENGTHS))
def test_augmented_digits_keep_their_labels(name, mnist, mnist_model_path):
    """A model trained without augmentation still reads distorted test digits far above chance.

    The seed MLP (about 97 % on clean digits) was never shown a shifted digit, so it is fragile:
    it reads about 81 % of "light", 64 % of "medium", 49 % of "strong" and 61 % of "reader"
    distortions (which add stroke weight, coarse scans and blur). A bug that
    scrambled images or mixed them up within the batch would bring it down to chance (10 %).
    """
    from digitnet.nn import Network

    network = Network.load(mnist_model_path)
    images, labels = mnist.test_images[:2000], mnist.test_labels[:2000]
    x = network.prepare(images)
    augment = Augmenter(name, background=(0 - network.mean) / network.std)
    distorted = augment(x, np.random.default_rng(0))
    clean_accuracy = float((network.forward(x).argmax(axis=1) == labels).mean())
    distorted_accuracy = float((network.forward(distorted).argmax(axis=1) == labels).mean())
    assert clean_accuracy > 0.95
    assert distorted_accuracy > {"light": 0.75, "medium": 0.55, "strong": 0.4, "reader": 0.45}[name]


@pytest.mark.slow
def test_train_command_augments_and_records_the_strength(mnist, tmp_path):
    import json

    from click.testing import CliRunner

    from digitnet.cli.train import train as train_command
    from digitnet.nn import Network

    out = tmp_path / "augmented.npz"
    result = CliRunner().invoke(
        train_command,
        ["--augment", "light", "--epochs", "1", "--threads", "1", "--out", str(out), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["test_accuracy"] > 0.9
    training = Network.load(out).metadata["training"]
    assert training["augment"] == "light"
    assert training["augment_strength"] == STRENGTHS["light"].to_dict()
    assert training["augment_strength"]["interpolation"] == "nearest"


# -- the pen-and-scanner stage of the "reader" strength ---------------------------------------------


@pytest.mark.parametrize("side", [7, 11, 14, 28])
def test_a_low_resolution_scan_keeps_a_blank_page_blank_and_the_ink_in_place(side):
    from digitnet.augment import resample_matrix

    matrix = resample_matrix(28, side)
    np.testing.assert_allclose(matrix.sum(axis=1), 1, atol=1e-12)  # rows sum to one
    image = np.zeros((28, 28))
    image[8:20, 12:16] = 1  # a bar
    scanned = matrix @ image @ matrix.T
    assert scanned.sum() == pytest.approx(image.sum(), rel=0.15)
    rows, cols = np.nonzero(scanned > 0.5)
    assert abs(rows.mean() - 13.5) < 1 and abs(cols.mean() - 13.5) < 1
    if side == 28:
        np.testing.assert_allclose(matrix, np.eye(28), atol=1e-12)


def test_a_coarser_scan_loses_more_detail():
    from digitnet.augment import resample_matrix

    noise = np.random.default_rng(0).random((28, 28))
    detail = [np.std(resample_matrix(28, side) @ noise @ resample_matrix(28, side).T) for side in (7, 14, 28)]
    assert detail[0] < detail[1] < detail[2]


def test_blur_of_width_zero_is_the_identity_and_wider_blur_spreads_more():
    from digitnet.augment import gaussian_blur_matrix

    np.testing.assert_array_equal(gaussian_blur_matrix(10, 0), np.eye(10))
    spike = np.zeros(28)
    spike[14] = 1
    spreads = [np.count_nonzero(gaussian_blur_matrix(28, sigma) @ spike > 0.01) for sigma in (0.5, 1.0, 2.0)]
    assert spreads[0] < spreads[1] < spreads[2]


def strokes(n: int) -> np.ndarray:
    """``n`` normalised images of bars two pixels wide, ink 1 on the normalised background."""
    batch = np.full((n, 1, 28, 28), BACKGROUND, dtype=np.float32)
    batch[:, :, 6:22, 12:14] = 1
    return batch


def test_the_reader_strength_changes_stroke_weight_in_both_directions():
    only_strokes = Augmenter(Strength(stroke=0.5), background=BACKGROUND)
    batch = strokes(40)
    out = only_strokes(batch, np.random.default_rng(0))
    ink_before = (batch > 0).sum(axis=(1, 2, 3))
    ink_after = (out > 0).sum(axis=(1, 2, 3))
    assert (ink_after > ink_before).any() and (ink_after < ink_before).any() and (ink_after == ink_before).any()
    assert (out >= BACKGROUND - 1e-6).all()  # the background never gets darker than blank


def test_pen_and_scanner_keep_shape_dtype_and_a_blank_background():
    noiseless = dataclasses.replace(STRENGTHS["reader"], noise_chance=0.0)
    augment = Augmenter(noiseless, background=BACKGROUND)
    blank = np.full((16, 1, 28, 28), BACKGROUND, dtype=np.float32)
    out = augment(blank, np.random.default_rng(1))
    assert out.shape == blank.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, BACKGROUND, atol=1e-5)


def test_noise_reaches_about_the_chance_asked_and_stays_between_no_ink_and_full_ink():
    full_ink = 2.8
    augment = Augmenter(Strength(noise=0.3, noise_chance=0.5), background=BACKGROUND, full_ink=full_ink)
    blank = np.full((400, 1, 28, 28), BACKGROUND, dtype=np.float32)
    out = augment(blank, np.random.default_rng(2))
    noisy = (np.abs(out - BACKGROUND) > 1e-6).any(axis=(1, 2, 3))
    assert 150 <= noisy.sum() <= 250
    assert out.min() >= BACKGROUND - 1e-6 and out.max() <= full_ink + 1e-6
    # At most 0.3 of full ink: the spread of the noisiest image stays below that (before clipping).
    spread = (out[noisy] - BACKGROUND).std(axis=(1, 2, 3)).max()
    # Clipped below at no ink, the noisiest of 200 images spreads about 0.17 of the ink range.
    assert 0.1 * (full_ink - BACKGROUND) < spread < 0.3 * (full_ink - BACKGROUND)


def test_the_older_strengths_do_not_run_the_pen_and_scanner_stage():
    assert not any(STRENGTHS[name].degrades for name in ("light", "medium", "strong"))
    assert STRENGTHS["reader"].degrades
