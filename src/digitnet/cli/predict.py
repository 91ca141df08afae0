"""``digitnet predict``: read digits from image files."""

from __future__ import annotations

import json

import click
import numpy as np

from ..errors import ImageError
from ..preprocess import preprocess_for_model
from .common import console, load_model, status_console


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with one object per file.")
def predict(model, images, as_json) -> None:
    """Predict the digit in each IMAGE (PNG, JPEG, BMP; any size, colour, polarity) with MODEL.

    Each image is cropped to its ink, scaled into a 20x20 box and centred by mass in 28x28, as the
    MNIST digits were. A file that cannot be read is reported and the others are still read; the
    exit status is 1 if any file failed.
    """
    network = load_model(model)
    results, failures = [], 0
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
        if not as_json:
            console.print(f"{path}: [bold]{network.class_names[digit]}[/bold] ({probabilities[digit]:.1%})")
    if as_json:
        click.echo(json.dumps(results))
    if failures:
        raise SystemExit(1)
