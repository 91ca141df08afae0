"""Fast paths against the textbook forms they replace.

The loss, the optimisers and the training loop are written to avoid temporaries (in-place updates,
reused buffers, the loss computed without a one-hot matrix). Each test here runs the plain textbook
formula beside the fast code and requires the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitnet.nn import Dense, SoftmaxCrossEntropy, build_mlp, log_softmax, one_hot, softmax
from digitnet.optim import SGD, Adam, make_schedule
from digitnet.train import TrainConfig, train

DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


@DTYPES
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["one-hot", "label smoothing"])
def test_loss_and_gradient_equal_the_one_hot_textbook_form(smoothing, dtype, rng):
    logits = (4 * rng.standard_normal((33, 10))).astype(dtype)
    labels = rng.integers(0, 10, 33)
    target = (1 - smoothing) * one_hot(labels, 10, np.float64) + smoothing / 10
    textbook_loss = -(target * log_softmax(logits.astype(np.float64))).sum() / 33
    textbook_grad = (softmax(logits.astype(np.float64)) - target) / 33

    loss = SoftmaxCrossEntropy(smoothing)
    value = loss.forward(logits, labels)
    assert value == pytest.approx(textbook_loss, rel=TOLERANCE[dtype])
    np.testing.assert_allclose(loss.backward(), textbook_grad, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] / 33)
    assert loss.backward().dtype == dtype


def test_loss_backward_can_be_called_twice_with_the_same_result(rng):
    loss = SoftmaxCrossEntropy(0.1)
    loss.forward(rng.standard_normal((5, 10)), rng.integers(0, 10, 5))
    np.testing.assert_array_equal(loss.backward(), loss.backward())


def test_dense_forward_equals_x_at_w_plus_b(rng):
    layer = Dense(7, 5, rng=rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(5)
    x = rng.standard_normal((4, 7))
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["W"] + layer.params["b"], rtol=1e-14)


def textbook_sgd(p, g, v, lr, momentum, nesterov, weight_decay):
    g = g + weight_decay * p
    if momentum:
        v[:] = momentum * v + g
        g = g + momentum * v if nesterov else v
    return p - lr * g


def textbook_adam(p, g, m, s, t, lr, b1, b2, eps, weight_decay):
    g = g + weight_decay * p
    m[:] = b1 * m + (1 - b1) * g
    s[:] = b2 * s + (1 - b2) * g * g
    m_hat, s_hat = m / (1 - b1**t), s / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(s_hat) + eps)


@DTYPES
@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["no decay", "weight decay"])
@pytest.mark.parametrize(
    "momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)], ids=["sgd", "momentum", "nesterov"]
)
def test_in_place_sgd_equals_the_textbook_update(momentum, nesterov, weight_decay, dtype, rng):
    shapes = [(6, 4), (4,)]
    params = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    grads = [np.zeros_like(p) for p in params]
    expected = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    optimizer = SGD(list(zip(params, grads)), lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for _ in range(5):
        for g in grads:
            g[...] = rng.standard_normal(g.shape)
        original = [g.copy() for g in grads]
        optimizer.step()
        expected = [
            textbook_sgd(p, g, v, 0.05, momentum, nesterov, weight_decay)
            for p, g, v in zip(expected, original, velocity)
        ]
        for param, want, grad, before in zip(params, expected, grads, original):
            np.testing.assert_allclose(param, want, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
            np.testing.assert_array_equal(grad, before)  # the gradient itself is left alone


@DTYPES
@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["no decay", "weight decay"])
def test_in_place_adam_equals_the_textbook_update(weight_decay, dtype, rng):
    params = [rng.standard_normal(shape).astype(dtype) for shape in [(6, 4), (4,)]]
    grads = [np.zeros_like(p) for p in params]
    expected = [p.copy() for p in params]
    m = [np.zeros_like(p, dtype=np.float64) for p in params]
    s = [np.zeros_like(p, dtype=np.float64) for p in params]
    optimizer = Adam(list(zip(params, grads)), lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    for t in range(1, 8):
        for g in grads:
            g[...] = rng.standard_normal(g.shape) * 10.0 ** rng.integers(-4, 2)
        expected = [
            textbook_adam(p, g.astype(np.float64), mi, si, t, 0.01, 0.9, 0.999, 1e-8, weight_decay)
            for p, g, mi, si in zip(expected, grads, m, s)
        ]
        optimizer.step()
        for param, want in zip(params, expected):
            np.testing.assert_allclose(param, want, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def textbook_train(network, x_train, y_train, config, rng):
    """The loop of the seed notebook: fresh arrays for every batch, nothing reused."""
    loss_fn = SoftmaxCrossEntropy(config.label_smoothing)
    params = [(p, g) for _, p, g in network.parameters()]
    optimizer = Adam(params, config.lr) if config.optimizer == "adam" else SGD(params, config.lr)
    n = len(x_train)
    batches = math.ceil(n / config.batch_size)
    schedule = make_schedule(config.schedule, config.lr, config.epochs * batches, steps_per_epoch=batches)
    step = 0
    for _ in range(config.epochs):
        order = rng.permutation(n)
        for batch in range(batches):
            index = order[batch * config.batch_size : (batch + 1) * config.batch_size]
            optimizer.lr = schedule(step)
            loss_fn.forward(network.forward(x_train[index], training=True), y_train[index])
            network.backward(loss_fn.backward())
            optimizer.step()
            step += 1


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_with_a_reused_batch_buffer_equals_the_textbook_loop(optimizer):
    """Bit for bit, including the last, shorter batch of every epoch (100 = 3 x 32 + 4)."""
    data = np.random.default_rng(5)
    x = data.standard_normal((100, 1, 4, 4)).astype(np.float32)
    y = data.integers(0, 3, 100)
    config = TrainConfig(epochs=3, batch_size=32, optimizer=optimizer, lr=0.01, schedule="cosine")
    trained = []
    for run in (train, textbook_train):
        rng = np.random.default_rng(9)
        network = build_mlp((8,), input_shape=(1, 4, 4), num_classes=3, rng=rng)
        run(network, x, y, config, rng)
        trained.append(network.state())
    for name in trained[0]:
        assert trained[0][name].tobytes() == trained[1][name].tobytes(), name
