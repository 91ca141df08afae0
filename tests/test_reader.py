"""The reader model that ships with digitnet: present, unaltered, and as accurate as recorded."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from digitnet import reader
from digitnet.augment import STRENGTHS
from digitnet.cli.common import model_or_reader
from digitnet.errors import ModelFileError
from digitnet.nn.architectures import build_network
from digitnet.recipes import PRESETS, resolve_recipe


def test_the_shipped_reader_is_the_released_file():
    path = reader.reader_path()
    assert path.is_file(), "src/digitnet/models/reader.npz is missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == reader.READER_SHA256


def test_the_reader_is_the_cnn_of_the_reader_recipe_as_the_code_defines_it_now():
    """A change to the reader's network, recipe or augmentation must come with a retrained reader file."""
    network = reader.load_reader()
    training, preset = network.metadata["training"], PRESETS["reader"]
    assert network.metadata["model"] == preset["model"] and training["augment"] == preset["augment"]
    fresh = build_network(preset["model"], input_shape=(1, 28, 28), num_classes=10, rng=np.random.default_rng(0))
    assert [layer.config() for layer in network.layers] == [layer.config() for layer in fresh.layers]
    assert training["seed"] == 0 and network.metadata["dataset"] == "mnist"
    assert training["augment_strength"] == STRENGTHS["reader"].to_dict()
    recipe = resolve_recipe(preset["model"], preset["augment"]).to_dict()
    assert {key: training[key] for key in recipe} == recipe


def test_an_altered_reader_file_is_refused_with_advice(tmp_path, monkeypatch):
    altered = tmp_path / "reader.npz"
    shutil.copy(reader.reader_path(), altered)
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered.write_bytes(bytes(data))
    monkeypatch.setattr(reader, "reader_path", lambda: altered)
    with pytest.raises(ModelFileError, match="not the released file.*reinstall digitnet"):
        reader.load_reader()


def test_a_missing_reader_file_is_refused_with_advice(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "reader_path", lambda: tmp_path / "gone.npz")
    with pytest.raises(ModelFileError, match="missing.*reinstall digitnet"):
        reader.load_reader()


def test_commands_without_a_model_use_the_reader():
    network, name = model_or_reader(None)
    assert "reader" in name and network.metadata["training"]["augment"] == "reader"


def test_the_reader_scores_its_recorded_accuracy_on_the_mnist_test_set(mnist):
    network = reader.load_reader()
    accuracy = float(np.mean(network.predict(mnist.test_images) == mnist.test_labels))
    assert accuracy == network.metadata["metrics"]["test_accuracy"]
    assert accuracy >= 0.994  # the floor


def test_the_reader_reads_digits_drawn_in_the_styles_people_write_them(tmp_path):
    """benchmarks/drawings.py: flagged and footed 1s, crossed 7s, open 4s... fine pen and marker."""
    import importlib.util
    from pathlib import Path

    from digitnet.preprocess import preprocess_file

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "drawings.py"
    spec = importlib.util.spec_from_file_location("drawings", script)
    drawings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drawings)
    files = drawings.write_drawings(tmp_path)
    assert len(files) == 96
    images = np.stack([preprocess_file(path) for path in files])
    labels = np.array([int(path.name[0]) for path in files])
    predicted = reader.load_reader().predict(images)
    assert np.mean(predicted == labels) >= 0.97
    assert (predicted[labels == 1] == 1).all(), "a 1 in some writer's style is misread"


def test_serve_without_a_model_serves_the_reader(tmp_path):
    import subprocess
    import sys

    # An empty folder: no model.npz to fall back on.
    server = subprocess.Popen(
        [sys.executable, "-m", "digitnet", "serve", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first_line = server.stdout.readline()
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert first_line.startswith("Serving the reader model that ships with digitnet at http://127.0.0.1:")
