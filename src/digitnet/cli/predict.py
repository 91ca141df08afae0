"""``digitnet predict``: read digits from image files."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..errors import ImageError
from ..preprocess import preprocess_for_model
from ..nn import Network
from .common import console, status_console

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def check_show_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Catch ``--show digit.png other.png``, where the first image would be taken as the folder."""
    if value is not None and (value.suffix.lower() in IMAGE_SUFFIXES or value.is_file()):
        raise click.BadParameter(f"{value} looks like an image, not a folder; put --show after the "
                                 "images, or name the folder with --show=DIR.")
    return value


def probability_plot_path(folder: Path, image: str, taken: set[Path]) -> Path:
    """``folder/<image stem>-probabilities.png``, numbered when two images share a stem."""
    stem = Path(image).stem or "image"
    path, number = folder / f"{stem}-probabilities.png", 1
    while path in taken:
        number += 1
        path = folder / f"{stem}-{number}-probabilities.png"
    taken.add(path)
    return path


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with one object per file.")
@click.option("--show", "show_dir", type=click.Path(file_okay=False, path_type=Path), is_flag=False,
              flag_value=Path("predictions"), default=None, callback=check_show_dir, metavar="[DIR]",
              help="Also write each image's class probabilities as a bar chart PNG (beside the 28x28 "
                   "input the network saw) into DIR [default DIR: predictions]. Put it after the "
                   "images, or write --show=DIR.")
def predict(model, images, as_json, show_dir) -> None:
    """Predict the digit in each IMAGE (PNG, JPEG, BMP; any size, colour, polarity) with MODEL.

    Each image is cropped to its ink, scaled into a 20x20 box and centred by mass in 28x28, as the
    MNIST digits were. A file that cannot be read is reported and the others are still read; the
    exit status is 1 if any file failed.
    """
    network = Network.load(model)
    results, failures = [], 0
    plots_written: set[Path] = set()
    for path in images:
        try:
            x = preprocess_for_model(path, network.input_shape)
        except ImageError as error:
            failures += 1
            results.append({"file": path, "error": str(error)})
            if not as_json:
                status_console.print(f"[red]{path}: {error}[/red]")
            continue
        probabilities = network.predict_proba(x[np.newaxis])[0]
        digit = int(probabilities.argmax())
        results.append({"file": path, "digit": digit, "label": network.class_names[digit],
                        "probabilities": [round(float(p), 6) for p in probabilities]})
        if show_dir is not None:
            from ..plots import plot_probabilities, save_figure

            seen = np.asarray(x).reshape(network.input_shape)[0]  # the (H, W) input, first channel
            title = f"{Path(path).name}: {network.class_names[digit]} ({probabilities[digit]:.1%})"
            figure = plot_probabilities(probabilities, seen, network.class_names, title=title,
                                        image_title="what the network sees")
            plot = save_figure(figure, probability_plot_path(show_dir, path, plots_written))
            results[-1]["plot"] = str(plot)
        if not as_json:
            shown = f"  → {results[-1]['plot']}" if show_dir is not None else ""
            console.print(f"{path}: [bold]{network.class_names[digit]}[/bold] "
                          f"({probabilities[digit]:.1%}){shown}")
    if as_json:
        click.echo(json.dumps(results))
    if failures:
        raise SystemExit(1)
