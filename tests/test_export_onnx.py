"""ONNX export: the exported graph gives digitnet's probabilities, from the same prepared digits."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx  # the onnx extra is part of the test extra
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from conftest import every_layer_cnn
from digitnet.cli import main
from digitnet.errors import DigitnetError
from digitnet.nn import LAYER_TYPES, BatchNorm, Conv2D, Dense, Flatten, Layer, MaxPool2D, Network, ReLU, build_mlp
from digitnet.onnx_export import LAYER_EXPORTERS, OPSET, OnnxExportError, export_onnx, to_onnx

TOLERANCE = 1e-5


def onnx_probabilities(model, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"pixels": pixels.astype(np.float32)})[0]


def with_trained_looking_batch_norm(network: Network, rng: np.random.Generator) -> Network:
    """Give every BatchNorm layer statistics and scales far from their initial 0 and 1, so that an
    export that ignored any of them would be caught."""
    for layer in network.layers:
        if isinstance(layer, BatchNorm):
            layer.params["gamma"][...] = rng.uniform(0.5, 2.0, layer.channels)
            layer.params["beta"][...] = rng.normal(0, 0.5, layer.channels)
            layer.buffers["running_mean"][...] = rng.normal(0, 0.5, layer.channels)
            layer.buffers["running_var"][...] = rng.uniform(0.2, 3.0, layer.channels)
    return network


def mlp_with_batch_norm(rng: np.random.Generator, side: int = 28) -> Network:
    layers = [Flatten(), Dense(side * side, 24, rng=rng), BatchNorm(24), ReLU(), Dense(24, 10, rng=rng)]
    return Network(layers, (1, side, side), mean=0.13, std=0.31)


def uneven_cnn(rng: np.random.Generator, side: int = 11) -> Network:
    """Asymmetric "same" padding (even and non-square kernels), integer padding, overlapping pooling."""
    layers: list[Layer] = [
        Conv2D(1, 3, (4, 2), "same", rng=rng),
        ReLU(),
        Conv2D(3, 2, 3, 1, rng=rng),
        MaxPool2D(3, stride=2),
        Flatten(),
    ]
    shape: tuple[int, ...] = (1, side, side)
    for layer in layers:
        shape = layer.output_shape(shape)
    return Network([*layers, Dense(int(np.prod(shape)), 10, rng=rng)], (1, side, side), mean=0.3, std=0.25)


NETWORKS = {
    "mlp": lambda rng: build_mlp((32, 16), rng=rng, mean=0.1307, std=0.3081),
    "mlp with batch norm": mlp_with_batch_norm,
    "every-layer cnn": lambda rng: every_layer_cnn(rng, side=12, mean=0.2, std=0.4),
    "float64 cnn": lambda rng: every_layer_cnn(rng, side=12, dtype=np.float64, mean=0.2, std=0.4),
    "odd-sized cnn": lambda rng: every_layer_cnn(rng, side=9, mean=0.2, std=0.4),
    "uneven cnn": uneven_cnn,
}


@pytest.mark.parametrize("kind", NETWORKS)
def test_the_onnx_graph_gives_digitnets_probabilities_within_1e_5(kind, rng):
    network = with_trained_looking_batch_norm(NETWORKS[kind](rng), rng)
    height, width = network.input_shape[-2:]
    pixels = rng.random((64, height, width), dtype=np.float32)
    expected = network.predict_proba(pixels)
    got = onnx_probabilities(to_onnx(network), pixels)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    # the inputs are not so easy that any graph would agree: the classes really differ per image
    assert len(set(expected.argmax(axis=1))) > 1


def test_the_normalisation_is_inside_the_graph(rng):
    network = build_mlp((16,), rng=rng, mean=0.0, std=1.0)
    pixels = rng.random((8, 28, 28), dtype=np.float32)
    plain = onnx_probabilities(to_onnx(network), pixels)
    network.mean, network.std = 0.5, 0.2
    normalised = onnx_probabilities(to_onnx(network), pixels)
    assert np.abs(plain - normalised).max() > 1e-3
    np.testing.assert_allclose(normalised, network.predict_proba(pixels), rtol=0, atol=TOLERANCE)


def test_the_graph_states_its_opset_input_output_and_class_names(rng):
    network = build_mlp((16,), rng=rng, class_names=list("abcdefghij"))
    model = to_onnx(network)
    assert [(entry.domain, entry.version) for entry in model.opset_import] == [("", OPSET)]
    (graph_input,) = model.graph.input
    dims = [dim.dim_value or dim.dim_param for dim in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, dims) == ("pixels", ["N", 28, 28])
    assert [output.name for output in model.graph.output] == ["probabilities"]
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(props["class_names"]) == list("abcdefghij")


def test_every_layer_kind_a_model_file_can_hold_has_an_onnx_exporter():
    assert {cls.__name__ for cls in LAYER_EXPORTERS} == set(LAYER_TYPES)


class Doubling(Layer):
    def forward(self, x, training=False):
        return 2 * x


def test_a_layer_without_an_onnx_counterpart_is_refused_by_name_and_nothing_is_written(tmp_path, rng):
    network = Network([Flatten(), Doubling(), Dense(784, 10, rng=rng)], (1, 28, 28))
    out = tmp_path / "model.onnx"
    with pytest.raises(OnnxExportError, match=r"^Layer 1 of the network, Doubling, has no ONNX counterpart") as error:
        export_onnx(network, out)
    assert str(error.value).count(".") == 1  # one sentence
    assert list(tmp_path.iterdir()) == []


def test_without_the_onnx_package_the_export_says_which_extra_to_install(monkeypatch, rng):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(DigitnetError, match=r"pip install 'digitnet\[onnx\]'"):
        to_onnx(build_mlp((4,), rng=rng))


@pytest.fixture
def model_file(tmp_path, rng):
    path = tmp_path / "mlp.npz"
    build_mlp((16,), rng=rng, mean=0.13, std=0.31).save(path)
    return path


def test_the_export_command_writes_an_onnx_file_that_matches_the_model(model_file, tmp_path, rng):
    out = tmp_path / "exported.onnx"
    result = CliRunner().invoke(main, ["export", str(model_file), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"opset {OPSET}" in result.stderr
    pixels = rng.random((16, 28, 28), dtype=np.float32)
    got = onnx_probabilities(onnx.load(out), pixels)
    np.testing.assert_allclose(got, Network.load(model_file).predict_proba(pixels), rtol=0, atol=TOLERANCE)


def test_the_export_command_without_a_model_exports_the_shipped_reader(tmp_path, rng):
    from digitnet.reader import load_reader

    out = tmp_path / "reader.onnx"
    result = CliRunner().invoke(main, ["export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "reader model" in result.stderr
    pixels = rng.random((8, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(
        onnx_probabilities(onnx.load(out), pixels), load_reader().predict_proba(pixels), rtol=0, atol=TOLERANCE
    )


def test_the_export_command_refuses_a_damaged_model_in_one_line_and_writes_nothing(tmp_path):
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(main, ["export", str(damaged), "--out", str(out)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and "damaged.npz" in result.stderr
    assert not out.exists()


def test_the_export_command_refuses_a_folder_as_output_before_reading_the_model(model_file, tmp_path):
    result = CliRunner().invoke(main, ["export", str(model_file), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a folder" in result.stderr


@pytest.mark.parametrize("model", ["mlp", "reader cnn"])
def test_on_1000_mnist_test_images_onnxruntime_matches_digitnet_within_1e_5(model, mnist, mnist_model_path):
    from digitnet.reader import load_reader

    network = Network.load(mnist_model_path) if model == "mlp" else load_reader()
    pixels = mnist.test_images[:1000].astype(np.float32) / 255
    expected = network.predict_proba(pixels)
    got = onnx_probabilities(to_onnx(network), pixels)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    assert (got.argmax(axis=1) == mnist.test_labels[:1000]).mean() > 0.9
