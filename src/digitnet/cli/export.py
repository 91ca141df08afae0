"""``digitnet export``: write a model in a format other programs run (ONNX, or a static web page)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DigitnetError
from ..nn import Network
from .common import check_writable_file, model_or_reader, printable, status_console

FORMATS = ("onnx", "web")
DEFAULT_OUT = {"onnx": Path("model.onnx"), "web": Path("digitnet-web")}


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="onnx",
    show_default=True,
    help="onnx: one .onnx file (opset 17) that takes 28x28 digits in [0, 1], as `digitnet predict` "
    "prepares them, and gives class probabilities; the normalisation is inside. web: a folder with a "
    "draw-a-digit page that runs that file in the browser (onnxruntime-web, fetched once with npm); "
    "serve it with any static file server, such as python -m http.server.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the exported model: a file for onnx [default: model.onnx], a folder for web "
    "[default: digitnet-web].",
)
def export(model: Path | None, fmt: str, out: Path | None) -> None:
    """Export MODEL (a .npz from `digitnet train`; without one, the reader model that ships with
    digitnet) so that it runs without digitnet, for example with onnxruntime or in a web browser.

    Needs the onnx extra: pip install 'digitnet[onnx]'; the web page also needs npm.
    """
    out = DEFAULT_OUT[fmt] if out is None else out
    if fmt == "onnx":
        check_writable_file(out, "--out")
    else:
        _check_web_folder(out)
    network, name = model_or_reader(model)
    if not isinstance(network, Network):
        raise DigitnetError(
            f"{printable(name)} is an ensemble file: {'ONNX' if fmt == 'onnx' else 'web-page'} export takes one "
            "network; export each member's model file instead."
        )
    if fmt == "web":
        _export_web(network, model, name, out)
    else:
        _export_onnx(network, name, out)


def _export_onnx(network: Network, name: str, out: Path) -> None:
    from ..onnx_export import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx

    export_onnx(network, out)
    height, width = network.input_shape[-2:] if len(network.input_shape) >= 2 else (None, None)
    shape = f"[N, {height}, {width}]" if height else "[N, height, width]"
    status_console.print(
        f"Exported {printable(name)} to {printable(out)} (ONNX opset {OPSET}): input {INPUT_NAME} {shape} "
        f"in [0, 1], output {OUTPUT_NAME} [N, {len(network.class_names)}]."
    )


def _check_web_folder(out: Path) -> None:
    """Refuse, before the model is loaded, a --out the web page could not be written to."""
    from ..web_export import WebExportError, check_destination

    try:
        check_destination(out)
    except WebExportError as error:
        raise click.BadParameter(str(error), param_hint="--out") from None


def _export_web(network: Network, model: Path | None, name: str, out: Path) -> None:
    from ..data.cache import sha256_of_file
    from ..reader import reader_path
    from ..web_export import ORT_WEB_VERSION, export_web, onnxruntime_web_cached

    source = reader_path() if model is None else model
    if not onnxruntime_web_cached():
        status_console.print(f"Fetching onnxruntime-web {ORT_WEB_VERSION} with npm (once; about 15 MB)...")
    export_web(network, out, model_name=source.name, model_sha256=sha256_of_file(source))
    status_console.print(
        f"Exported {printable(name)} as a web page to {printable(out)} (onnxruntime-web {ORT_WEB_VERSION}); "
        f"view it with: python -m http.server --directory {printable(out)}, then open http://localhost:8000/"
    )
