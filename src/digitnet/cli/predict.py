"""``digitnet predict``: read digits from image files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click
import numpy as np

from ..errors import ImageError
from ..preprocess import preprocess_for_model
from .common import console, model_or_reader, printable, status_console

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def check_show_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Catch ``--show digit.png other.png``, where the first image would be taken as the folder."""
    if value is not None and (value.suffix.lower() in IMAGE_SUFFIXES or value.is_file()):
        raise click.BadParameter(
            f"{value} looks like an image, not a folder; put --show after the "
            "images, or name the folder with --show=DIR."
        )
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


def not_a_file(path: str) -> str | None:
    """Why ``path`` cannot be read as an image file, or None if it is a regular file.

    Checked before opening: opening a folder fails, and opening a named pipe (FIFO) or a device
    waits forever for data that may never come.
    """
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        return f"Image file '{path}' does not exist; check the path."
    except OSError as error:
        return f"Image file '{path}' cannot be read ({error.strerror or error}); check the path."
    if stat.S_ISDIR(mode):
        return f"'{path}' is a directory, not an image file; give the path of a PNG or JPEG file."
    if not stat.S_ISREG(mode):
        return (
            f"'{path}' is not a regular file (a pipe, socket or device); save the image as a "
            "PNG or JPEG file and give its path."
        )
    return None


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(), metavar="[MODEL] IMAGE...")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with one object per file.")
@click.option(
    "--show",
    "show_dir",
    type=click.Path(file_okay=False, path_type=Path),
    is_flag=False,
    flag_value=Path("predictions"),
    default=None,
    callback=check_show_dir,
    metavar="[DIR]",
    help="Also write each image's class probabilities as a bar chart PNG (beside the 28x28 "
    "input the network saw) into DIR [default DIR: predictions]. Put it after the "
    "images, or write --show=DIR.",
)
def predict(paths, as_json, show_dir) -> None:
    """Predict the digit in each IMAGE (PNG, JPEG, BMP; any size, colour, polarity) with MODEL.

    MODEL is a model file (.npz) from `digitnet train`; without one, the reader model that ships
    with digitnet reads the images.

    The digit is found on the page (the paper's colour and uneven light taken out, specks and
    the page's edge dropped), cropped to its ink, scaled into a 20x20 box and centred by mass in
    28x28, as the MNIST digits were. An image without one whole digit (a blank page, two digits
    side by side, a digit cut off by the edge) is refused with a reason rather than guessed.

    Each file is read on its own: one that cannot be read (missing, a folder, not an image,
    refused) is reported and the others are still read; the exit status is 1 if any file failed.
    With --json each failed file gets {"file": ..., "error": ...}.
    """
    model, images = (paths[0], paths[1:]) if paths[0].lower().endswith(".npz") else (None, paths)
    if not images:
        raise click.UsageError("give at least one IMAGE after the model file")
    network, _ = model_or_reader(model)
    results: list[dict[str, object]] = []
    failures = 0
    plots_written: set[Path] = set()

    def fail(path: str, message: str) -> None:
        nonlocal failures
        failures += 1
        results.append({"file": path, "error": message})
        if not as_json:
            status_console.print(f"[red]{printable(path)}: {printable(message)}[/red]")

    for path in images:
        problem = not_a_file(path)
        if problem is not None:
            fail(path, problem)
            continue
        try:
            x = preprocess_for_model(path, network.input_shape)
        except ImageError as error:
            fail(path, str(error))
            continue
        probabilities = network.predict_proba(x[np.newaxis])[0]
        if not np.isfinite(probabilities).all():
            fail(
                path,
                "The model gave NaN or infinite probabilities for this image; its weights "
                "are damaged: train or download the model again.",
            )
            continue
        digit = int(probabilities.argmax())
        label = network.class_names[digit]
        results.append(
            {"file": path, "digit": digit, "label": label, "probabilities": [round(float(p), 6) for p in probabilities]}
        )
        if show_dir is not None:
            from ..plots import plot_probabilities, save_figure

            seen = np.asarray(x).reshape(network.input_shape)[0]  # the (H, W) input, first channel
            title = f"{Path(path).name}: {label} ({probabilities[digit]:.1%})"
            figure = plot_probabilities(
                probabilities, seen, network.class_names, title=title, image_title="what the network sees"
            )
            plot = save_figure(figure, probability_plot_path(show_dir, path, plots_written))
            results[-1]["plot"] = str(plot)
        if not as_json:
            plot_note = f"  → {printable(results[-1]['plot'])}" if show_dir is not None else ""
            console.print(f"{printable(path)}: [bold]{printable(label)}[/bold] ({probabilities[digit]:.1%}){plot_note}")
    if as_json:
        click.echo(json.dumps(results, allow_nan=False))
    if failures:
        raise SystemExit(1)
