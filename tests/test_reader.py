"""The reader model that ships with digitnet: present, unaltered, and as accurate as recorded."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from digitnet import reader
from digitnet.cli.common import model_or_reader
from digitnet.errors import ModelFileError


def test_the_shipped_reader_is_the_released_file():
    path = reader.reader_path()
    assert path.is_file(), "src/digitnet/models/reader.npz is missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == reader.READER_SHA256


def test_the_reader_is_the_cnn_of_the_reader_recipe():
    network = reader.load_reader()
    assert network.metadata["model"] == "cnn" and network.metadata["training"]["augment"] == "reader"
    assert network.metadata["training"]["seed"] == 0 and network.metadata["dataset"] == "mnist"


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
    assert accuracy >= 0.994


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
