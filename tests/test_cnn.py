"""The convolutional architecture: exact gradients end to end, model files, and learning real digits."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from conftest import check_network_gradients
from digitnet.nn import BatchNorm, Conv2D, Dropout, MaxPool2D, Network
from digitnet.nn.architectures import ARCHITECTURES, build_cnn, build_network
from digitnet.train import TrainConfig, pixel_statistics, train


@pytest.mark.parametrize(
    ("image", "settings"),
    [
        ((9, 7), {"padding": "same", "batch_norm": False}),  # the first CNN's structure
        ((14, 12), {}),  # the default: unpadded convolutions, batch normalisation
    ],
)
def test_whole_cnn_gradients_match_finite_differences(image, settings, rng):
    network = build_cnn(
        (5,),
        input_shape=(1, *image),
        num_classes=3,
        rng=rng,
        dtype=np.float64,
        channels=(2, 3),
        kernel_size=3,
        dropout=0.0,
        **settings,
    )
    for _, param, _ in network.parameters():
        param += 0.01 * rng.standard_normal(param.shape)  # non-zero biases too
    x, labels = rng.standard_normal((4, 1, *image)), rng.integers(0, 3, 4)
    check_network_gradients(network, x, labels)


def test_cnn_has_the_documented_layers_and_output_size(rng):
    network = build_network("cnn", input_shape=(1, 28, 28), num_classes=10, rng=rng)
    stage = ["Conv2D", "MaxPool2D", "BatchNorm", "ReLU"]
    assert [type(layer).__name__ for layer in network.layers] == [
        *stage,
        *stage,
        *["Flatten", "Dense", "ReLU", "Dropout", "Dense"],
    ]
    assert [layer.padding for layer in network.layers if isinstance(layer, Conv2D)] == ["valid", "valid"]
    assert network.forward(np.zeros((3, 1, 28, 28), dtype=np.float32)).shape == (3, 10)
    assert network.layers[9].in_features == 40 * 4 * 4


def test_first_cnn_keeps_the_ensemble_s_layers(rng):
    """The 12-CNN ensemble (--recipe cnn12) is built on cnn-padded: its layers must not drift."""
    network = build_network("cnn-padded", input_shape=(1, 28, 28), num_classes=10, rng=rng)
    stage = ["Conv2D", "MaxPool2D", "ReLU"]
    assert [type(layer).__name__ for layer in network.layers] == [
        *stage,
        *stage,
        *["Flatten", "Dense", "ReLU", "Dropout", "Dense"],
    ]
    assert [(c.out_channels, c.padding) for c in network.layers if isinstance(c, Conv2D)] == [
        (16, "same"),
        (32, "same"),
    ]
    assert network.layers[7].in_features == 32 * 7 * 7


@pytest.mark.parametrize(
    ("side", "padding"), [(8, "same"), ((13, 11), "same"), (15, "same"), (16, "valid"), ((17, 19), "valid")]
)
def test_cnn_pads_images_too_small_for_unpadded_convolutions(side, padding, rng):
    """scikit-learn's 8x8 digits would shrink to nothing through two unpadded 5x5 stages; 16 is the least."""
    height, width = side if isinstance(side, tuple) else (side, side)
    network = build_network("cnn", input_shape=(1, height, width), num_classes=10, rng=rng)
    assert [layer.padding for layer in network.layers if isinstance(layer, Conv2D)] == [padding, padding]
    assert network.forward(np.zeros((2, 1, height, width), dtype=np.float32)).shape == (2, 10)


def test_cnn_with_larger_kernels_pads_sooner(rng):
    network = build_network("cnn", input_shape=(1, 16, 16), num_classes=10, rng=rng, kernel_size=7)
    assert {layer.padding for layer in network.layers if isinstance(layer, Conv2D)} == {"same"}


def test_cnn_builds_for_odd_image_sizes(rng):
    network = build_cnn(input_shape=(1, 19, 17), num_classes=4, rng=rng, channels=(3, 4))
    assert network.forward(rng.standard_normal((2, 1, 19, 17)).astype(np.float32)).shape == (2, 4)


def test_cnn_predictions_are_deterministic_with_dropout_off_at_inference(rng):
    network = build_cnn(rng=rng, channels=(4, 4), dropout=0.5)
    images = rng.uniform(0, 1, (5, 28, 28))
    np.testing.assert_array_equal(network.predict_proba(images), network.predict_proba(images))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_model_file_round_trip_gives_identical_predictions(name, tmp_path, rng):
    network = build_network(name, input_shape=(1, 28, 28), num_classes=10, rng=rng, mean=0.13, std=0.31)
    for _, param, _ in network.parameters():
        param += 0.01 * rng.standard_normal(param.shape).astype(param.dtype)
    path = tmp_path / f"{name}.npz"
    network.save(path)
    loaded = Network.load(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in network.layers]
    images = rng.uniform(0, 1, (20, 28, 28))
    np.testing.assert_array_equal(loaded.predict_proba(images), network.predict_proba(images))


def test_cnn_file_records_its_layer_settings(tmp_path, rng):
    network = build_cnn(rng=rng, channels=(6, 8), kernel_size=3, dropout=0.3)
    network.save(tmp_path / "cnn.npz")
    loaded = Network.load(tmp_path / "cnn.npz")
    conv = [layer for layer in loaded.layers if isinstance(layer, Conv2D)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in conv] == [
        (1, 6, (3, 3), "valid"),
        (6, 8, (3, 3), "valid"),
    ]
    assert [layer.channels for layer in loaded.layers if isinstance(layer, BatchNorm)] == [6, 8]
    assert [layer.pool_size for layer in loaded.layers if isinstance(layer, MaxPool2D)] == [2, 2]
    assert [layer.rate for layer in loaded.layers if isinstance(layer, Dropout)] == [0.3]


@pytest.mark.slow
def test_small_cnn_beats_the_mlp_on_a_real_mnist_subset(mnist):
    """Same 3,000 training digits, same epochs and optimiser: convolutions generalise better."""
    train_images, train_labels = mnist.train_images[:3000], mnist.train_labels[:3000].astype(np.int64)
    test_images, test_labels = mnist.test_images[:2000], mnist.test_labels[:2000]
    accuracy = {}
    for name, extra in [("mlp", {}), ("cnn", {"channels": (8, 16)})]:
        rng = np.random.default_rng(0)
        mean, std = pixel_statistics(train_images)
        network = build_network(name, input_shape=(1, 28, 28), num_classes=10, rng=rng, mean=mean, std=std, **extra)
        with threadpool_limits(1):
            train(
                network, network.prepare(train_images), train_labels, TrainConfig(epochs=4, batch_size=64, lr=3e-3), rng
            )
            accuracy[name] = float((network.predict(test_images) == test_labels).mean())
    # Measured: about 94 % for the CNN against 88 % for the MLP.
    assert accuracy["cnn"] > 0.9
    assert accuracy["cnn"] > accuracy["mlp"] + 0.02, accuracy
