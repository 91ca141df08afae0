"""``digitnet train`` refuses what would fail, before training starts or before it saves a failure."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from digitnet.cli import main
from digitnet.recipes import PRESETS

FAST = ["--dataset", "digits", "--hidden", "16", "--epochs", "8", "--batch-size", "32", "--val-size", "100"]


def train(*args):
    return CliRunner().invoke(main, ["train", *FAST, *map(str, args)])


def assert_clean_refusal(result, *phrases):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


@pytest.mark.parametrize(
    "option, value, phrase",
    [
        ("--lr", "nan", "not a finite number"),
        ("--lr", "inf", "not a finite number"),
        ("--lr", "0", "not in (0"),
        ("--weight-decay", "nan", "not a finite number"),
        ("--label-smoothing", "nan", "not a finite number"),
        ("--label-smoothing", "1", "not in [0, 1)"),
        ("--seed", "-1", "not in the range"),
        ("--hidden", "100000000", "at most 65536 units"),
        ("--hidden", "12,x", "comma-separated"),
        ("--threads", "0", "neither 'auto' nor a positive whole number"),
        ("--threads", "many", "neither 'auto' nor a positive whole number"),
    ],
)
def test_impossible_settings_are_refused_by_the_parser(option, value, phrase):
    assert_clean_refusal(train(option, value), option, phrase)


def test_an_output_in_a_missing_folder_is_refused_before_training(tmp_path):
    result = train("--out", tmp_path / "missing" / "model.npz")
    assert_clean_refusal(result, "--out", "does not exist")
    assert "epoch" not in result.output


def test_an_output_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_clean_refusal(train("--out", tmp_path / "file" / "model.npz"), "is a file, not a folder")


def test_an_output_that_is_a_folder_is_refused(tmp_path):
    assert_clean_refusal(train("--out", tmp_path), "--out")


def test_an_empty_output_name_is_refused():
    assert_clean_refusal(train("--out", ""), "--out")


def test_plots_under_a_file_are_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    result = train("--out", tmp_path / "m.npz", "--plots", tmp_path / "file" / "plots")
    assert_clean_refusal(result, "--plots", "is a file, not a folder")
    assert not (tmp_path / "m.npz").exists()


def test_plots_go_into_a_folder_that_is_created(tmp_path):
    result = train("--out", tmp_path / "m.npz", "--plots", tmp_path / "new" / "plots")
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "new" / "plots").glob("*.png"))


def test_a_run_that_ends_at_chance_level_fails_and_keeps_the_existing_model(tmp_path):
    out = tmp_path / "model.npz"
    assert train("--out", out).exit_code == 0
    good = out.read_bytes()
    result = train("--out", out, "--lr", "1e6")
    assert_clean_refusal(result, "chance level", "--keep-failed")
    assert out.read_bytes() == good


def test_keep_failed_saves_a_chance_level_run_when_asked(tmp_path):
    out = tmp_path / "model.npz"
    result = train("--out", out, "--lr", "1e6", "--keep-failed", "--json")
    assert result.exit_code == 0, result.output
    assert out.exists() and json.loads(result.stdout)["test_accuracy"] < 0.3


def test_the_reader_recipe_trains_a_cnn_on_pen_and_scanner_distortions(tmp_path):
    from digitnet.nn import Network

    out = tmp_path / "reader.npz"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--recipe",
            "reader",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--val-size",
            "100",
            "--out",
            str(out),
            "--keep-failed",
        ],
    )
    assert result.exit_code == 0, result.output
    training = Network.load(out).metadata["training"]
    assert Network.load(out).metadata["model"] == PRESETS["reader"]["model"] and training["augment"] == "reader"
    assert training["augment_strength"]["low_res"] == [7, 14]


def test_options_given_with_a_recipe_override_it(tmp_path):
    from digitnet.nn import Network

    out = tmp_path / "m.npz"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--recipe",
            "reader",
            "--model",
            "mlp",
            "--augment",
            "none",
            *FAST[:-2],
            "--val-size",
            "100",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metadata = Network.load(out).metadata
    assert metadata["model"] == "mlp" and metadata["training"]["augment"] == "none"
