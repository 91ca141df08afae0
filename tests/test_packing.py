"""A network's parameters in one flat array and its gradients in another (digitnet.nn.packing)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from digitnet.nn import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, Network, ReLU, build_mlp
from digitnet.nn.architectures import build_cnn
from digitnet.nn.packing import joined, pack, pieces
from digitnet.optim import make_optimizer
from digitnet.train import TrainConfig, train


def small_cnn(rng) -> Network:
    layers = [Conv2D(1, 3, 3, rng=rng), BatchNorm(3), MaxPool2D(2), ReLU(), Flatten(), Dense(48, 4, rng=rng)]
    return Network(layers, (1, 8, 8))


def flat_parameters(network: Network) -> tuple[np.ndarray | None, np.ndarray | None]:
    named = network.parameters()
    return joined([p for _, p, _ in named]), joined([g for _, _, g in named])


def is_packed(network: Network) -> bool:
    return all(flat is not None for flat in flat_parameters(network))


def test_packing_moves_the_values_into_one_array_for_parameters_and_one_for_gradients(rng):
    network = small_cnn(rng)
    for _, _, grad in network.parameters():
        grad[...] = rng.standard_normal(grad.shape)
    before = [(p.copy(), g.copy()) for _, p, g in network.parameters()]
    assert not is_packed(network)  # building a network packs nothing
    network.pack_parameters()
    flat_params, flat_grads = flat_parameters(network)
    assert flat_params is not None and flat_grads is not None and flat_params is not flat_grads
    assert flat_params.size == network.num_parameters()
    for (_, p, g), (p_before, g_before) in zip(network.parameters(), before):
        np.testing.assert_array_equal(p, p_before)
        np.testing.assert_array_equal(g, g_before)
    kept = network.parameters()
    network.pack_parameters()  # packed already: the same arrays stay
    assert all(p is q and g is h for (_, p, g), (_, q, h) in zip(kept, network.parameters()))


@pytest.mark.parametrize("build", [build_mlp, build_cnn], ids=["mlp", "cnn"])
def test_training_packs_the_parameters_and_its_optimiser_takes_them_as_one_group(build, rng, monkeypatch):
    import digitnet.train

    network = build(rng=rng)
    built = []

    def recording_make_optimizer(*args, **kwargs):
        built.append(make_optimizer(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(digitnet.train, "make_optimizer", recording_make_optimizer)
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    train(network, x, rng.integers(0, 10, 8), TrainConfig(epochs=1, batch_size=8), rng)
    assert is_packed(network)
    assert len(built) == 1 and len(built[0].groups) == 1
    assert built[0].groups[0][0].size == network.num_parameters()


def changed_network(rng) -> Network:
    """Trained once (so packed), then given a new last layer: its arrays are no longer one array."""
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
    """A network whose parameters are not packed when training starts (a new layer, a deep copy,
    an unpickled one), trained on shares (whose replicas share its parameter dicts) or not: the
    optimiser must update the arrays the layers use."""
    network = prepare(rng)
    before = [p.copy() for _, p, _ in network.parameters()]
    x, labels = rng.standard_normal((16, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 16)
    train(network, x, labels, TrainConfig(epochs=1, batch_size=16, lr=0.1), rng, workers=workers)
    for (name, p, _), old in zip(network.parameters(), before):
        assert not np.array_equal(p, old), name


def test_a_replica_packs_nothing_and_moves_none_of_its_networks_arrays(rng):
    network = small_cnn(rng)  # not packed: replica() must not pack the dicts it shares
    before = network.parameters()
    replica = network.replica()
    assert all(p is q and g is h for (_, p, g), (_, q, h) in zip(before, network.parameters()))
    assert not is_packed(replica)


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
    assert joined([pickle.loads(pickle.dumps(np.zeros(3)))]) is None  # its base is bytes


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


def test_an_optimiser_refuses_a_gradient_of_another_shape():
    with pytest.raises(ValueError, match="shape"):
        make_optimizer("adam", [(np.zeros((2, 3)), np.zeros((3, 2)))], 1e-3)
