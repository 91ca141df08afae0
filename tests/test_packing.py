"""A network's parameters in one flat array and its gradients in another (digitnet.nn.packing)."""

from __future__ import annotations

import numpy as np
import pytest

from digitnet.nn import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, Network, ReLU, build_mlp
from digitnet.nn.architectures import build_cnn
from digitnet.nn.packing import joined, pack, pieces
from digitnet.optim import make_optimizer


def small_cnn_layers(rng):
    return [
        Conv2D(1, 3, 3, rng=rng),
        BatchNorm(3),
        MaxPool2D(2),
        ReLU(),
        Flatten(),
        Dense(27, 4, rng=rng),
    ]


def test_a_network_keeps_its_parameters_in_one_array_and_its_gradients_in_another(rng):
    layers = small_cnn_layers(rng)
    for layer in layers:
        for grad in layer.grads.values():
            grad[...] = rng.standard_normal(grad.shape)
    before = {
        (id(layer), kind, name): value.copy()
        for layer in layers
        for kind in ("params", "grads")
        for name, value in getattr(layer, kind).items()
    }
    network = Network(layers, (1, 8, 8))
    named = network.parameters()
    flat_params, flat_grads = joined([p for _, p, _ in named]), joined([g for _, _, g in named])
    assert flat_params is not None and flat_grads is not None and flat_params is not flat_grads
    assert flat_params.size == network.num_parameters()
    for layer in layers:  # the values did not change, only where they live
        for name in layer.params:
            np.testing.assert_array_equal(layer.params[name], before[id(layer), "params", name])
            np.testing.assert_array_equal(layer.grads[name], before[id(layer), "grads", name])
            assert np.shares_memory(layer.params[name], flat_params)
            assert np.shares_memory(layer.grads[name], flat_grads)


@pytest.mark.parametrize("build", [build_mlp, build_cnn], ids=["mlp", "cnn"])
def test_the_optimiser_of_a_built_network_updates_all_its_parameters_as_one_group(build, rng):
    network = build(rng=rng)
    optimiser = make_optimizer("adam", [(p, g) for _, p, g in network.parameters()], 1e-3)
    assert len(optimiser.groups) == 1
    assert optimiser.groups[0][0].size == network.num_parameters()


def test_a_replica_shares_the_packed_parameters_and_packs_its_own_gradients(rng):
    network = Network(small_cnn_layers(rng), (1, 8, 8))
    replica = network.replica()
    mine, its = network.parameters(), replica.parameters()
    for (_, p, g), (_, p_replica, g_replica) in zip(mine, its):
        assert p_replica is p  # one set of weights for both, updated once
        assert not np.shares_memory(g_replica, g)
    assert joined([g for _, _, g in its]) is not None
    assert joined([p for _, p, _ in mine]) is not None  # the replica did not move the shared weights


def test_joined_finds_only_consecutive_pieces_of_one_whole_array():
    flat = np.arange(10.0)
    a, b, c = flat[:4].reshape(2, 2), flat[4:7], flat[7:]
    assert joined([a, b, c]) is flat
    assert joined([]) is None
    assert joined([b, a, c]) is None  # out of order
    assert joined([a, c]) is None  # a gap
    assert joined([a, b]) is None  # not the whole array
    assert joined([flat[::2], flat[1::2]]) is None  # not contiguous
    assert joined([a, b, c.copy()]) is None  # another array
    assert joined([np.zeros(3), np.zeros(2)]) is None


def test_pack_moves_arrays_into_views_and_leaves_packed_or_mixed_ones_alone():
    first = {"W": np.ones((2, 3)), "b": np.full(3, 2.0)}
    second = {"W": np.full((3, 1), 3.0)}
    pack([first, second])
    flat = joined([first["W"], first["b"], second["W"]])
    assert flat is not None
    np.testing.assert_array_equal(flat, [1.0] * 6 + [2.0] * 3 + [3.0] * 3)
    kept = dict(first)
    pack([first, second])  # already packed: the same arrays stay
    assert all(first[name] is kept[name] for name in first)
    mixed = {"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float64)}
    arrays = dict(mixed)
    pack([mixed])
    assert all(mixed[name] is arrays[name] for name in mixed)


def test_pieces_are_views_shaped_like_the_given_arrays():
    flat = np.arange(7.0)
    views = pieces(flat, [np.empty((2, 2)), np.empty(3)])
    assert [view.shape for view in views] == [(2, 2), (3,)]
    views[1][...] = -1
    np.testing.assert_array_equal(flat, [0, 1, 2, 3, -1, -1, -1])
