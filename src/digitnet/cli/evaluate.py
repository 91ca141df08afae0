"""``digitnet evaluate``: a saved model's scores on its dataset's test set."""

from __future__ import annotations

import json

import click
import numpy as np
from rich.markup import escape
from rich.table import Table

from ..metrics import evaluate as score
from ..nn.ensemble import load_model
from .common import DatasetName, console, data_options, load_dataset_for_cli, printable, status_console


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--dataset",
    type=DatasetName(),
    default=None,
    help="Evaluate on this dataset's test set (a name, or a FOLDER of images with one subfolder per "
    "class) [default: the one the model was trained on].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@data_options
def evaluate(models, dataset, as_json, data_dir, cache_dir, openml) -> None:
    """Accuracy, confusion matrix and per-class precision and recall of MODEL on the test set.

    Several MODELS are evaluated as an ensemble: their class probabilities are averaged. MODEL may
    be an ensemble file from `digitnet ensemble` (its members' probabilities averaged).
    """
    networks = [load_model(model) for model in models]
    network = networks[0]
    dataset = dataset or network.metadata.get("dataset", "mnist")
    data = load_dataset_for_cli(dataset, data_dir, cache_dir, openml)
    _check_models_fit(models, networks, data)
    _warn_about_another_dataset(networks, dataset)
    probabilities = np.mean([member.predict_proba(data.test_images) for member in networks], axis=0)
    result = score(data.test_labels, probabilities.argmax(axis=1), data.num_classes)
    model = " + ".join(models)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": model,
                    "models": list(models),
                    "dataset": dataset,
                    "accuracy": result.accuracy,
                    "n": result.n,
                    "confusion": result.confusion.tolist(),
                    "precision": result.precision.tolist(),
                    "recall": result.recall.tolist(),
                    "class_names": network.class_names,
                },
                allow_nan=False,
            )
        )
        return
    described = network.describe() if len(networks) == 1 else f"an ensemble of {len(networks)} models"
    console.print(f"[bold]{escape(model)}[/bold]: {described} on the {dataset} test set")
    console.print(
        f"Accuracy [bold]{result.accuracy:.2%}[/bold] ({int(result.confusion.trace())} of {result.n} correct)\n"
    )
    _print_tables(result, [printable(name) for name in network.class_names])


def _check_models_fit(models, networks, data) -> None:
    """Every model must read this dataset's images and name as many classes as it has."""
    for model, member in zip(models, networks):
        if (1, *data.image_shape) != member.input_shape or data.num_classes != len(member.class_names):
            raise click.ClickException(
                f"{model} reads {member.input_shape} images with {len(member.class_names)} classes, but "
                f"{data.name} has {data.image_shape} images with {data.num_classes}; pass the --dataset it "
                "was trained on."
            )


def _warn_about_another_dataset(networks, dataset: str) -> None:
    """Scoring a model on a dataset it never saw gives a figure near guessing: say so."""
    trained_on = {str(member.metadata.get("dataset")) for member in networks} - {"None"}
    if trained_on and trained_on != {dataset}:
        status_console.print(
            f"[yellow]Warning:[/yellow] the model was trained on {escape(', '.join(sorted(trained_on)))}, "
            f"not {dataset}: expect an accuracy near guessing. Pass --dataset "
            f"{escape(sorted(trained_on)[0])} to score it on the data it learned from."
        )


def _print_tables(result, names: list[str]) -> None:
    """The per-class scores and the confusion matrix, as terminal tables."""
    classes = Table(title="Per class")
    for column in ("class", "precision", "recall", "F1", "count"):
        classes.add_column(column, justify="right")
    for k, name in enumerate(names):
        classes.add_row(
            name,
            f"{result.precision[k]:.2%}",
            f"{result.recall[k]:.2%}",
            f"{result.f1[k]:.2%}",
            str(result.confusion[k].sum()),
        )
    console.print(classes)
    confusion = Table(title="Confusion matrix (rows: true class, columns: predicted)")
    confusion.add_column("")
    for name in names:
        confusion.add_column(name[:8], justify="right")
    for k, name in enumerate(names):
        confusion.add_row(
            name[:8],
            *(
                f"[bold]{v}[/bold]" if j == k else (str(v) if v else "[dim]·[/dim]")
                for j, v in enumerate(result.confusion[k])
            ),
        )
    console.print(confusion)
