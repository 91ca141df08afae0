"""``digitnet export``: write a model in a format other programs run (ONNX)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DigitnetError
from ..nn import Network
from .common import check_writable_file, model_or_reader, printable, status_console

FORMATS = ("onnx",)
DEFAULT_OUT = {"onnx": Path("model.onnx")}


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="onnx",
    show_default=True,
    help="onnx: one .onnx file (opset 17) that takes 28x28 digits in [0, 1], as `digitnet predict` "
    "prepares them, and gives class probabilities; the normalisation is inside.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the exported model [default: model.onnx].",
)
def export(model: Path | None, fmt: str, out: Path | None) -> None:
    """Export MODEL (a .npz from `digitnet train`; without one, the reader model that ships with
    digitnet) so that it runs without digitnet, for example with onnxruntime.

    Needs the onnx extra: pip install 'digitnet[onnx]'.
    """
    from ..onnx_export import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx

    out = DEFAULT_OUT[fmt] if out is None else out
    check_writable_file(out, "--out")
    network, name = model_or_reader(model)
    if not isinstance(network, Network):
        raise DigitnetError(
            f"{printable(name)} is an ensemble file: ONNX export takes one network; "
            "export each member's model file instead."
        )
    export_onnx(network, out)
    height, width = network.input_shape[-2:] if len(network.input_shape) >= 2 else (None, None)
    shape = f"[N, {height}, {width}]" if height else "[N, height, width]"
    status_console.print(
        f"Exported {printable(name)} to {printable(out)} (ONNX opset {OPSET}): input {INPUT_NAME} {shape} "
        f"in [0, 1], output {OUTPUT_NAME} [N, {len(network.class_names)}]."
    )
