"""`digitnet show` and `digitnet predict --show`: figures written as PNG files, errors in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from digitnet.cli.predict import predict
from digitnet.cli.show import show
from digitnet.data import load_dataset
from digitnet.nn import build_mlp
from digitnet.plots import DEFAULT_FIGURES, FIGURES
from digitnet.train import TrainConfig, train


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny model trained on the 8x8 digits, saved with and without its training history."""
    digits = load_dataset("digits")
    rng = np.random.default_rng(0)
    network = build_mlp(
        (16,),
        input_shape=(1, 8, 8),
        rng=rng,
        mean=0.3,
        std=0.4,
        class_names=digits.class_names,
        metadata={"dataset": "digits"},
    )
    history = train(
        network,
        network.prepare(digits.train_images),
        digits.train_labels.astype(np.int64),
        TrainConfig(epochs=3, batch_size=32),
        rng,
    )
    folder = tmp_path_factory.mktemp("show-models")
    network.save(folder / "bare.npz")
    network.metadata["history"] = history.to_list()
    network.save(folder / "model.npz")
    return folder


def run(command, *args):
    return CliRunner().invoke(command, [str(arg) for arg in args], catch_exceptions=False)


def test_show_writes_every_figure_but_robustness_by_default(models, tmp_path):
    result = run(show, models / "model.npz", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "robustness" in FIGURES and "robustness" not in DEFAULT_FIGURES
    expected = [tmp_path / FIGURES[name] for name in DEFAULT_FIGURES]
    assert result.stdout.split() == [str(path) for path in expected]
    for path in expected:
        with Image.open(path) as image:
            assert image.format == "PNG" and np.asarray(image.convert("L")).std() > 15


def test_show_what_is_repeatable_and_comma_separated(models, tmp_path):
    result = run(show, models / "model.npz", "--out", tmp_path, "--what", "confusion,samples", "--what", "weights")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["confusion.png", "samples.png", "weights.png"]


def test_show_rejects_an_unknown_figure_and_lists_the_choices(models, tmp_path):
    result = run(show, models / "model.npz", "--out", tmp_path, "--what", "samples,histogram")
    assert result.exit_code == 2
    assert "unknown figure histogram; choose from samples, mistakes, confusion" in result.output
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_show_skips_the_learning_curve_of_a_model_without_history_with_a_note(models, tmp_path):
    result = run(show, models / "bare.npz", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "Skipped the learning curve" in result.stderr and "has no training history" in result.stderr
    assert not (tmp_path / "learning-curves.png").exists()
    assert (tmp_path / "samples.png").exists()


def test_show_asked_for_the_learning_curve_of_a_model_without_history_fails_in_one_line(models, tmp_path):
    result = run(show, models / "bare.npz", "--out", tmp_path, "--what", "learning-curves")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {models / 'bare.npz'} has no training history (it was saved without one); the "
        "learning-curve plot needs a model written by `digitnet train`."
    )


def test_show_reports_a_missing_model_file_in_one_line(tmp_path):
    result = run(show, tmp_path / "nope.npz", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "no such model file; train one with `digitnet train`" in result.output
    assert "Traceback" not in result.output


def test_show_draws_the_chosen_test_image_and_rejects_one_that_does_not_exist(models, tmp_path):
    assert run(show, models / "model.npz", "--out", tmp_path, "--what", "probabilities", "--index", 7).exit_code == 0
    assert (tmp_path / "probabilities.png").exists()
    result = run(show, models / "model.npz", "--out", tmp_path, "--what", "probabilities", "--index", 360)
    assert result.exit_code == 1 and "there is no test image 360" in result.output


# -- predict --show ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digit_files(mnist, tmp_path_factory):
    """Two MNIST test digits as PNG files, one drawn dark on light as a person would."""
    folder = tmp_path_factory.mktemp("digits")
    Image.fromarray(255 - mnist.test_images[0]).resize((112, 112)).save(folder / "seven.png")
    Image.fromarray(mnist.test_images[1]).save(folder / "two.png")
    return folder / "seven.png", folder / "two.png"


@pytest.mark.slow
def test_predict_show_writes_a_probability_chart_per_image(mnist_model_path, digit_files, tmp_path):
    seven, two = digit_files
    result = run(predict, mnist_model_path, seven, two, "--json", "--show", tmp_path / "charts")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    assert [answer["digit"] for answer in answers] == [7, 2]
    for answer, name in zip(answers, ["seven", "two"]):
        path = tmp_path / "charts" / f"{name}-probabilities.png"
        assert answer["plot"] == str(path)
        with Image.open(path) as image:
            assert image.format == "PNG" and np.asarray(image.convert("L")).std() > 15


@pytest.mark.slow
def test_predict_show_without_a_folder_writes_into_predictions(mnist_model_path, digit_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(predict, mnist_model_path, digit_files[0], "--show")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "predictions" / "seven-probabilities.png").is_file()
    assert "predictions/seven-probabilities.png" in result.stdout


def test_predict_show_refuses_to_take_an_image_as_its_folder(models, tmp_path):
    # `--show a.png b.png` would otherwise silently make a folder named a.png.
    result = run(predict, models / "model.npz", "--show", tmp_path / "a.png", tmp_path / "b.png")
    assert result.exit_code == 2
    assert "looks like an image, not a folder; put --show after the images" in result.output


@pytest.mark.slow
def test_predict_without_show_writes_no_chart(mnist_model_path, digit_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(predict, mnist_model_path, digit_files[0], "--json")
    assert result.exit_code == 0, result.output
    assert "plot" not in json.loads(result.stdout)[0]
    assert not list(tmp_path.iterdir())


def test_every_figure_name_the_readme_lists_is_one_show_draws():
    import re
    from pathlib import Path

    from digitnet.plots import FIGURES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listed = re.search(r"digitnet show \[MODEL \.\.\.\] .*--what ([a-z,-]+)\]", readme)
    assert listed, "README.md no longer lists the figures of `digitnet show`"
    assert listed.group(1).split(",") == list(FIGURES)


def test_show_compares_several_models_in_one_robustness_figure(models, tmp_path):
    result = run(show, models / "model.npz", models / "bare.npz", "--what", "robustness", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "robustness.png")]
    with Image.open(tmp_path / "robustness.png") as image:
        assert image.format == "PNG" and np.asarray(image.convert("L")).std() > 15


def test_several_models_with_other_figures_are_refused_before_anything_is_drawn(models, tmp_path):
    result = CliRunner().invoke(
        show, [str(models / "model.npz"), str(models / "bare.npz"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "several models can only be compared in the robustness figure" in result.output
    assert not (tmp_path / "o").exists()


def test_models_trained_on_different_datasets_are_not_compared(models, tmp_path):
    from digitnet.nn import Network

    other = Network.load(models / "bare.npz")
    other.metadata["dataset"] = "fashion-mnist"
    other.save(tmp_path / "fashion.npz")
    result = CliRunner().invoke(
        show,
        [
            str(models / "model.npz"),
            str(tmp_path / "fashion.npz"),
            "--what",
            "robustness",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1
    assert "was trained on fashion-mnist, not digits" in result.output
    assert not (tmp_path / "o").exists()
