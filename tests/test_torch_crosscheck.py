"""digitnet against PyTorch, step by step: same weights and batches give the same losses, gradients and
updated weights, for every optimiser, with and without weight decay, for one and two hidden layers.

digitnet's Dense keeps ``W`` as ``(in, out)`` (a batch of rows multiplies it directly); PyTorch's
Linear keeps ``weight`` as ``(out, in)``, so every comparison transposes.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import relative_error
from digitnet.nn import Dense, ReLU, SoftmaxCrossEntropy, build_mlp
from digitnet.optim import SGD, Adam

torch = pytest.importorskip("torch", reason="the PyTorch cross-checks need torch (CI installs torch==2.13.0)")

pytestmark = pytest.mark.torch

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
IMAGE = (1, 6, 6)
STEPS = 6

OPTIMIZERS = {
    "sgd": (
        lambda params, wd: SGD(params, lr=0.1, weight_decay=wd),
        lambda params, wd: torch.optim.SGD(params, lr=0.1, weight_decay=wd),
    ),
    "momentum": (
        lambda params, wd: SGD(params, lr=0.05, momentum=0.9, weight_decay=wd),
        lambda params, wd: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=wd),
    ),
    "nesterov": (
        lambda params, wd: SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=wd),
        lambda params, wd: torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=wd),
    ),
    "adam": (
        lambda params, wd: Adam(params, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd),
        lambda params, wd: torch.optim.Adam(params, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd),
    ),
}


def twin_networks(hidden, dtype, rng):
    """A digitnet MLP and a PyTorch Sequential holding exactly the same (non-zero) parameters."""
    network = build_mlp(hidden, input_shape=IMAGE, num_classes=10, rng=rng, dtype=dtype)
    modules = [torch.nn.Flatten()]
    for layer in network.layers:
        if isinstance(layer, Dense):
            layer.params["b"][:] = 0.1 * rng.standard_normal(layer.out_features)
            linear = torch.nn.Linear(layer.in_features, layer.out_features, dtype=TORCH_DTYPE[dtype])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.params["W"].T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.params["b"].copy()))
            modules.append(linear)
        elif isinstance(layer, ReLU):
            modules.append(torch.nn.ReLU())
    return network, torch.nn.Sequential(*modules)


def pairs(network, model):
    """(digitnet parameter, digitnet gradient, torch parameter as digitnet lays it out) per array."""
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    dense = [layer for layer in network.layers if isinstance(layer, Dense)]
    for number, (layer, linear) in enumerate(zip(dense, linears), start=1):
        yield f"W{number}", layer.params["W"], layer.grads["W"], linear.weight, True
        yield f"b{number}", layer.params["b"], layer.grads["b"], linear.bias, False


def as_numpy(tensor, transpose):
    value = tensor.detach().numpy()
    return value.T if transpose else value


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("hidden", [(16,), (16, 12)], ids=["one hidden layer", "two hidden layers"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05], ids=["no decay", "weight decay"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_losses_gradients_and_updates_match_pytorch_step_by_step(name, weight_decay, hidden, dtype):
    rng = np.random.default_rng(0)
    network, model = twin_networks(hidden, dtype, rng)
    make_ours, make_theirs = OPTIMIZERS[name]
    ours = make_ours([(p, g) for _, p, g in network.parameters()], weight_decay)
    theirs = make_theirs(model.parameters(), weight_decay)
    loss_fn, tolerance = SoftmaxCrossEntropy(), TOLERANCE[dtype]
    for step in range(STEPS):
        x = rng.standard_normal((8, *IMAGE)).astype(dtype)
        labels = rng.integers(0, 10, 8)

        loss = loss_fn.forward(network.forward(x, training=True), labels)
        network.backward(loss_fn.backward())
        theirs.zero_grad()
        torch_loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(labels))
        torch_loss.backward()
        assert loss == pytest.approx(torch_loss.item(), rel=tolerance), f"loss, step {step}"
        for label, _, grad, param, transpose in pairs(network, model):
            assert relative_error(grad, as_numpy(param.grad, transpose)) < tolerance, f"d{label}, step {step}"

        ours.step()
        theirs.step()
        for label, value, _, param, transpose in pairs(network, model):
            assert relative_error(value, as_numpy(param, transpose)) < tolerance, f"{label}, step {step}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_and_its_gradient_match_pytorch(smoothing, dtype):
    rng = np.random.default_rng(1)
    logits = (3 * rng.standard_normal((32, 10))).astype(dtype)
    labels = rng.integers(0, 10, 32)
    loss_fn = SoftmaxCrossEntropy(smoothing)
    loss = loss_fn.forward(logits, labels)
    z = torch.from_numpy(logits.copy()).requires_grad_()
    expected = torch.nn.functional.cross_entropy(z, torch.from_numpy(labels), label_smoothing=smoothing)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=TOLERANCE[dtype])
    assert relative_error(loss_fn.backward(), z.grad.numpy()) < TOLERANCE[dtype]


def test_predictions_match_pytorch_on_a_batch(rng):
    network, model = twin_networks((32,), np.float32, rng)
    x = rng.standard_normal((64, *IMAGE)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert relative_error(network.forward(x), expected) < 1e-5
