"""The command line end to end: train, evaluate, predict, and the clear errors at the boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from digitnet.cli import main
from digitnet.nn import Network


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A model trained through the CLI on the embedded 8x8 digits (offline, about a second)."""
    path = tmp_path_factory.mktemp("cli") / "digits.npz"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "20",
            "--hidden",
            "32",
            "--batch-size",
            "32",
            "--val-size",
            "200",
            "--out",
            str(path),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return path, json.loads(result.stdout)


def test_train_json_reports_accuracy_time_and_history(digits_model):
    path, report = digits_model
    assert report["test_accuracy"] > 0.8
    assert report["train_seconds"] == pytest.approx(sum(e["seconds"] for e in report["history"]))
    assert [e["epoch"] for e in report["history"]] == list(range(1, 21))
    assert set(report["history"][0]) >= {"epoch", "seconds", "loss", "train_accuracy", "val_accuracy"}
    network = Network.load(path)
    assert network.describe() == "64-32-10"
    assert network.metadata["dataset"] == "digits"
    assert network.metadata["metrics"]["test_accuracy"] == report["test_accuracy"]
    assert len(network.metadata["history"]) == 20


def test_evaluate_json_has_accuracy_n_dataset_and_confusion(runner, digits_model):
    path, report = digits_model
    result = invoke(runner, "evaluate", path, "--json")
    assert result.exit_code == 0
    scores = json.loads(result.stdout)
    assert scores["dataset"] == "digits" and scores["n"] == 360
    assert scores["accuracy"] == pytest.approx(report["test_accuracy"])
    confusion = np.array(scores["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 360
    assert confusion.trace() / 360 == pytest.approx(scores["accuracy"])


def test_evaluate_prints_readable_tables(runner, digits_model):
    result = invoke(runner, "evaluate", digits_model[0])
    assert "Accuracy" in result.output and "Confusion matrix" in result.output and "precision" in result.output


def test_evaluate_several_models_averages_their_probabilities(runner, digits_model, tmp_path):
    second = tmp_path / "second.npz"
    assert (
        invoke(
            runner,
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "20",
            "--batch-size",
            "32",
            "--hidden",
            "32",
            "--seed",
            "1",
            "--val-size",
            "200",
            "--out",
            second,
        ).exit_code
        == 0
    )
    result = invoke(runner, "evaluate", digits_model[0], second, "--json")
    scores = json.loads(result.stdout)
    assert scores["models"] == [str(digits_model[0]), str(second)]
    from digitnet.data import load_dataset

    data = load_dataset("digits")
    averaged = (
        Network.load(digits_model[0]).predict_proba(data.test_images)
        + Network.load(second).predict_proba(data.test_images)
    ) / 2
    assert scores["accuracy"] == pytest.approx(np.mean(averaged.argmax(1) == data.test_labels))


def test_same_seed_gives_the_same_model_file_weights(runner, tmp_path):
    for name in ("a", "b"):
        invoke(
            runner,
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--hidden",
            "16",
            "--seed",
            "5",
            "--out",
            tmp_path / f"{name}.npz",
            "--json",
        )
    a, b = Network.load(tmp_path / "a.npz").state(), Network.load(tmp_path / "b.npz").state()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_two_hidden_layers_and_float64_are_options(runner, tmp_path):
    result = invoke(
        runner,
        "train",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--hidden",
        "24,12",
        "--dtype",
        "float64",
        "--optimizer",
        "nesterov",
        "--out",
        tmp_path / "m.npz",
        "--json",
    )
    assert result.exit_code == 0
    network = Network.load(tmp_path / "m.npz")
    assert network.describe() == "64-24-12-10" and network.dtype == np.float64


def test_diverging_training_says_what_to_change_and_writes_nothing(runner, tmp_path):
    result = runner.invoke(
        main,
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--schedule",
            "constant",
            "--out",
            str(tmp_path / "m.npz"),
        ],
    )
    assert result.exit_code == 1
    assert "diverged" in result.output and "Lower the learning rate" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--hidden", "12,x"], "not a comma-separated list"),
        (["train", "--optimizer", "rmsprop"], "rmsprop"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--dataset", "digits", "--val-size", "99999"], "--val-size"),
        (["evaluate", "missing.npz"], "no such model file"),
    ],
)
def test_bad_options_get_one_clear_message(runner, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_corrupt_model_file_gets_one_clear_message(runner, tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    result = runner.invoke(main, ["predict", str(tmp_path / "bad.npz"), "x.png"])
    assert result.exit_code == 1 and "not a readable digitnet model" in result.output


def render_variants(digit: np.ndarray, tmp_path, stem: str) -> list:
    """Save one 28x28 MNIST digit as the files a user might have: big, off-centre, coloured, inverted."""
    ink = Image.fromarray(digit).resize((200, 200), Image.BILINEAR)
    paths = []
    canvas = Image.new("L", (640, 480), 255)  # black pen on white paper, far from the centre
    canvas.paste(Image.eval(ink, lambda v: 255 - v), (40, 30))
    paths.append(tmp_path / f"{stem}-paper.jpg")
    canvas.save(paths[-1], quality=85)
    small = Image.new("L", (300, 300), 0)  # small, white on black, bottom right
    small.paste(ink.resize((60, 60)), (220, 215))
    paths.append(tmp_path / f"{stem}-small.bmp")
    small.save(paths[-1])
    colour = Image.new("RGB", (300, 300), (250, 240, 200))  # navy ink on cream
    colour.paste((20, 30, 120), (50, 50), mask=ink)
    paths.append(tmp_path / f"{stem}-colour.png")
    colour.save(paths[-1])
    rgba = Image.new("RGBA", (280, 280), (0, 0, 0, 0))  # a canvas export: strokes on transparency
    rgba.paste((0, 0, 0, 255), (40, 40), mask=ink)
    paths.append(tmp_path / f"{stem}-canvas.png")
    rgba.save(paths[-1])
    return paths


def test_predict_reads_rendered_digits_of_any_size_position_colour_and_polarity(
    runner, mnist, mnist_model_path, tmp_path
):
    network = Network.load(mnist_model_path)
    probabilities = network.predict_proba(mnist.test_images[:200])
    confident = np.flatnonzero((probabilities.argmax(1) == mnist.test_labels[:200]) & (probabilities.max(1) > 0.99))[
        :30
    ]
    files, truth = [], []
    for i in confident:
        variants = render_variants(mnist.test_images[i], tmp_path, f"d{i}")
        files += variants
        truth += [int(mnist.test_labels[i])] * len(variants)
    result = invoke(runner, "predict", mnist_model_path, *files, "--json")
    assert result.exit_code == 0
    answers = json.loads(result.stdout)
    assert [a["file"] for a in answers] == [str(f) for f in files]
    assert all(len(a["probabilities"]) == 10 and abs(sum(a["probabilities"]) - 1) < 1e-4 for a in answers)
    correct = np.array([a["digit"] for a in answers]) == np.array(truth)
    assert correct.mean() >= 0.95, [f.name for f, ok in zip(files, correct) if not ok]


def test_predict_reports_bad_files_and_still_reads_the_others(runner, mnist, mnist_model_path, tmp_path):
    good = render_variants(mnist.test_images[0], tmp_path, "good")[0]
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    result = runner.invoke(
        main,
        [
            "predict",
            str(mnist_model_path),
            str(tmp_path / "notes.png"),
            str(good),
            str(tmp_path / "blank.png"),
            str(tmp_path / "missing.png"),
            "--json",
        ],
    )
    assert result.exit_code == 1
    answers = json.loads(result.stdout)
    assert [("error" in a) for a in answers] == [True, False, True, True]
    assert answers[1]["digit"] == int(mnist.test_labels[0])
    assert "notes.png" in answers[0]["error"] and "blank" in answers[2]["error"]


def test_predict_prints_digit_and_probability_per_file(runner, mnist, mnist_model_path, tmp_path):
    good = render_variants(mnist.test_images[0], tmp_path, "good")[2]
    result = invoke(runner, "predict", mnist_model_path, good)
    assert result.output.startswith(f"{good}: {int(mnist.test_labels[0])} (")


def test_cnn_trains_with_light_augmentation_unless_told_otherwise(runner, tmp_path):
    for extra, expected in (([], "light"), (["--augment", "none"], "none")):
        out = tmp_path / f"cnn-{expected}.npz"
        result = invoke(
            runner, "train", "--dataset", "digits", "--model", "cnn", "--epochs", "1", "--out", out, "--json", *extra
        )
        assert result.exit_code == 0
        network = Network.load(out)
        assert network.metadata["training"]["augment"] == expected
        assert network.describe().startswith("64-conv5x5:20-pool2-bn-conv5x5:40")


def test_augment_without_a_value_means_light(runner, tmp_path):
    result = invoke(
        runner, "train", "--dataset", "digits", "--epochs", "1", "--augment", "--out", tmp_path / "m.npz", "--json"
    )
    assert result.exit_code == 0
    assert Network.load(tmp_path / "m.npz").metadata["training"]["augment"] == "light"


def test_data_errors_become_one_clean_line_also_when_the_data_group_runs_alone(monkeypatch):
    from digitnet.cli.data import data
    from digitnet.errors import DataError

    def failing_fetch(*args, **kwargs):
        raise DataError("every source failed; put the files in a folder and pass --data-dir.")

    monkeypatch.setattr("digitnet.cli.data.fetch_dataset", failing_fetch)
    for group, args in ((data, ["fetch"]), (main, ["data", "fetch"])):
        result = CliRunner().invoke(group, args)
        assert result.exit_code == 1
        assert result.output.strip() == "Error: every source failed; put the files in a folder and pass --data-dir."


def test_class_names_from_a_model_file_cannot_restyle_the_terminal(runner, tmp_path):
    from digitnet.experiment import ExperimentConfig, run

    network = run(ExperimentConfig(dataset="digits", hidden=(8,), val_size=100, recipe={"epochs": 1})).network
    network.class_names = ["\x1b[31mred", "[bold red]loud[/]", *network.class_names[2:]]
    path = tmp_path / "odd-names.npz"
    network.save(path)
    result = invoke(runner, "evaluate", path, "--dataset", "digits")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "[bold red]loud[/]" in result.output and "[31mred" in result.output


def test_evaluating_on_another_dataset_than_the_models_says_so(runner, digits_model):
    from digitnet.nn import Network

    network = Network.load(digits_model[0])
    network.metadata["dataset"] = "fashion-mnist"
    path = digits_model[0].with_name("claims-fashion.npz")
    network.save(path)
    result = runner.invoke(main, ["evaluate", str(path), "--dataset", "digits"])
    assert result.exit_code == 0
    assert "trained on fashion-mnist, not digits" in result.stderr
