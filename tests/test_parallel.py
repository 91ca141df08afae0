"""Data-parallel steps: threads that share a batch give the whole batch's gradient."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import every_layer_cnn
from digitnet.data import load_dataset
from digitnet.experiment import ExperimentConfig, run
from digitnet.nn import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, Network, ReLU, SoftmaxCrossEntropy
from digitnet.nn.regularization import Dropout
from digitnet.parallel import DataParallel
from digitnet.threads import splits_batches
from digitnet.train import TrainConfig, train


def per_example_cnn(rng: np.random.Generator) -> Network:
    """A CNN whose layers treat every example on its own (no batch normalisation, no dropout)."""
    layers = [
        Conv2D(1, 3, 3, "same", rng=rng, dtype=np.float64),
        ReLU(),
        Conv2D(3, 4, 3, "valid", rng=rng, dtype=np.float64),
        MaxPool2D(2),
        Flatten(),
        Dense(4 * 3 * 3, 10, rng=rng, dtype=np.float64),
    ]
    return Network(layers, (1, 8, 8))


def whole_batch(network: Network, x: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """The loss and gradients of one plain forward and backward pass."""
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(network.forward(x, training=True), labels)
    network.backward(loss_fn.backward())
    return loss, {name: grad.copy() for name, _, grad in network.parameters()}


def shared_step(network: Network, workers: int, x: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """One forward and backward pass of ``x`` on ``workers`` threads, which are stopped afterwards."""
    parallel = DataParallel(network, workers)
    try:
        return parallel.forward_backward(x, labels)
    finally:
        parallel.close()


@pytest.mark.parametrize("n", [16, 7, 1], ids=["even", "odd", "fewer-examples-than-workers"])
def test_shares_on_two_threads_give_the_whole_batch_loss_and_gradient(rng, n):
    network = per_example_cnn(rng)
    x, labels = rng.standard_normal((n, 1, 8, 8)), rng.integers(0, 10, n)
    loss, gradients = whole_batch(network, x, labels)
    shared_loss, correct = shared_step(network, 2, x, labels)
    assert shared_loss == pytest.approx(loss, rel=1e-12)
    assert correct == int((network.forward(x).argmax(axis=1) == labels).sum())
    for name, _, grad in network.parameters():
        np.testing.assert_allclose(grad, gradients[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_batch_normalisation_takes_the_whole_batchs_statistics_across_the_shares(rng):
    network = every_layer_cnn(rng, dtype=np.float64)
    network.layers = [layer for layer in network.layers if not isinstance(layer, Dropout)]
    alone = network.replica()  # the same parameters, one thread
    x, labels = rng.standard_normal((10, 1, 8, 8)), rng.integers(0, 10, 10)
    loss, gradients = whole_batch(alone, x, labels)
    shared_loss, _ = shared_step(network, 3, x, labels)
    assert shared_loss == pytest.approx(loss, rel=1e-12)
    for name, _, grad in network.parameters():
        np.testing.assert_allclose(grad, gradients[name], rtol=1e-9, atol=1e-14, err_msg=name)
    norm, norm_alone = network.layers[1], alone.layers[1]
    assert isinstance(norm, BatchNorm) and norm.share_sums is None  # on its own again after close()
    for name, value in norm.buffers.items():
        np.testing.assert_allclose(value, norm_alone.buffers[name], rtol=1e-12)


def test_a_share_that_fails_stops_the_step_instead_of_leaving_the_others_waiting(rng):
    network = every_layer_cnn(rng)
    parallel = DataParallel(network, 2)

    def broken(x, training=False):
        raise MemoryError("out of memory in the second share")

    parallel.replicas[1].layers[0].forward = broken
    x, labels = rng.standard_normal((8, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 8)
    try:
        with pytest.raises(MemoryError, match="second share"):  # its error, not the broken barrier
            parallel.forward_backward(x, labels)
    finally:
        parallel.close()


def test_a_batch_with_fewer_examples_than_threads_runs_alone_and_the_next_batch_is_shared_again(rng):
    network = every_layer_cnn(rng, dtype=np.float64)
    network.layers = [layer for layer in network.layers if not isinstance(layer, Dropout)]
    alone = network.replica()
    parallel = DataParallel(network, 2)
    try:
        x, labels = rng.standard_normal((1, 1, 8, 8)), rng.integers(0, 10, 1)
        loss, _ = parallel.forward_backward(x, labels)  # one example: no share for the second thread
        assert loss == pytest.approx(whole_batch(alone, x, labels)[0], rel=1e-12)
        x, labels = rng.standard_normal((6, 1, 8, 8)), rng.integers(0, 10, 6)
        loss, _ = parallel.forward_backward(x, labels)
        assert loss == pytest.approx(whole_batch(alone, x, labels)[0], rel=1e-12)
    finally:
        parallel.close()


def test_replicas_read_the_networks_parameters_and_keep_their_own_gradients(rng):
    network = every_layer_cnn(rng)
    before = network.parameters()  # an optimiser built now holds these arrays
    twin = network.replica()
    for (name, value, grad), (_, now, now_grad), (_, twin_value, twin_grad) in zip(
        before, network.parameters(), twin.parameters()
    ):
        assert now is value and now_grad is grad, name  # the replica moved nothing of its network's
        assert twin_value is value, name  # one update serves both
        assert twin_grad is not grad and not np.shares_memory(twin_grad, grad), name
    for layer, twin_layer in zip(network.layers, twin.layers):
        for name, buffer in layer.buffers.items():
            assert twin_layer.buffers[name] is not buffer
        if isinstance(layer, Dropout):
            assert twin_layer.rng is not layer.rng  # a generator must not be shared by two threads


def test_each_epoch_seeds_the_extra_replicas_dropout_from_the_run_generator(rng):
    network = every_layer_cnn(rng)
    parallel = DataParallel(network, 3)
    try:
        parallel.new_epoch(np.random.default_rng(5))
        first = [replica.layers[-2].rng.random() for replica in parallel.replicas[1:]]
        parallel.new_epoch(np.random.default_rng(5))
        again = [replica.layers[-2].rng.random() for replica in parallel.replicas[1:]]
    finally:
        parallel.close()
    assert first == again and first[0] != first[1]


def test_a_non_finite_loss_in_any_share_is_reported_for_the_batch(rng):
    network = per_example_cnn(rng)
    x, labels = rng.standard_normal((8, 1, 8, 8)), rng.integers(0, 10, 8)
    x[6] = np.inf  # in the second share
    loss, _ = shared_step(network, 2, x, labels)
    assert not np.isfinite(loss)


def test_a_two_worker_training_run_repeats_bit_for_bit_and_learns():
    digits = load_dataset("digits")
    x = ((digits.train_images.reshape(-1, 1, 8, 8) / 255 - 0.3) / 0.4).astype(np.float32)

    def trained() -> Network:
        run_rng = np.random.default_rng(1)
        network = every_layer_cnn(run_rng, channels=8, hidden=32)
        config = TrainConfig(epochs=4, batch_size=32, optimizer="adam", lr=1e-2)
        train(network, x, digits.train_labels, config, run_rng, workers=2)
        return network

    first, second = trained(), trained()
    for name, value in first.state().items():
        assert value.tobytes() == second.state()[name].tobytes(), name
    assert (first.predict(x) == digits.train_labels).mean() > 0.9


def test_only_networks_with_convolutions_split_their_batches_between_threads(rng):
    assert splits_batches(every_layer_cnn(rng))
    assert not splits_batches(Network([Flatten(), Dense(64, 10, rng=rng)], (1, 8, 8)))


def test_a_cnn_experiment_on_two_threads_trains_on_shares_and_records_the_threads(monkeypatch):
    steps = []
    shared_step = DataParallel.forward_backward
    monkeypatch.setattr(DataParallel, "forward_backward", lambda self, *a: steps.append(1) or shared_step(self, *a))
    result = run(ExperimentConfig(dataset="digits", model="cnn", val_size=200, threads=2, recipe={"epochs": 4}))
    assert result.threads_used == 2 and result.network.metadata["training"]["threads"] == 2
    assert result.history.epochs[-1].val_accuracy > 0.8
    batches = -(-result.network.metadata["training"]["train_size"] // result.train_config.batch_size)
    assert len(steps) == result.train_config.epochs * batches  # every step ran on shares
    # afterwards the network's batch normalisation is its own again: it trains and predicts alone
    assert all(layer.share_sums is None for layer in result.network.layers if isinstance(layer, BatchNorm))
