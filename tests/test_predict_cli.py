"""``digitnet predict``: every file gets its own answer, and nothing a file or model holds can
hang the command, break its JSON or reach the terminal as control codes."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw
from rich.text import Text

import digitnet.cli.predict as predict_module
from digitnet.cli import main
from digitnet.nn import build_mlp


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """An untrained network: these tests are about the command's plumbing, not its answers."""
    network = build_mlp((16,), rng=np.random.default_rng(0), mean=0.13, std=0.31, metadata={"dataset": "mnist"})
    path = tmp_path_factory.mktemp("predict-cli") / "model.npz"
    network.save(path)
    return path


@pytest.fixture
def seven(tmp_path):
    """A 7 drawn dark on white paper, saved as a PNG."""
    image = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(image).line([(30, 25), (90, 25), (50, 100)], fill=0, width=10)
    path = tmp_path / "seven.png"
    image.save(path)
    return path


def invoke(*args, timeout: float = 60.0):
    """Run ``digitnet`` with ``args``; fail (instead of hanging the test run) after ``timeout`` s."""
    outcome = {}

    def run():
        outcome["result"] = CliRunner().invoke(main, [str(arg) for arg in args])

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"digitnet {' '.join(map(str, args))} hung"
    return outcome["result"]


def test_a_folder_among_the_images_is_one_failed_file_and_the_others_are_still_read(model_path, seven, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = invoke("predict", model_path, folder, seven, "--json")
    assert result.exit_code == 1
    answers = json.loads(result.stdout)
    assert [answer["file"] for answer in answers] == [str(folder), str(seven)]
    assert "directory" in answers[0]["error"] and set(answers[0]) == {"file", "error"}
    assert "digit" in answers[1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_named_pipe_is_reported_as_not_a_regular_file_instead_of_hanging(model_path, seven, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = invoke("predict", model_path, fifo, seven, "--json", timeout=30)
    assert result.exit_code == 1
    answers = json.loads(result.stdout)
    assert "not a regular file" in answers[0]["error"]
    assert "digit" in answers[1]


def test_a_refused_image_gets_its_reason_in_json_and_the_exit_status_is_1(model_path, seven, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (80, 80), 255).save(blank)
    two = tmp_path / "two-digits.png"
    image = Image.new("L", (260, 120), 255)
    pen = ImageDraw.Draw(image)
    pen.line([(30, 25), (90, 25), (50, 100)], fill=0, width=10)  # a 7 ...
    pen.line([(190, 15), (190, 105)], fill=0, width=10)  # ... and a 1 beside it
    image.save(two)
    result = invoke("predict", model_path, seven, blank, two, "--json")
    assert result.exit_code == 1
    answers = json.loads(result.stdout)
    assert "digit" in answers[0]
    assert answers[1] == {"file": str(blank), "error": answers[1]["error"]}
    assert "blank" in answers[1]["error"]
    assert "side by side" in answers[2]["error"] and "crop it to one digit" in answers[2]["error"]


def test_every_file_readable_means_exit_status_0(model_path, seven):
    result = invoke("predict", model_path, seven, seven)
    assert result.exit_code == 0, result.output


def test_failed_files_are_reported_on_stderr_without_json(model_path, seven, tmp_path):
    result = invoke("predict", model_path, tmp_path / "missing.png", seven)
    assert result.exit_code == 1
    assert "missing.png" in result.stderr and "does not exist" in result.stderr
    assert result.stdout.startswith(f"{seven}: ")


class NaNNetwork:
    """A stand-in model whose probabilities are NaN, as a damaged weight file would give."""

    input_shape = (1, 28, 28)
    class_names = tuple("0123456789")

    def predict_proba(self, x):
        return np.full((len(x), 10), np.nan)


def test_nan_probabilities_never_reach_the_json_output(monkeypatch, seven):
    monkeypatch.setattr(predict_module, "model_or_reader", lambda path: (NaNNetwork(), str(path)))
    result = invoke("predict", "model.npz", seven, "--json")
    assert result.exit_code == 1
    assert "NaN" not in result.stdout.replace("NaN or infinite", "")
    answers = json.loads(result.stdout)  # strict JSON: NaN would not parse as a number here
    assert "NaN or infinite probabilities" in answers[0]["error"]


def test_class_names_from_the_model_reach_the_terminal_without_markup_or_control_codes(model_path, seven, tmp_path):
    names = [f"[bold red]{digit}[/bold red]\x1b[2J\x07" for digit in range(10)]
    network = build_mlp(
        (16,), rng=np.random.default_rng(0), mean=0.13, std=0.31, class_names=names, metadata={"dataset": "mnist"}
    )
    path = tmp_path / "odd-names.npz"
    network.save(path)
    result = invoke("predict", path, seven)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "[bold red]" in result.stdout  # shown literally, not interpreted as markup


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        ("seven", "seven"),
        ("naïve 七", "naïve 七"),
        ("sept\u200e\x00\x1b[0m", "sept[0m"),
        ("[link=file:///etc]x[/link]", "[link=file:///etc]x[/link]"),
    ],
)
def test_printed_text_keeps_ordinary_names_drops_control_characters_and_is_never_markup(name, printed):
    from digitnet.cli.common import printable

    assert Text.from_markup(printable(name)).plain == printed


def test_without_a_model_file_the_shipped_reader_reads_the_images(seven):
    result = invoke("predict", seven, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)[0]
    assert answer["file"] == str(seven) and answer["digit"] == 7
