"""``digitnet show``: draw a saved model's figures on its dataset's test set, as PNG files, or
compare several models' robustness in one figure."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import Dataset
from ..errors import DigitnetError
from ..nn import Network
from ..nn.ensemble import Model
from .common import data_options, load_dataset_for_cli, model_or_reader, status_console


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
    "test image, see --index), robustness (accuracy as test digits are rotated, thickened, "
    "blurred, made noisy, shifted and scaled; compares several models; about a minute, so drawn "
    "only when named); all (every figure but robustness) [default: all]."
)


@click.command()
@click.argument("models", nargs=-1, type=click.Path(dir_okay=False), metavar="[MODEL ...]")
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
def show(models, out, what, index, data_dir, cache_dir, openml) -> None:
    """Draw MODEL's figures on its dataset's test set and write them as PNGs into --out.

    With no MODEL, the reader model that ships with digitnet. Several models can be compared in
    the robustness figure (`--what robustness`), one line each. Nothing opens on screen; look at
    the files with any image viewer.
    """
    try:
        written = _draw(models, out, what, index, data_dir, cache_dir, openml)
    except DigitnetError as error:
        # Converted here as well as in the main group, so the command reports cleanly on its own.
        raise click.ClickException(str(error)) from None
    for path in written:
        click.echo(str(path))


def _draw(models, out: Path, what: tuple[str, ...], index: int, data_dir, cache_dir, openml: bool) -> list[Path]:
    from ..plots import DEFAULT_FIGURES, require_history, robustness_figure, save_figure, save_model_plots

    if len(models) > 1 and what != ("robustness",):
        raise DigitnetError(
            "several models can only be compared in the robustness figure: add --what robustness, "
            "or name one model for the other figures."
        )
    loaded = [model_or_reader(path) for path in models or [None]]
    networks = {source: network for network, source in loaded}
    network, source = next(iter(networks.values())), next(iter(networks))
    if "learning-curves" in what:  # asked for by name: fail before drawing anything
        require_history(network, source=source)
    if not isinstance(network, Network):  # an ensemble: no single first layer to draw
        if "weights" in what:
            raise DigitnetError(f"{source} is an ensemble, which has no single first layer to draw; drop weights.")
        what = tuple(name for name in what or DEFAULT_FIGURES if name != "weights")
    data = _dataset_of(networks, data_dir, cache_dir, openml)
    if len(networks) > 1:
        return [save_figure(robustness_figure(networks, data), out / "robustness.png")]
    return save_model_plots(
        network,
        data,
        out,
        what or DEFAULT_FIGURES,  # by default, a missing history is a note, not an error
        index=index,
        source=source,
        note=lambda message: status_console.print(message, markup=False),
    )


def _dataset_of(networks: dict[str, Model], data_dir, cache_dir, openml: bool) -> Dataset:
    """The test set the models were trained for (the first model's dataset; all must read it)."""
    datasets = {source: network.metadata.get("dataset") or "mnist" for source, network in networks.items()}
    dataset = next(iter(datasets.values()))
    for source, other in datasets.items():
        if other != dataset:
            raise DigitnetError(
                f"{source} was trained on {other}, not {dataset}; compare models trained on the same dataset."
            )
    data = load_dataset_for_cli(dataset, data_dir, cache_dir, openml)
    for source, network in networks.items():
        if (1, *data.image_shape) != network.input_shape or data.num_classes != len(network.class_names):
            raise DigitnetError(
                f"{source} reads {network.input_shape} images with {len(network.class_names)} "
                f"classes, but the dataset {dataset} has {data.image_shape} images with "
                f"{data.num_classes}; compare models trained on the same dataset."
            )
    return data
