"""The optimiser's flat arrays: they stay its own, and the network's arrays stay the network's."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from digitnet.nn import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, Network, ReLU, build_mlp
from digitnet.nn.architectures import build_cnn
from digitnet.optim import make_optimizer
from digitnet.train import TrainConfig, train


def small_cnn(rng) -> Network:
    layers = [Conv2D(1, 3, 3, rng=rng), BatchNorm(3), MaxPool2D(2), ReLU(), Flatten(), Dense(48, 4, rng=rng)]
    return Network(layers, (1, 8, 8))


@pytest.mark.parametrize("build", [build_mlp, build_cnn], ids=["mlp", "cnn"])
@pytest.mark.parametrize("workers", [1, 2])
def test_training_keeps_the_layers_own_arrays_and_shares_no_memory_with_the_optimiser(build, workers, rng):
    """The optimiser's running averages and scratch arrays are flat arrays of its own; the layers'
    parameters and gradients stay the arrays they were built with (nothing in the network is
    rearranged for the optimiser's sake, so a replica, a copy or a changed layer cannot fall out of
    step with it)."""
    import digitnet.train

    network = build(rng=rng)
    before = network.parameters()
    built = []

    def recording_make_optimizer(*args, **kwargs):
        built.append(make_optimizer(*args, **kwargs))
        return built[-1]

    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digitnet.train, "make_optimizer", recording_make_optimizer)
        config = TrainConfig(epochs=1, batch_size=8, optimizer="adam")
        train(network, x, rng.integers(0, 10, 8), config, rng, workers=workers)
    (optimiser,) = built
    for (name, p, g), (_, p_now, g_now) in zip(before, network.parameters()):
        assert p_now is p and g_now is g, name
        for own in (optimiser.work, optimiser.m_flat, optimiser.s_flat):
            assert not np.shares_memory(own, p) and not np.shares_memory(own, g), name
    assert optimiser.m_flat.size == network.num_parameters()


def changed_network(rng) -> Network:
    """Trained once, then given a new last layer."""
    network = small_cnn(rng)
    x, labels = rng.standard_normal((4, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 4)
    train(network, x, labels, TrainConfig(epochs=1, batch_size=4), rng)
    network.layers[-1] = Dense(48, 4, rng=rng)
    return network


def deep_copied_network(rng) -> Network:
    return copy.deepcopy(small_cnn(rng))


def unpickled_network(rng) -> Network:
    return pickle.loads(pickle.dumps(small_cnn(rng)))


@pytest.mark.parametrize("prepare", [changed_network, deep_copied_network, unpickled_network])
@pytest.mark.parametrize("workers", [1, 2])
def test_training_updates_every_parameter_however_the_network_came_to_be(prepare, workers, rng):
    """A network with a new layer, a deep copy or an unpickled one, trained on shares (whose
    replicas share its parameter dicts) or not: the optimiser must update the arrays the layers use."""
    network = prepare(rng)
    before = [p.copy() for _, p, _ in network.parameters()]
    x, labels = rng.standard_normal((16, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 16)
    train(network, x, labels, TrainConfig(epochs=1, batch_size=16, lr=0.1), rng, workers=workers)
    for (name, p, _), old in zip(network.parameters(), before):
        assert not np.array_equal(p, old), name


def test_an_optimiser_refuses_a_gradient_of_another_shape_or_parameters_of_two_dtypes():
    with pytest.raises(ValueError, match="shape"):
        make_optimizer("adam", [(np.zeros((2, 3)), np.zeros((3, 2)))], 1e-3)
    mixed = [(np.zeros(2, np.float32), np.zeros(2, np.float32)), (np.zeros(2), np.zeros(2))]
    with pytest.raises(ValueError, match="dtype"):
        make_optimizer("adam", mixed, 1e-3)
