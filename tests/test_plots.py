"""The figures of digitnet.plots: each renders without a display, to a PNG that is not blank."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from digitnet import plots
from digitnet.data import load_dataset
from digitnet.errors import DigitnetError
from digitnet.experiment import ExperimentConfig, run
from digitnet.metrics import confusion_matrix
from digitnet.nn import Conv2D, Network


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 handwritten digits: real data, offline, trains in a fraction of a second."""
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits_model(digits) -> Network:
    """A 64-16-10 network trained for a few epochs, with its history, as `digitnet train` saves it."""
    config = ExperimentConfig(dataset="digits", hidden=(16,), val_size=200, recipe={"epochs": 6, "batch_size": 32})
    return run(config, digits).network


@pytest.fixture(scope="module")
def probabilities(digits_model, digits) -> np.ndarray:
    return digits_model.predict_proba(digits.test_images)


def assert_good_png(path, figure) -> np.ndarray:
    """The file is a PNG of the figure's size in pixels, with real content; returns its grey pixels."""
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = figure.get_size_inches() * plots.DPI
        assert image.size == (round(width), round(height))
        grey = np.asarray(image.convert("L"), dtype=np.float64)
    assert grey.std() > 15, "the image is (nearly) blank"
    assert grey.min() < 60 and grey.max() > 200, "the image lacks contrast"
    return grey


def texts_of(figure) -> list[str]:
    """Every piece of text drawn in a figure: titles, labels, tick labels, annotations."""
    return [text.get_text() for text in figure.findobj(lambda artist: hasattr(artist, "get_text"))]


# -- each figure ------------------------------------------------------------------------------


def test_sample_predictions_title_each_image_and_mark_mistakes(digits, probabilities, tmp_path):
    predicted = probabilities.argmax(axis=1).copy()
    predicted[[2, 5]] = (digits.test_labels[[2, 5]] + 1) % 10  # two certain mistakes
    figure = plots.plot_sample_predictions(
        digits.test_images, digits.test_labels, predicted, digits.class_names, count=16, columns=8
    )
    assert_good_png(plots.save_figure(figure, tmp_path / "samples.png"), figure)
    axes = figure.axes
    assert len(axes) == 16
    wrong = {i for i in range(16) if predicted[i] != digits.test_labels[i]}
    assert {2, 5} <= wrong
    for i, ax in enumerate(axes):
        title = ax.get_title()
        if i in wrong:
            assert title == f"✗ {predicted[i]} (true {digits.test_labels[i]})"
            spine = ax.spines["top"]
            assert spine.get_edgecolor() == to_rgba(plots.MISTAKE_COLOUR) and spine.get_linewidth() >= 3
            assert spine.get_linestyle() != "solid"  # a dashed frame: visible without colour
        else:
            assert title == str(predicted[i])
    assert f"{16 - len(wrong)} of 16 correct" in figure._suptitle.get_text()


def test_mistakes_shows_the_most_confident_wrong_answers_with_top3(digits, probabilities, tmp_path):
    labels = digits.test_labels.astype(np.int64)
    # Make sure there are mistakes to show, whatever the tiny model learned.
    probs = probabilities.copy()
    probs[:5] = np.roll(np.eye(10)[labels[:5]], 1, axis=1) * 0.9 + 0.01
    chosen = plots.confident_mistakes(labels, probs, count=6)
    confidence = probs[chosen].max(axis=1)
    assert (np.diff(confidence) <= 0).all() and (probs[chosen].argmax(axis=1) != labels[chosen]).all()

    figure = plots.plot_mistakes(digits.test_images, labels, probs, digits.class_names, count=6, columns=3)
    assert_good_png(plots.save_figure(figure, tmp_path / "mistakes.png"), figure)
    image_axes = [ax for ax in figure.axes if ax.get_images()]
    assert len(image_axes) == len(chosen)
    for ax, index in zip(image_axes, chosen):
        assert ax.get_title() == f"#{index}: pred {probs[index].argmax()}, true {labels[index]}"
        lines = ax.get_xlabel().splitlines()
        assert len(lines) == 3 and lines[0].startswith(f"{probs[index].argmax()}:")
    assert "Most confident mistakes" in figure._suptitle.get_text()


def test_mistakes_says_so_when_there_are_none(digits):
    perfect = np.eye(10)[digits.test_labels]
    figure = plots.plot_mistakes(digits.test_images, digits.test_labels, perfect)
    assert any("No mistakes among 360 images" in text for text in texts_of(figure))


def test_confusion_matrix_writes_every_nonzero_count(digits, probabilities, tmp_path):
    matrix = confusion_matrix(digits.test_labels, probabilities.argmax(axis=1), 10)
    figure = plots.plot_confusion_matrix(matrix, digits.class_names)
    assert_good_png(plots.save_figure(figure, tmp_path / "confusion.png"), figure)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    written = sorted(int(text.get_text()) for text in ax.texts)
    assert written == sorted(int(v) for v in matrix.ravel() if v)
    accuracy = np.trace(matrix) / matrix.sum()
    assert f"({accuracy:.2%})" in ax.get_title()
    assert [label.get_text() for label in ax.get_xticklabels()] == list(digits.class_names)


def test_learning_curves_plot_the_saved_history(digits_model, tmp_path):
    history = digits_model.metadata["history"]
    figure = plots.plot_learning_curves(digits_model)
    assert_good_png(plots.save_figure(figure, tmp_path / "curves.png"), figure)
    loss_ax, accuracy_ax = figure.axes
    assert "loss" in loss_ax.get_title().lower() and loss_ax.get_xlabel() == "epoch"
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [r["loss"] for r in history])
    labels = [line.get_label() for line in accuracy_ax.lines]
    assert labels == ["training (during epoch)", "validation"]
    np.testing.assert_allclose(accuracy_ax.lines[1].get_ydata(), [100 * r["val_accuracy"] for r in history])
    assert accuracy_ax.lines[0].get_marker() != accuracy_ax.lines[1].get_marker()  # not by colour alone


def test_learning_curves_accept_a_history_object_and_skip_missing_validation(digits_model):
    records = [dict(r, val_accuracy=None) for r in digits_model.metadata["history"]]
    figure = plots.plot_learning_curves(records)
    assert [line.get_label() for line in figure.axes[1].lines] == ["training (during epoch)"]


def test_a_model_without_history_gets_a_clear_message_not_a_crash(digits_model):
    bare = Network(digits_model.layers, digits_model.input_shape, metadata={"dataset": "digits"})
    with pytest.raises(plots.NoHistoryError) as caught:
        plots.plot_learning_curves(bare, source="model.npz")
    assert isinstance(caught.value, DigitnetError)
    assert str(caught.value) == (
        "model.npz has no training history (it was saved without one); the "
        "learning-curve plot needs a model written by `digitnet train`."
    )


def test_first_layer_weights_show_each_hidden_unit_as_an_image(digits_model, tmp_path):
    figure = plots.plot_first_layer_weights(digits_model)
    assert_good_png(plots.save_figure(figure, tmp_path / "weights.png"), figure)
    images = [image for ax in figure.axes for image in ax.get_images()]
    assert len(images) == 16  # all 16 hidden units, each as its 8x8 input
    W = digits_model.layers[1].params["W"]
    np.testing.assert_allclose(images[3].get_array(), W[:, 3].reshape(8, 8), rtol=1e-6)
    low, high = images[0].get_clim()
    assert low == -high  # zero weight sits in the middle of the colour scale
    assert "Dense 64→16" in figure._suptitle.get_text()


def test_first_layer_weights_draw_convolution_filters(tmp_path):
    network = Network([Conv2D(3, 6, 5, rng=np.random.default_rng(0))], (3, 28, 28))
    figure = plots.plot_first_layer_weights(network)
    images = [image for ax in figure.axes for image in ax.get_images()]
    assert len(images) == 6 and images[0].get_array().shape == (5, 5)
    assert "filters" in figure._suptitle.get_text()
    assert_good_png(plots.save_figure(figure, tmp_path / "filters.png"), figure)


def test_first_layer_weights_explain_what_they_cannot_draw():
    from digitnet.nn import BatchNorm, Dense, Flatten

    network = Network([BatchNorm(1), Flatten(), Dense(784, 10, rng=np.random.default_rng(0))], (1, 28, 28))
    with pytest.raises(DigitnetError, match="only for a Dense layer reading the pixels or a convolution"):
        plots.plot_first_layer_weights(network)


def test_probability_bars_show_every_class_and_highlight_the_prediction(digits, probabilities, tmp_path):
    p = probabilities[0]
    figure = plots.plot_probabilities(
        p, digits.test_images[0], digits.class_names, true_label=int(digits.test_labels[0])
    )
    assert_good_png(plots.save_figure(figure, tmp_path / "probabilities.png"), figure)
    image_ax, bar_ax = figure.axes
    assert image_ax.get_images() and image_ax.get_title() == "input"
    bars = bar_ax.patches
    np.testing.assert_allclose([bar.get_height() for bar in bars], p, rtol=1e-6)
    guess = int(p.argmax())
    assert bars[guess].get_hatch() and not any(bar.get_hatch() for k, bar in enumerate(bars) if k != guess)
    assert bar_ax.get_ylabel() == "probability"
    assert figure._suptitle.get_text().startswith(f"Prediction: {guess} ({p[guess]:.1%})")


def test_probability_bars_work_without_an_image():
    figure = plots.plot_probabilities(np.full(10, 0.1))
    assert len(figure.axes) == 1


# -- writing them -----------------------------------------------------------------------------


def test_save_model_plots_writes_every_figure_asked_for(digits_model, digits, tmp_path):
    written = plots.save_model_plots(digits_model, digits, tmp_path / "out", tuple(plots.FIGURES), index=3)
    assert [path.name for path in written] == list(plots.FIGURES.values())
    for path in written:
        with Image.open(path) as image:
            assert np.asarray(image.convert("L")).std() > 15


def test_training_plots_are_learning_curves_and_samples(digits_model, digits, tmp_path):
    written = plots.save_training_plots(digits_model, digits, tmp_path)
    assert [path.name for path in written] == ["samples.png", "learning-curves.png"]


def test_training_plots_note_a_missing_history_and_still_write_samples(digits_model, digits, tmp_path):
    bare = Network(digits_model.layers, digits_model.input_shape, class_names=digits.class_names)
    notes = []
    written = plots.save_training_plots(bare, digits, tmp_path, note=notes.append)
    assert [path.name for path in written] == ["samples.png"]
    assert len(notes) == 1 and "has no training history" in notes[0]


def test_save_model_plots_rejects_an_image_index_outside_the_test_set(digits_model, digits, tmp_path):
    with pytest.raises(DigitnetError, match="there is no test image 360"):
        plots.save_model_plots(digits_model, digits, tmp_path, ["probabilities"], index=360)
    assert not list(tmp_path.iterdir())


def test_plots_never_touch_pyplot_or_a_display(tmp_path):
    # pyplot would pick a GUI backend where one exists; the module must work on a headless server.
    code = (
        "import sys, numpy as np; from digitnet import plots; "
        "plots.save_figure(plots.plot_probabilities(np.full(10, 0.1)), sys.argv[1]); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "MPLBACKEND")}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.png")], check=True, env=env)
    assert (tmp_path / "p.png").is_file()


def test_the_robustness_figure_has_a_panel_per_perturbation_and_a_line_per_model():
    from digitnet.robustness import PERTURBATIONS

    curves = {
        model: {name: [0.9] * len(family.severities) for name, family in PERTURBATIONS.items()} for model in ("a", "b")
    }
    figure = plots.plot_robustness(curves)
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [family.title for family in PERTURBATIONS.values()]
    assert all(len(ax.get_lines()) == 2 for ax in panels)
    np.testing.assert_allclose(panels[0].get_lines()[1].get_ydata(), 90.0)
