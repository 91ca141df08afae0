"""Export a digitnet network as an ONNX model, to run it where digitnet is not installed.

The ONNX graph takes exactly what ``digitnet predict`` hands the network: a batch of prepared
digits, float32 ``[N, height, width]`` with values in [0, 1] (:func:`digitnet.preprocess.preprocess_file`
makes them). The network's input normalisation ``(x - mean) / std`` is inside the graph, and its
output is the class probabilities (a softmax), so::

    onnxruntime.InferenceSession("model.onnx").run(None, {"pixels": digits})[0]

equals ``network.predict_proba(digits)`` to float32 rounding. The graph is built with the ``onnx``
package's helpers (an optional extra: ``pip install 'digitnet[onnx]'``) and checked with its
checker before anything is written.

Each layer kind has one function that turns it into ONNX nodes (:data:`LAYER_EXPORTERS`); a network
holding a layer without one is refused with a :class:`~digitnet.errors.DigitnetError` that names it.
The weights are exported as float32 whatever the network's dtype, so that every ONNX runtime
(onnxruntime-web included) runs the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import DigitnetError
from .nn import BatchNorm, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, Network, ReLU

if TYPE_CHECKING:
    import onnx

__all__ = ["INPUT_NAME", "LAYER_EXPORTERS", "OPSET", "OUTPUT_NAME", "export_onnx", "to_onnx"]

#: The ONNX operator set the graph is written against (every operator used exists unchanged in it;
#: onnxruntime has run opset 17 since version 1.13, onnxruntime-web too).
OPSET = 17
#: The ONNX file format version matching :data:`OPSET`, so that older runtimes can load the file.
IR_VERSION = 8
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"


class OnnxExportError(DigitnetError):
    """The network cannot be expressed as an ONNX graph, or the exporter is not installed."""


@dataclass
class GraphBuilder:
    """The nodes and constants of a graph under construction, with fresh names for values."""

    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    count: int = 0

    def name(self, hint: str) -> str:
        """A fresh value name: ``hint`` and a counter."""
        self.count += 1
        return f"{hint}_{self.count}"

    def constant(self, hint: str, value: np.ndarray | float | list[int]) -> str:
        """Add a constant (float32, or int64 for shapes and axes) and return its name."""
        from onnx import numpy_helper

        array = np.asarray(value)
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes: Any) -> str:
        """Add one node with a single output and return the output's name."""
        from onnx import helper

        output = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


#: A layer's exporter: (layer, its input value's name, one example's input shape, the builder) ->
#: its output value's name.
LayerExporter = Callable[[Any, str, tuple[int, ...], GraphBuilder], str]


def _dense(layer: Dense, x: str, shape: tuple[int, ...], graph: GraphBuilder) -> str:
    # Gemm computes x @ W + b for a 2-D x, with W stored (in_features, out_features) as digitnet does.
    weights, bias = graph.constant("dense_W", layer.params["W"]), graph.constant("dense_b", layer.params["b"])
    return graph.node("Gemm", [x, weights, bias], "dense")


def _relu(layer: ReLU, x: str, shape: tuple[int, ...], graph: GraphBuilder) -> str:
    return graph.node("Relu", [x], "relu")


def _flatten(layer: Flatten, x: str, shape: tuple[int, ...], graph: GraphBuilder) -> str:
    # digitnet flattens the logical (N, C, H, W) array in C order, as ONNX Flatten does.
    return graph.node("Flatten", [x], "flatten", axis=1)


def _conv2d(layer: Conv2D, x: str, shape: tuple[int, ...], graph: GraphBuilder) -> str:
    (top, bottom), (left, right) = layer.pad_h, layer.pad_w
    weights = graph.constant("conv_W", layer.params["W"])  # (out, in, kh, kw), ONNX's own layout
    bias = graph.constant("conv_b", layer.params["b"])
    return graph.node(
        "Conv",
        [x, weights, bias],
        "conv",
        kernel_shape=list(layer.kernel_size),
        pads=[top, left, bottom, right],
        strides=[1, 1],
    )


def _max_pool(layer: MaxPool2D, x: str, shape: tuple[int, ...], graph: GraphBuilder) -> str:
    # No padding and ONNX's default floor rounding: windows past the edge are dropped, as in digitnet.
    size, stride = layer.pool_size, layer.stride
    return graph.node("MaxPool", [x], "pool", kernel_shape=[size, size], strides=[stride, stride])


def _dropout(layer: Dropout, x: str, shape: tuple[int, ...], graph: GraphBuilder) -> str:
    return x  # the identity at inference (inverted dropout scales while training instead)


def _batch_norm(layer: BatchNorm, x: str, shape: tuple[int, ...], graph: GraphBuilder) -> str:
    # digitnet's inference formula, (x - running_mean) * gamma / sqrt(running_var + eps) + beta, as
    # three elementwise nodes: this works for (N, C) and (N, C, H, W) inputs alike.
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    scale = gamma / np.sqrt(layer.buffers["running_var"] + layer.eps)  # in the layer's dtype, as digitnet
    channel_shape = (-1, 1, 1) if len(shape) == 3 else (-1,)
    centred = graph.node(
        "Sub", [x, graph.constant("bn_mean", layer.buffers["running_mean"].reshape(channel_shape))], "bn"
    )
    scaled = graph.node("Mul", [centred, graph.constant("bn_scale", scale.reshape(channel_shape))], "bn")
    return graph.node("Add", [scaled, graph.constant("bn_beta", beta.reshape(channel_shape))], "bn")


#: One exporter per layer kind; a layer kind missing here cannot be exported.
LAYER_EXPORTERS: dict[type[Layer], LayerExporter] = {
    Dense: _dense,
    ReLU: _relu,
    Flatten: _flatten,
    Conv2D: _conv2d,
    MaxPool2D: _max_pool,
    Dropout: _dropout,
    BatchNorm: _batch_norm,
}


def to_onnx(network: Network) -> onnx.ModelProto:
    """The ONNX model of ``network``: prepared digits in, class probabilities out.

    Parameters
    ----------
    network : Network
        A digitnet network (a model file loaded with :meth:`Network.load`, or one just trained).

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker`` (types and shapes inferred through the whole graph). Input
        ``pixels``: float32 ``[N, height, width]`` in [0, 1]; output ``probabilities``: float32
        ``[N, classes]``. ``metadata_props`` holds the class names (JSON) and the normalisation.

    Raises
    ------
    OnnxExportError
        If the ``onnx`` package is missing, or a layer has no ONNX counterpart here.
    """
    onnx = _import_onnx()
    from onnx import TensorProto, helper

    exporters = [_exporter_for(layer, index) for index, layer in enumerate(network.layers)]
    height, width = image_side(network.input_shape)
    graph = GraphBuilder()
    x = _network_input(network, graph, height, width)
    shape = network.input_shape
    for layer, exporter in zip(network.layers, exporters):
        x = exporter(layer, x, shape, graph)
        shape = layer.output_shape(shape)
    graph.nodes.append(helper.make_node("Softmax", [x], [OUTPUT_NAME], name="softmax", axis=-1))
    classes = len(network.class_names)
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "digitnet",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", height, width])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", classes])],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="digitnet",
        producer_version=__version__,
        doc_string=f"digitnet {network.describe()}: {INPUT_NAME} [N, {height}, {width}] in [0, 1] -> "
        f"{OUTPUT_NAME} [N, {classes}]",
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model,
        {
            "class_names": json.dumps(network.class_names),
            "normalisation": json.dumps({"mean": network.mean, "std": network.std}),
            "architecture": network.describe(),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(network: Network, path: str | Path) -> Path:
    """Write ``network`` as an ONNX file at ``path``, atomically (a failure leaves nothing behind).

    Raises
    ------
    OnnxExportError
        As :func:`to_onnx`; nothing is written then.
    """
    from .data.cache import atomic_write_bytes

    return atomic_write_bytes(path, to_onnx(network).SerializeToString())


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise OnnxExportError(
            "Exporting to ONNX needs the onnx package, which is not installed; install it with "
            "pip install 'digitnet[onnx]'."
        ) from None
    return onnx


def _exporter_for(layer: Layer, index: int) -> LayerExporter:
    exporter = LAYER_EXPORTERS.get(type(layer))
    if exporter is None:
        raise OnnxExportError(
            f"Layer {index} of the network, {type(layer).__name__}, has no ONNX counterpart in digitnet, "
            f"so nothing was exported; ONNX export handles {', '.join(t.__name__ for t in LAYER_EXPORTERS)}."
        )
    return exporter


def image_side(input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Height and width of the 2-D digit the network reads, as ``preprocess_for_model`` shapes it."""
    if len(input_shape) >= 2:
        return int(input_shape[-2]), int(input_shape[-1])
    side = math.isqrt(int(input_shape[0]))
    return side, side


def _network_input(network: Network, graph: GraphBuilder, height: int, width: int) -> str:
    """``pixels`` shaped as the first layer's input (each channel a copy of the digit, as
    ``preprocess_for_model`` makes it) and normalised as :meth:`Network.prepare` does."""
    channels = math.prod(network.input_shape) // (height * width)
    x = graph.node("Unsqueeze", [INPUT_NAME, graph.constant("axis", [1])], "digit")
    if channels > 1:
        x = graph.node("Tile", [x, graph.constant("repeats", [1, channels, 1, 1])], "channels")
    if network.input_shape != (channels, height, width):
        x = graph.node("Reshape", [x, graph.constant("shape", [-1, *network.input_shape])], "shaped")
    # Network.prepare: x * (1 / std) - mean / std, each factor rounded to float32 as NumPy does.
    x = graph.node("Mul", [x, graph.constant("inv_std", 1.0 / network.std)], "scaled")
    return graph.node("Sub", [x, graph.constant("mean_over_std", network.mean / network.std)], "normalised")
