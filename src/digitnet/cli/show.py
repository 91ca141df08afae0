"""``digitnet show``: draw a saved model's figures on its dataset's test set, as PNG files."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DigitnetError
from ..nn import Network
from .common import data_options, load_dataset_for_cli, status_console


def parse_what(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """``--what samples,confusion --what weights`` -> the chosen figure names, in canonical order."""
    from ..plots import FIGURES

    chosen = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(chosen - set(FIGURES) - {"all"})
    if unknown:
        raise click.BadParameter(f"unknown figure {', '.join(unknown)}; choose from {', '.join(FIGURES)} or all.")
    if not chosen or "all" in chosen:
        return ()  # empty means "all, by default"
    return tuple(name for name in FIGURES if name in chosen)


WHAT_HELP = (
    "Which figures, repeatable or comma-separated: samples (test images with predictions), "
    "mistakes (the most confident wrong ones), confusion (matrix heatmap), learning-curves "
    "(from the saved history), weights (first layer as images), probabilities (bars for one "
    "test image, see --index) [default: all]."
)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("plots"),
    show_default=True,
    help="Folder the PNG files are written to (created if needed).",
)
@click.option("--what", "what", multiple=True, callback=parse_what, metavar="NAME[,NAME...]", help=WHAT_HELP)
@click.option(
    "--index",
    type=int,
    default=0,
    show_default=True,
    help="The test image whose class probabilities the probabilities figure shows.",
)
@data_options
def show(model, out, what, index, data_dir, cache_dir, openml) -> None:
    """Draw MODEL's figures on its dataset's test set and write them as PNGs into --out.

    Nothing opens on screen; look at the files with any image viewer.
    """
    try:
        written = _draw(model, out, what, index, data_dir, cache_dir, openml)
    except DigitnetError as error:
        # Converted here as well as in the main group, so the command reports cleanly on its own.
        raise click.ClickException(str(error)) from None
    for path in written:
        click.echo(str(path))


def _draw(model, out: Path, what: tuple[str, ...], index: int, data_dir, cache_dir, openml: bool) -> list[Path]:
    from ..plots import FIGURES, require_history, save_model_plots

    network = Network.load(model)
    if "learning-curves" in what:  # asked for by name: fail before drawing anything
        require_history(network, source=str(model))
    what = what or tuple(FIGURES)  # by default, a missing history is a note, not an error
    dataset = network.metadata.get("dataset", "mnist")
    data = load_dataset_for_cli(dataset, data_dir, cache_dir, openml)
    if (1, *data.image_shape) != network.input_shape or data.num_classes != len(network.class_names):
        raise DigitnetError(
            f"{model} reads {network.input_shape} images with {len(network.class_names)} "
            f"classes, but its dataset {dataset} has {data.image_shape} images with "
            f"{data.num_classes}; the model's metadata names the wrong dataset."
        )
    return save_model_plots(
        network,
        data,
        out,
        what,
        index=index,
        source=str(model),
        note=lambda message: status_console.print(message, markup=False),
    )
