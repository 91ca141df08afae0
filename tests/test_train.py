"""The training loop on real (small) data: learning, reproducibility, divergence, early stopping."""

from __future__ import annotations

import numpy as np
import pytest

from digitnet.data import load_dataset
from digitnet.errors import TrainingDiverged
from digitnet.metrics import accuracy
from digitnet.nn import build_mlp
from digitnet.train import Reporter, TrainConfig, pixel_statistics, split_validation, train


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 1,797 real handwritten 8x8 digits, shipped inside the package (offline)."""
    return load_dataset("digits")


def make_run(digits, seed=0, hidden=(32,)):
    rng = np.random.default_rng(seed)
    network = build_mlp(hidden, input_shape=(1, 8, 8), rng=rng, mean=0.3, std=0.4)
    train_index, val_index = split_validation(len(digits.train_labels), 200, rng)
    x = network.prepare(digits.train_images)
    y = digits.train_labels.astype(np.int64)
    return network, rng, x[train_index], y[train_index], x[val_index], y[val_index]


@pytest.fixture(scope="module")
def mnist_subset(mnist):
    """The first 6,000 real MNIST training images and the first 2,000 test images."""
    return (
        mnist.train_images[:6000],
        mnist.train_labels[:6000].astype(np.int64),
        mnist.test_images[:2000],
        mnist.test_labels[:2000],
    )


def test_training_on_a_real_mnist_subset_reaches_90_percent(mnist_subset):
    images, labels, test_images, test_labels = mnist_subset
    rng = np.random.default_rng(0)
    network = build_mlp((128,), rng=rng, **dict(zip(("mean", "std"), pixel_statistics(images))))
    x = network.prepare(images)
    history = train(network, x[:5500], labels[:5500], TrainConfig(epochs=8), rng, x_val=x[5500:], y_val=labels[5500:])
    assert accuracy(test_labels, network.predict(test_images)) >= 0.90
    losses = [record.loss for record in history.epochs]
    assert losses[-1] < losses[0] / 3
    assert history.epochs[-1].val_accuracy >= 0.90


def test_plain_sgd_as_in_the_original_notebook_also_learns(mnist_subset):
    images, labels, test_images, test_labels = mnist_subset
    rng = np.random.default_rng(0)
    network = build_mlp((128,), rng=rng, **dict(zip(("mean", "std"), pixel_statistics(images))))
    config = TrainConfig(epochs=5, batch_size=32, optimizer="sgd", lr=0.05, schedule="constant")
    train(network, network.prepare(images), labels, config, rng)
    assert accuracy(test_labels, network.predict(test_images)) >= 0.90


def test_real_8x8_digits_are_learned_too(digits):
    # The last 360 of scikit-learn's digits come from writers unseen in training: a hard split.
    network, rng, x, y, xv, yv = make_run(digits)
    train(network, x, y, TrainConfig(epochs=15, batch_size=32), rng, x_val=xv, y_val=yv)
    assert accuracy(digits.test_labels, network.predict(digits.test_images)) >= 0.85


def test_same_seed_gives_identical_trained_weights(digits):
    runs = []
    for _ in range(2):
        network, rng, x, y, xv, yv = make_run(digits, seed=3)
        train(network, x, y, TrainConfig(epochs=2, batch_size=64), rng)
        runs.append(network.state())
    assert all(runs[0][name].tobytes() == runs[1][name].tobytes() for name in runs[0])


def test_history_records_every_epoch_with_training_time(digits):
    network, rng, x, y, xv, yv = make_run(digits)
    events = []

    class Recorder(Reporter):
        def epoch_started(self, epoch, epochs, batches):
            events.append(("start", epoch, batches))

        def epoch_done(self, record, epochs):
            events.append(("done", record.epoch))

    history = train(network, x, y, TrainConfig(epochs=3, batch_size=100), rng, x_val=xv, y_val=yv, reporter=Recorder())
    assert [r.epoch for r in history.epochs] == [1, 2, 3]
    assert all(r.seconds > 0 and 0 <= r.train_accuracy <= 1 and 0 <= r.val_accuracy <= 1 for r in history.epochs)
    assert history.train_seconds == pytest.approx(sum(r.seconds for r in history.epochs))
    batches = -(-len(x) // 100)
    assert events == [
        ("start", 1, batches),
        ("done", 1),
        ("start", 2, batches),
        ("done", 2),
        ("start", 3, batches),
        ("done", 3),
    ]
    assert set(history.to_list()[0]) >= {"epoch", "seconds", "loss", "train_accuracy", "val_accuracy"}


def test_diverging_run_stops_with_advice_and_keeps_the_last_good_weights(digits):
    network, rng, x, y, xv, yv = make_run(digits)
    config = TrainConfig(epochs=2, batch_size=64, optimizer="sgd", lr=1.0, schedule="constant")
    train(network, x, y, config, rng)
    good = {name: value.copy() for name, value in network.state().items()}
    with pytest.raises(TrainingDiverged, match="Lower the learning rate") as error:
        train(network, x, y, TrainConfig(epochs=3, optimizer="sgd", lr=1e30, schedule="constant"), rng)
    assert "epoch 1" in str(error.value)
    assert all(np.array_equal(good[name], value) for name, value in network.state().items())


def test_early_stopping_restores_the_best_epoch(digits):
    network, rng, x, y, xv, yv = make_run(digits)
    # A constant, too-high rate makes validation accuracy wander, so patience 1 ends the run early.
    config = TrainConfig(epochs=40, batch_size=16, optimizer="sgd", lr=0.5, schedule="constant", patience=1)
    history = train(network, x, y, config, rng, x_val=xv, y_val=yv)
    assert history.stopped_early and len(history.epochs) < 40
    best = max(record.val_accuracy for record in history.epochs)
    assert history.epochs[history.best_epoch - 1].val_accuracy == best
    assert accuracy(yv, network.forward(xv).argmax(axis=1)) == best


def test_validation_split_is_disjoint_and_complete(rng):
    train_index, val_index = split_validation(100, 20, rng)
    assert len(val_index) == 20 and len(train_index) == 80
    assert set(train_index).isdisjoint(val_index) and set(train_index) | set(val_index) == set(range(100))
    with pytest.raises(ValueError):
        split_validation(10, 10, rng)


def test_pixel_statistics_match_numpy_on_the_unit_scale(rng):
    images = rng.integers(0, 256, (1000, 5, 5), dtype=np.uint8)
    mean, std = pixel_statistics(images, chunk=300)
    assert mean == pytest.approx(images.mean() / 255, rel=1e-9)
    assert std == pytest.approx(images.std() / 255, rel=1e-9)
