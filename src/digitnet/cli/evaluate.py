"""``digitnet evaluate``: a saved model's scores on its dataset's test set."""

from __future__ import annotations

import json

import click
from rich.table import Table

from ..data import DATASETS
from ..metrics import evaluate as score
from .common import console, data_options, load_dataset_for_cli, load_model


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default=None,
              help="Evaluate on this dataset's test set [default: the one the model was trained on].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@data_options
def evaluate(model, dataset, as_json, data_dir, cache_dir, openml) -> None:
    """Accuracy, confusion matrix and per-class precision and recall of MODEL on the test set."""
    network = load_model(model)
    dataset = dataset or network.metadata.get("dataset", "mnist")
    data = load_dataset_for_cli(dataset, data_dir, cache_dir, openml)
    if (1, *data.image_shape) != network.input_shape or data.num_classes != len(network.class_names):
        raise click.ClickException(f"{model} reads {network.input_shape} images with "
                                   f"{len(network.class_names)} classes, but {dataset} has "
                                   f"{data.image_shape} images with {data.num_classes}; pass the "
                                   "--dataset it was trained on.")
    result = score(data.test_labels, network.predict(data.test_images), data.num_classes)
    if as_json:
        click.echo(json.dumps({
            "model": str(model), "dataset": dataset, "accuracy": result.accuracy, "n": result.n,
            "confusion": result.confusion.tolist(), "precision": result.precision.tolist(),
            "recall": result.recall.tolist(), "class_names": network.class_names}))
        return
    console.print(f"[bold]{model}[/bold]: {network.describe()} on the {dataset} test set")
    console.print(f"Accuracy [bold]{result.accuracy:.2%}[/bold] ({int(result.confusion.trace())} of "
                  f"{result.n} correct)\n")
    classes = Table(title="Per class")
    for column in ("class", "precision", "recall", "F1", "count"):
        classes.add_column(column, justify="right")
    for k, name in enumerate(network.class_names):
        classes.add_row(name, f"{result.precision[k]:.2%}", f"{result.recall[k]:.2%}",
                        f"{result.f1[k]:.2%}", str(result.confusion[k].sum()))
    console.print(classes)
    confusion = Table(title="Confusion matrix (rows: true class, columns: predicted)")
    confusion.add_column("")
    for name in network.class_names:
        confusion.add_column(name[:8], justify="right")
    for k, name in enumerate(network.class_names):
        confusion.add_row(name[:8], *(f"[bold]{v}[/bold]" if j == k else (str(v) if v else "[dim]·[/dim]")
                                      for j, v in enumerate(result.confusion[k])))
    console.print(confusion)
