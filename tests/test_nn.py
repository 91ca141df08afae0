"""The hand-written network: gradients, numerical stability, initialisation, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import check_network_gradients, numerical_gradient, relative_error
from digitnet.nn import Dense, Flatten, ReLU, SoftmaxCrossEntropy, build_mlp, log_softmax, one_hot, softmax
from digitnet.nn.init import he_normal


def check_layer_gradients(layer, x, rng):
    """Compare a layer's backward pass with central differences of L = sum(forward(x) * r)."""
    out = layer.forward(x, training=True)
    weights = rng.standard_normal(out.shape)
    layer.forward(x, training=True)
    grad_x = layer.backward(weights.copy())

    def loss():
        return float((layer.forward(x, training=True) * weights).sum())

    assert relative_error(grad_x, numerical_gradient(loss, x)) < 1e-6
    for name, param in layer.params.items():
        layer.forward(x, training=True)
        layer.backward(weights.copy())
        analytic = layer.grads[name].copy()
        assert relative_error(analytic, numerical_gradient(loss, param)) < 1e-6, name


def test_dense_gradients_match_finite_differences(rng):
    layer = Dense(7, 5, rng=rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(5)
    check_layer_gradients(layer, rng.standard_normal((4, 7)), rng)


def test_relu_gradient_matches_finite_differences_away_from_zero(rng):
    x = rng.standard_normal((6, 5))
    x[np.abs(x) < 1e-3] = 0.5  # the kink at 0 has no derivative; keep samples away from it
    check_layer_gradients(ReLU(), x, rng)


def test_flatten_gradient_restores_the_input_shape(rng):
    check_layer_gradients(Flatten(), rng.standard_normal((3, 1, 4, 4)), rng)


def test_flatten_gradient_comes_back_in_the_input_memory_layout(rng):
    """After a convolution the images are batch-last in memory; the gradient handed back must be
    too (same values), so that the layers before it run on contiguous arrays."""
    batch_last = np.ascontiguousarray(rng.standard_normal((4, 3, 5, 5)).transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    flatten = Flatten()
    out = flatten.forward(batch_last, training=True)
    grad_out = rng.standard_normal(out.shape)
    grad = flatten.backward(grad_out)
    np.testing.assert_array_equal(grad, grad_out.reshape(batch_last.shape))
    assert grad.transpose(1, 2, 3, 0).flags.c_contiguous  # batch-last, like the input
    plain = rng.standard_normal((4, 3, 5, 5))  # an ordinary input: no copy at all
    flatten.forward(plain, training=True)
    assert np.shares_memory(flatten.backward(grad_out), grad_out)


def test_loss_gradient_is_p_minus_y_over_n(rng):
    loss = SoftmaxCrossEntropy()
    logits = rng.standard_normal((5, 10))
    labels = rng.integers(0, 10, 5)
    loss.forward(logits, labels)
    expected = (softmax(logits) - one_hot(labels, 10, np.float64)) / 5
    np.testing.assert_allclose(loss.backward(), expected, rtol=1e-12)
    numeric = numerical_gradient(lambda: SoftmaxCrossEntropy().forward(logits, labels), logits)
    assert relative_error(loss.backward(), numeric) < 1e-6


def test_label_smoothing_gradient_matches_finite_differences(rng):
    loss = SoftmaxCrossEntropy(label_smoothing=0.1)
    logits, labels = rng.standard_normal((4, 10)), rng.integers(0, 10, 4)
    loss.forward(logits, labels)
    numeric = numerical_gradient(lambda: SoftmaxCrossEntropy(0.1).forward(logits, labels), logits)
    assert relative_error(loss.backward(), numeric) < 1e-6


@pytest.mark.parametrize("hidden", [(16,), (12, 8)], ids=["one hidden layer", "two hidden layers"])
def test_whole_network_gradients_match_finite_differences(hidden, rng):
    network = build_mlp(hidden, input_shape=(1, 4, 4), num_classes=3, rng=rng, dtype=np.float64)
    for _, param, _ in network.parameters():
        param += 0.01 * rng.standard_normal(param.shape)  # non-zero biases too
    x, labels = rng.standard_normal((5, 1, 4, 4)), rng.integers(0, 3, 5)
    check_network_gradients(network, x, labels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_loss_stay_finite_for_extreme_logits(dtype):
    logits = np.array([[1e4, 0, -1e4], [-1e4, -1e4, -1e4], [1e4, -1e4, 0]], dtype=dtype)
    labels = np.array([0, 1, 1])
    probabilities = softmax(logits)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-6)
    assert probabilities[0, 0] == 1 and probabilities[2, 0] == 1
    assert np.isfinite(log_softmax(logits)).all()
    loss = SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)
    # Row 0 is right with certainty (loss 0), row 1 is uniform (log 3), row 2 is certainly wrong: a
    # large but finite loss, not inf and not NaN.
    assert np.isfinite(value) and value == pytest.approx((np.log(3) + 2e4) / 3, rel=1e-5)
    assert np.isfinite(loss.backward()).all()


def test_confident_correct_prediction_has_zero_loss_not_nan():
    assert SoftmaxCrossEntropy().forward(np.array([[1e4, 0.0]]), np.array([0])) == 0.0


def test_he_initialisation_has_variance_two_over_fan_in(rng):
    weights = he_normal(400, (400, 300), rng)
    assert weights.dtype == np.float32
    assert abs(weights.var() - 2 / 400) < 0.05 * 2 / 400
    assert abs(weights.mean()) < 1e-3


def test_same_seed_gives_bit_identical_weights():
    a = build_mlp((32,), rng=np.random.default_rng(7))
    b = build_mlp((32,), rng=np.random.default_rng(7))
    c = build_mlp((32,), rng=np.random.default_rng(8))
    for (_, wa, _), (_, wb, _), (_, wc, _) in zip(a.parameters(), b.parameters(), c.parameters()):
        assert wa.tobytes() == wb.tobytes()
        assert wa.shape == wc.shape and (wc.tobytes() != wa.tobytes() or not wa.any())


def test_seed_network_is_784_128_10_with_relu():
    network = build_mlp(rng=np.random.default_rng(0))
    assert network.describe() == "784-128-10"
    assert [type(layer).__name__ for layer in network.layers] == ["Flatten", "Dense", "ReLU", "Dense"]
    assert network.num_parameters() == 784 * 128 + 128 + 128 * 10 + 10
    assert network.dtype == np.float32


def test_first_dense_layer_skips_the_unneeded_input_gradient(rng):
    network = build_mlp((8,), input_shape=(1, 3, 3), num_classes=2, rng=rng)
    first, second = network.layers[1], network.layers[3]
    assert not first.needs_input_grad and second.needs_input_grad
    network.forward(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), training=True)
    assert first.backward(np.ones((2, 8), np.float32)) is None


def test_float64_networks_compute_in_float64(rng):
    network = build_mlp((8,), input_shape=(1, 3, 3), num_classes=2, rng=rng, dtype=np.float64)
    assert network.forward(network.prepare(rng.random((2, 3, 3)))).dtype == np.float64


def _cnn_with_every_layer_kind(rng):
    from digitnet.nn import BatchNorm, Conv2D, Dropout, MaxPool2D, Network

    layers = [
        Conv2D(1, 3, 3, rng=rng, dtype=np.float64),
        BatchNorm(3, dtype=np.float64),
        MaxPool2D(2),
        ReLU(),
        Flatten(),
        Dense(27, 6, rng=rng, dtype=np.float64),
        ReLU(),
        Dropout(0.3, rng=rng),
        Dense(6, 4, rng=rng, dtype=np.float64),
    ]
    return Network(layers, (1, 6, 6))


def test_inference_stores_nothing_in_any_layer(rng):
    network = _cnn_with_every_layer_kind(rng)
    before = {id(layer): dict(vars(layer)) for layer in network.layers}
    network.predict_proba(rng.random((5, 6, 6)))
    for layer in network.layers:
        after = vars(layer)
        assert after.keys() == before[id(layer)].keys(), type(layer).__name__
        assert all(after[key] is value for key, value in before[id(layer)].items()), type(layer).__name__


def test_a_prediction_between_forward_and_backward_does_not_change_the_gradients(rng):
    """The web app and the notebook predict with the network a trainer is using."""
    network = _cnn_with_every_layer_kind(np.random.default_rng(5))
    twin = _cnn_with_every_layer_kind(np.random.default_rng(5))
    x, labels = rng.standard_normal((8, 1, 6, 6)), rng.integers(0, 4, 8)
    gradients = []
    for net, interleave in ((network, False), (twin, True)):
        loss = SoftmaxCrossEntropy()
        loss.forward(net.forward(x, training=True), labels)
        if interleave:
            net.predict_proba(rng.random((3, 6, 6)))  # other images, other batch size
        net.backward(loss.backward())
        gradients.append([grad.copy() for _, _, grad in net.parameters()])
    for ours, theirs in zip(*gradients):
        np.testing.assert_array_equal(ours, theirs)


def test_backward_without_a_training_forward_pass_says_what_is_missing(rng):
    network = build_mlp((4,), input_shape=(1, 3, 3), rng=rng)
    logits = network.forward(network.prepare(rng.random((2, 3, 3))))
    with pytest.raises(RuntimeError, match="training=True"):
        network.backward(np.ones_like(logits))


def test_many_threads_predicting_at_once_get_the_serial_answers(rng):
    from concurrent.futures import ThreadPoolExecutor

    network = _cnn_with_every_layer_kind(rng)
    batches = [rng.random((n, 6, 6)) for n in (1, 7, 3, 12, 5, 9, 2, 4)]
    serial = [network.predict_proba(batch) for batch in batches]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            parallel = list(pool.map(network.predict_proba, batches))
            for a, b in zip(serial, parallel):
                np.testing.assert_array_equal(a, b)


def test_backward_writes_into_the_gradient_arrays_the_optimiser_holds(rng):
    network = _cnn_with_every_layer_kind(rng)
    held = [grad for _, _, grad in network.parameters()]
    loss = SoftmaxCrossEntropy()
    loss.forward(network.forward(rng.standard_normal((4, 1, 6, 6)), training=True), rng.integers(0, 4, 4))
    network.backward(loss.backward())
    for (name, _, grad), mine in zip(network.parameters(), held):
        assert grad is mine and np.abs(mine).max() > 0, name
