"""Conv2D, MaxPool2D, Dropout and BatchNorm: gradients by central differences, and PyTorch cross-checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import numerical_gradient, relative_error
from digitnet.nn import BatchNorm, Conv2D, Dropout, MaxPool2D, ReLU
from digitnet.nn.architectures import build_cnn
from digitnet.nn.conv import PooledConv2D, fuse_for_training, weight_gradient


def check_gradients(layer, x, rng, reseed=None):
    """Backward of ``layer`` against central differences of ``L = sum(forward(x) * r)``, float64.

    ``reseed``, if given, is called before every forward pass (to fix a dropout mask).
    """

    def forward():
        if reseed:
            reseed()
        return layer.forward(x, training=True)

    weights = rng.standard_normal(forward().shape)

    def loss():
        return float((forward() * weights).sum())

    forward()
    grad_x = layer.backward(weights.copy())
    assert grad_x.shape == x.shape
    assert relative_error(grad_x, numerical_gradient(loss, x)) < 1e-6, "input"
    for name, param in layer.params.items():
        forward()
        layer.backward(weights.copy())
        analytic = layer.grads[name].copy()
        assert relative_error(analytic, numerical_gradient(loss, param)) < 1e-6, name


def conv64(in_channels, out_channels, kernel_size, padding, rng):
    layer = Conv2D(in_channels, out_channels, kernel_size, padding, rng=rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(out_channels)  # non-zero biases are checked too
    return layer


# -- Conv2D -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel_size", "padding", "image"),
    [
        (3, "same", (7, 5)),
        (5, "same", (6, 6)),
        (4, "same", (5, 7)),  # even kernel: the extra padding row/column goes after
        (3, "valid", (7, 6)),
        (5, "valid", (5, 5)),  # the kernel exactly covers the image: 1x1 output
        (3, 2, (5, 4)),  # integer padding larger than "same"
        ((2, 3), 1, (5, 6)),  # non-square kernel
        (1, "valid", (3, 3)),
    ],
    ids=[
        "3x3 same",
        "5x5 same",
        "even 4x4 same",
        "3x3 valid",
        "kernel covers image",
        "padding 2",
        "non-square kernel",
        "1x1",
    ],
)
def test_conv2d_gradients_match_finite_differences(kernel_size, padding, image, rng):
    layer = conv64(3, 4, kernel_size, padding, rng)
    check_gradients(layer, rng.standard_normal((2, 3, *image)), rng)


def test_conv2d_output_shape_matches_forward_for_each_padding(rng):
    for padding, expected in [("same", (4, 9, 8)), ("valid", (4, 5, 4)), (1, (4, 7, 6))]:
        layer = Conv2D(2, 4, 5, padding, rng=rng)
        assert layer.output_shape((2, 9, 8)) == expected
        assert layer.forward(rng.standard_normal((3, 2, 9, 8)).astype(np.float32)).shape == (3, *expected)


def test_conv2d_of_an_impulse_is_the_kernel_rotated_by_180_degrees(rng):
    """Cross-correlation: an impulse at the centre reproduces the kernel, rotated by 180 degrees."""
    layer = Conv2D(1, 1, 3, "same", rng=rng, dtype=np.float64)
    image = np.zeros((1, 1, 5, 5))
    image[0, 0, 2, 2] = 1
    out = layer.forward(image)
    np.testing.assert_allclose(out[0, 0, 1:4, 1:4], layer.params["W"][0, 0, ::-1, ::-1])


def test_conv2d_skips_the_input_gradient_when_nothing_needs_it(rng):
    layer = conv64(1, 2, 3, "same", rng)
    layer.needs_input_grad = False
    layer.forward(rng.standard_normal((2, 1, 4, 4)), training=True)
    assert layer.backward(rng.standard_normal((2, 2, 4, 4))) is None
    assert np.abs(layer.grads["W"]).sum() > 0


def test_conv2d_rejects_an_unknown_padding():
    with pytest.raises(ValueError, match="padding"):
        Conv2D(1, 1, 3, "full")


def test_conv2d_writes_gradients_into_the_arrays_the_optimiser_holds(rng):
    layer = conv64(2, 3, 3, "same", rng)
    held = {name: grad for name, grad in layer.grads.items()}
    layer.forward(rng.standard_normal((2, 2, 5, 5)), training=True)
    layer.backward(rng.standard_normal((2, 3, 5, 5)))
    for name, grad in layer.grads.items():
        assert grad is held[name] and np.abs(grad).sum() > 0


def test_stacked_conv_pool_relu_gradients_match_finite_differences(rng):
    """Layers pass channel-major views to each other; the chain must still be exact."""
    layers = [conv64(2, 3, 3, "same", rng), MaxPool2D(2), ReLU(), conv64(3, 2, 3, "valid", rng)]
    x = rng.standard_normal((2, 2, 8, 9))

    def forward():
        h = x
        for layer in layers:
            h = layer.forward(h, training=True)
        return h

    weights = rng.standard_normal(forward().shape)
    grad = weights.copy()
    for layer in reversed(layers):
        grad = layer.backward(grad)
    numeric = numerical_gradient(lambda: float((forward() * weights).sum()), x)
    assert relative_error(grad, numeric) < 1e-6


# -- MaxPool2D --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool_size", "stride", "image"),
    [
        (2, None, (6, 8)),
        (2, None, (7, 5)),  # odd sizes: the last row and column are dropped
        (3, 2, (9, 8)),  # overlapping windows: shared inputs sum their gradients
        (3, 1, (5, 6)),
        (2, 3, (8, 8)),  # stride larger than the window: some inputs are never read
    ],
    ids=["2x2 even", "2x2 odd sizes", "3x3 stride 2", "3x3 stride 1", "stride beyond window"],
)
def test_maxpool_gradients_match_finite_differences(pool_size, stride, image, rng):
    check_gradients(MaxPool2D(pool_size, stride), rng.standard_normal((2, 3, *image)), rng)


def test_maxpool_sends_the_gradient_to_the_first_of_tied_maxima():
    x = np.ones((1, 1, 2, 2))
    layer = MaxPool2D(2)
    layer.forward(x, training=True)
    grad = layer.backward(np.full((1, 1, 1, 1), 5.0))
    np.testing.assert_array_equal(grad[0, 0], [[5, 0], [0, 0]])


def test_maxpool_output_shape_matches_forward(rng):
    for pool_size, stride, image in [(2, None, (7, 5)), (3, 2, (9, 8))]:
        layer = MaxPool2D(pool_size, stride)
        out = layer.forward(rng.standard_normal((2, 3, *image)))
        assert out.shape[1:] == layer.output_shape((3, *image))


# -- PooledConv2D: the first convolution and its pooling as one training step ------------------


def first_conv64(in_channels, out_channels, kernel_size, padding, rng):
    layer = conv64(in_channels, out_channels, kernel_size, padding, rng)
    layer.needs_input_grad = False  # what the network sets for its first layer
    return layer


@pytest.mark.parametrize(
    ("kernel_size", "padding", "pool_size", "image", "batch"),
    [
        (5, "valid", 2, (28, 28), 3),  # the default CNN's first stage
        (3, "same", 2, (7, 9), 3),  # odd maps: pooling drops the last row and column
        (3, "valid", 3, (11, 10), 3),
        ((2, 3), 1, 2, (6, 5), 3),
        # 5,184 positions: the weight gradient is summed in five slabs of 1,024 and a rest of 64
        (5, "valid", 2, (28, 28), 9),
    ],
    ids=["CNN's first stage", "odd sizes", "3x3 pooling", "non-square kernel, padding 1", "slabs and a rest"],
)
def test_pooled_convolution_equals_the_two_layers(kernel_size, padding, pool_size, image, batch, rng):
    """The fused step gives the layers' output and weight gradients, float64, to rounding."""
    conv, pool = first_conv64(2, 4, kernel_size, padding, rng), MaxPool2D(pool_size)
    x = rng.standard_normal((batch, 2, *image))
    expected = pool.forward(conv.forward(x, training=True), training=True)
    grad = rng.standard_normal(expected.shape)
    conv.backward(pool.backward(grad))
    expected_grads = {name: value.copy() for name, value in conv.grads.items()}
    conv.grads["W"][...], conv.grads["b"][...] = np.nan, np.nan

    fused = PooledConv2D(conv, pool)
    np.testing.assert_allclose(fused.forward(x, training=False), expected, rtol=1e-12, atol=1e-12)
    assert fused.cols is None  # inference keeps nothing
    np.testing.assert_allclose(fused.forward(x, training=True), expected, rtol=1e-12, atol=1e-12)
    assert fused.backward(grad) is None
    for name, value in expected_grads.items():
        np.testing.assert_allclose(conv.grads[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize(
    ("filters", "rows", "positions"),
    [(20, 25, 4096), (20, 25, 5184), (3, 7, 4097), (40, 500, 4096), (20, 25, 3000)],
    ids=["four whole slabs", "slabs and a rest", "odd sizes", "large result: one product", "too few slabs"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_is_g_times_the_columns_transposed(filters, rows, positions, dtype, rng):
    """Summed in slabs or as one product, and from strided operands, it is ``g @ cols.T``."""
    g = rng.standard_normal((filters, 2 * positions)).astype(dtype)[:, ::2]  # strided, as views are
    cols = np.asfortranarray(rng.standard_normal((rows, positions)).astype(dtype))
    out = np.full((filters, rows), np.nan, dtype=dtype)
    weight_gradient(g, cols, out)
    expected = g.astype(np.float64) @ cols.astype(np.float64).T
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())


def test_pooled_convolution_sends_the_gradient_to_the_first_of_tied_maxima(rng):
    """Zero weights tie every window while the patches differ: as in MaxPool2D, only the first
    position of each window passes its patch into the weight gradient."""
    conv = first_conv64(1, 2, 3, "same", rng)
    conv.params["W"][...] = 0
    x = rng.standard_normal((2, 1, 6, 6))
    fused = PooledConv2D(conv, MaxPool2D(2))
    fused.backward(np.ones_like(fused.forward(x, training=True)))
    fused_grad = conv.grads["W"].copy()
    # By hand: each 2x2 window's top-left position wins, so dW sums the patches at even positions.
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    first_positions = [padded[:, 0, i : i + 6 : 2, j : j + 6 : 2].sum() for i in range(3) for j in range(3)]
    np.testing.assert_allclose(fused_grad[0, 0].ravel(), first_positions, rtol=1e-12)
    pool = MaxPool2D(2)
    conv.backward(pool.backward(np.ones_like(pool.forward(conv.forward(x, training=True), training=True))))
    np.testing.assert_allclose(fused_grad, conv.grads["W"], rtol=1e-12)


def test_only_the_first_convolution_and_its_pooling_are_fused(rng):
    network = build_cnn(rng=rng)
    steps = network.training_steps()
    assert isinstance(steps[0], PooledConv2D) and steps[0].conv is network.layers[0]
    assert steps[1:] == network.layers[2:]  # the second convolution needs its input gradient
    assert fuse_for_training([first_conv64(1, 2, 3, "same", rng), MaxPool2D(3, 2)])[0].__class__ is Conv2D
    with pytest.raises(ValueError, match="first convolution"):
        PooledConv2D(conv64(1, 2, 3, "same", rng), MaxPool2D(2))


def test_the_training_steps_follow_a_changed_list_of_layers(rng):
    network = build_cnn(rng=rng)
    assert isinstance(network.training_steps()[0], PooledConv2D)
    network.layers = network.layers[4:]  # now the second convolution comes first
    steps = network.training_steps()
    assert isinstance(steps[0], PooledConv2D) and steps[0].conv is network.layers[0]
    assert not network.layers[0].needs_input_grad


def test_a_training_step_of_the_network_equals_its_layers_run_one_by_one(rng):
    network = build_cnn(rng=rng, dtype=np.float64, dropout=0)
    x = rng.standard_normal((4, 1, 28, 28))
    grad_logits = rng.standard_normal((4, 10))
    logits = network.forward(x, training=True)
    network.backward(grad_logits)
    fused = {name: grad.copy() for name, _, grad in network.parameters()}
    h = x
    for layer in network.layers:
        h = layer.forward(h, training=True)
    np.testing.assert_allclose(logits, h, rtol=1e-9, atol=1e-12)
    grad = grad_logits
    for layer in reversed(network.layers):
        if (grad := layer.backward(grad)) is None:
            break
    for name, _, expected in network.parameters():
        np.testing.assert_allclose(fused[name], expected, rtol=1e-8, atol=1e-12, err_msg=name)


# -- Dropout ----------------------------------------------------------------------------------


def test_dropout_gradient_with_a_fixed_mask_matches_finite_differences(rng):
    layer = Dropout(0.4)

    def reseed():
        layer.rng = np.random.default_rng(7)  # the same mask on every forward pass

    check_gradients(layer, rng.standard_normal((4, 6)), rng, reseed=reseed)


def test_dropout_is_the_identity_at_inference(rng):
    x = rng.standard_normal((5, 8))
    assert Dropout(0.5).forward(x, training=False) is x


def test_dropout_keeps_the_expected_activation(rng):
    layer = Dropout(0.3, rng=rng)
    out = layer.forward(np.ones((200, 500), dtype=np.float32), training=True)
    assert abs(float((out == 0).mean()) - 0.3) < 0.01
    assert abs(float(out.mean()) - 1.0) < 0.02
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)


def test_dropout_masks_come_from_the_given_generator():
    first = Dropout(0.5, rng=np.random.default_rng(3)).forward(np.ones((4, 10)), training=True)
    second = Dropout(0.5, rng=np.random.default_rng(3)).forward(np.ones((4, 10)), training=True)
    np.testing.assert_array_equal(first, second)


# -- BatchNorm --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 3, 5)], ids=["dense (N, C)", "images (N, C, H, W)"])
def test_batchnorm_gradients_match_finite_differences(shape, rng):
    layer = BatchNorm(4, dtype=np.float64)
    layer.params["gamma"][:] = rng.uniform(0.5, 1.5, 4)
    layer.params["beta"][:] = rng.standard_normal(4)
    check_gradients(layer, rng.standard_normal(shape) * 2 + 1, rng)


def test_batchnorm_standardises_while_training_and_uses_running_statistics_after(rng):
    layer = BatchNorm(3, momentum=1.0, dtype=np.float64)  # momentum 1: running stats = last batch
    x = rng.standard_normal((50, 3, 4, 4)) * 3 + 2
    out = layer.forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-3)
    np.testing.assert_allclose(layer.buffers["running_mean"], x.mean(axis=(0, 2, 3)))
    # At inference the same batch is standardised with the (unbiased) running variance.
    np.testing.assert_allclose(layer.forward(x, training=False), out * np.sqrt((800 - 1) / 800), rtol=1e-6)


# -- PyTorch cross-checks ---------------------------------------------------------------------


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")


@pytest.mark.torch
@pytest.mark.parametrize(
    ("kernel_size", "padding"),
    [(3, "same"), (5, "valid"), (4, "same"), (3, 2)],
    ids=["3x3 same", "5x5 valid", "even same", "padding 2"],
)
def test_conv2d_matches_pytorch(kernel_size, padding, rng, torch):
    layer = conv64(3, 5, kernel_size, padding, rng)
    x = rng.standard_normal((4, 3, 9, 7))
    out = layer.forward(x, training=True)
    grad_out = rng.standard_normal(out.shape)
    grad_x = layer.backward(grad_out)

    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(layer.params["W"], requires_grad=True)
    b_t = torch.tensor(layer.params["b"], requires_grad=True)
    with warnings.catch_warnings():  # PyTorch warns that an even "same" kernel pads asymmetrically
        warnings.simplefilter("ignore", UserWarning)
        out_t = torch.nn.functional.conv2d(x_t, w_t, b_t, padding=padding)
    out_t.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], w_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], b_t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize(
    ("pool_size", "stride", "integers"),
    [(2, None, False), (3, 2, False), (2, None, True)],
    ids=["2x2", "3x3 stride 2", "2x2 with ties"],
)
def test_maxpool_matches_pytorch(pool_size, stride, integers, rng, torch):
    x = rng.integers(0, 3, (2, 3, 7, 9)).astype(np.float64) if integers else rng.standard_normal((2, 3, 7, 9))
    layer = MaxPool2D(pool_size, stride)
    out = layer.forward(x, training=True)
    grad_out = rng.standard_normal(out.shape)
    grad_x = layer.backward(grad_out)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.max_pool2d(x_t, pool_size, stride)
    out_t.backward(torch.tensor(grad_out))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.torch
def test_dropout_with_a_fixed_mask_matches_pytorch(rng, torch):
    layer = Dropout(0.25, rng=np.random.default_rng(5))
    x = rng.standard_normal((8, 16))
    out = layer.forward(x, training=True)
    grad_out = rng.standard_normal(out.shape)
    grad_x = layer.backward(grad_out)
    keep = torch.tensor(layer.scaled_mask != 0)
    x_t = torch.tensor(x, requires_grad=True)
    # PyTorch's dropout with the same mask: keep, then scale by 1 / (1 - p).
    out_t = torch.where(keep, x_t / (1 - 0.25), torch.zeros_like(x_t))
    out_t.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), rtol=1e-12)
    eval_t = torch.nn.Dropout(0.25).eval()
    np.testing.assert_array_equal(layer.forward(x, training=False), eval_t(torch.tensor(x)).numpy())


def _batch_last(x: np.ndarray) -> np.ndarray:
    """``x`` with the same values, stored batch-last as a convolution's output is: ``(C, H, W, N)``."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2) if x.ndim == 4 else x


@pytest.mark.torch
@pytest.mark.parametrize(
    ("shape", "layout"),
    [((6, 4), np.asarray), ((3, 4, 3, 5), np.asarray), ((3, 4, 3, 5), _batch_last)],
    ids=["BatchNorm1d", "BatchNorm2d", "BatchNorm2d batch-last"],
)
def test_batchnorm_matches_pytorch_in_training_and_inference(shape, layout, rng, torch):
    layer = BatchNorm(4, dtype=np.float64)
    layer.params["gamma"][:] = rng.uniform(0.5, 1.5, 4)
    layer.params["beta"][:] = rng.standard_normal(4)
    module = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(4).double()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(layer.params["gamma"]))
        module.bias.copy_(torch.tensor(layer.params["beta"]))
    for _ in range(3):  # several steps, so the running statistics are compared too
        x = rng.standard_normal(shape) * 2 + 0.5
        out = layer.forward(layout(x), training=True)
        grad_out = rng.standard_normal(shape)
        grad_x = layer.backward(layout(grad_out))
        x_t = torch.tensor(x, requires_grad=True)
        module.zero_grad()
        out_t = module.train()(x_t)
        out_t.backward(torch.tensor(grad_out))
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad_x, x_t.grad.numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(layer.grads["gamma"], module.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(layer.grads["beta"], module.bias.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.buffers["running_mean"], module.running_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.buffers["running_var"], module.running_var.numpy(), rtol=1e-10)
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(layer.forward(layout(x)), module.eval()(torch.tensor(x)).detach().numpy(), rtol=1e-10)


def test_conv2d_inference_in_chunks_matches_one_batch(rng, monkeypatch):
    layer = conv64(2, 3, 3, "same", rng)
    x = rng.standard_normal((7, 2, 5, 6))
    whole = layer.forward(x, training=False)
    monkeypatch.setattr(Conv2D, "inference_chunk_values", 2 * 9 * 30 * 3)  # three images per chunk
    np.testing.assert_allclose(layer.forward(x, training=False), whole, rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones_like(whole))


def test_training_buffers_kept_between_batches_give_a_fresh_layers_results(rng):
    """The work arrays a convolution keeps from batch to batch (also across a shorter last batch)
    never leak one batch's values into the next: outputs and gradients equal a fresh layer's."""
    kept = conv64(3, 4, 3, "same", rng)
    for n in (5, 2, 5):
        fresh = conv64(3, 4, 3, "same", np.random.default_rng(0))
        fresh.params["W"][...], fresh.params["b"][...] = kept.params["W"], kept.params["b"]
        x = rng.standard_normal((n, 3, 6, 7))
        grad = rng.standard_normal((n, 4, 6, 7))
        np.testing.assert_array_equal(kept.forward(x, training=True), fresh.forward(x, training=True))
        np.testing.assert_array_equal(kept.backward(grad), fresh.backward(grad))
        np.testing.assert_array_equal(kept.grads["W"], fresh.grads["W"])


def test_a_gradient_returned_by_backward_survives_the_next_batch(rng):
    layer = conv64(2, 3, 3, "same", rng)
    layer.forward(rng.standard_normal((4, 2, 5, 5)), training=True)
    first = layer.backward(rng.standard_normal((4, 3, 5, 5)))
    saved = first.copy()
    layer.forward(rng.standard_normal((4, 2, 5, 5)), training=True)
    layer.backward(rng.standard_normal((4, 3, 5, 5)))
    np.testing.assert_array_equal(first, saved)
