"""``digitnet train``: fetch the data if needed, train, evaluate on the test set, save the model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from threadpoolctl import threadpool_limits

from ..augment import STRENGTHS, make_augmenter
from ..data import DATASETS
from ..errors import TrainingDiverged
from ..metrics import accuracy
from ..nn.architectures import ARCHITECTURES, build_network
from ..optim import OPTIMIZERS, SCHEDULES
from ..recipes import DEFAULT_AUGMENT, DEFAULT_LR, default_config
from ..train import EpochRecord, Reporter, pixel_statistics, split_validation
from ..train import train as run_training
from .common import DEFAULT_MODEL, cpu_count, data_options, load_dataset_for_cli, status_console


def parse_hidden(ctx, param, value: str) -> tuple[int, ...]:
    """``"256,128"`` -> ``(256, 128)``; an empty string means no hidden layer."""
    try:
        sizes = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of layer sizes, e.g. 256,128")
    if any(size < 1 for size in sizes):
        raise click.BadParameter("every hidden layer needs at least one unit")
    return sizes


class ProgressReporter(Reporter):
    """A live bar with ETA during each epoch and a one-line summary after it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = None

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=batches, loss=float("nan"))

    def batch_done(self, batch: int, loss: float) -> None:
        self.progress.update(self.task, completed=batch, loss=loss)

    def epoch_done(self, record: EpochRecord, epochs: int) -> None:
        self.progress.remove_task(self.task)
        val = f"  val acc {record.val_accuracy:.2%}" if record.val_accuracy is not None else ""
        self.progress.console.print(
            f"epoch {record.epoch:>{len(str(epochs))}}/{epochs}  loss {record.loss:.4f}  "
            f"train acc {record.train_accuracy:.2%}{val}  {record.seconds:.2f} s")


def recipe_help(field: str) -> str:
    return f"[default: from the model's recipe, {getattr(default_config(), field)!r} for mlp]"


@click.command()
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="mnist", show_default=True)
@click.option("--model", "model_name", type=click.Choice(sorted(ARCHITECTURES)), default="mlp",
              show_default=True, help="Architecture: mlp is the seed network.")
@click.option("--hidden", default="128", callback=parse_hidden, show_default=True,
              help="Hidden layer sizes, comma-separated (e.g. 256,128): of the mlp, or the dense layers after "
                   "the cnn's convolutions.")
@click.option("--augment", type=click.Choice(["none", *STRENGTHS]), default=None, is_flag=False,
              flag_value="light", metavar="[none|" + "|".join(STRENGTHS) + "]",
              help="Random distortions (shift, rotation, scale, shear; elastic from medium on) of every "
                   "training batch; the recipe adapts (more epochs). --augment alone means light "
                   "[default: none for mlp, light for cnn].")
@click.option("--epochs", type=click.IntRange(1), default=None, help=recipe_help("epochs"))
@click.option("--batch-size", type=click.IntRange(1), default=None, help=recipe_help("batch_size"))
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None, help=recipe_help("optimizer"))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate [default: the recipe's; 0.1 for sgd, 0.05 with momentum].")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help="Learning-rate schedule over the run " + recipe_help("schedule"))
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None, help="L2 penalty.")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=None)
@click.option("--val-size", type=click.IntRange(0), default=None,
              help="Training images held out for validation, 0 for none [default: one in twelve, "
                   "5000 for MNIST].")
@click.option("--patience", type=click.IntRange(1), default=None,
              help="Stop early after this many epochs without validation improvement.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None,
              help="BLAS threads [default: the number of cores].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL,
              show_default=True, help="Where to save the trained model.")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the learning curve and sample predictions as PNGs into this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
@data_options
def train(dataset, model_name, hidden, augment, epochs, batch_size, optimizer, lr, schedule, weight_decay,
          label_smoothing, val_size, patience, dtype, seed, threads, out, plots, as_json, data_dir, cache_dir,
          openml) -> None:
    """Train a network on a dataset (MNIST by default), report test accuracy, and save it.

    With no options: the seed network 784-128-10 with digitnet's tuned recipe.
    """
    if augment is None:
        augment = DEFAULT_AUGMENT[model_name] or "none"
    augment_name = None if augment == "none" else augment
    config = default_config(model_name, augment_name)
    overrides = {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "schedule": schedule,
                 "weight_decay": weight_decay, "label_smoothing": label_smoothing, "patience": patience}
    config = replace(config, **{key: value for key, value in overrides.items() if value is not None})
    if lr is not None:
        config.lr = lr
    elif optimizer is not None and optimizer != default_config(model_name, augment_name).optimizer:
        config.lr = DEFAULT_LR[optimizer]

    data = load_dataset_for_cli(dataset, data_dir, cache_dir, openml)
    if val_size is None:
        val_size = len(data.train_labels) // 12
    if val_size >= len(data.train_labels):
        raise click.BadParameter(f"must be smaller than the {len(data.train_labels)} training images",
                                 param_hint="--val-size")
    rng = np.random.default_rng(seed)
    train_index, val_index = split_validation(len(data.train_labels), val_size, rng)
    train_pixels = data.train_images[train_index]
    mean, std = pixel_statistics(train_pixels)
    network = build_network(model_name, hidden=hidden, input_shape=(1, *data.image_shape),
                            num_classes=data.num_classes, rng=rng, dtype=np.dtype(dtype), mean=mean, std=std,
                            class_names=data.class_names)
    # Empty (black) pixels in the network's normalised units, for the area shifted into view.
    augmenter = make_augmenter(augment_name, background=(0 - network.mean) / network.std)
    labels = data.train_labels.astype(np.int64)
    status_console.print(f"Training {network.describe()} on {dataset}: {len(train_index)} training and "
                         f"{len(val_index)} validation images; {config.optimizer} lr {config.lr:g}, "
                         f"batch {config.batch_size}, {config.epochs} epochs.")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
    with threadpool_limits(limits=threads or cpu_count()), \
            Progress(*columns, console=status_console, transient=True) as progress:
        try:
            # Index the uint8 images first: one float copy of each split, no float copy of all.
            history = run_training(network, network.prepare(train_pixels), labels[train_index], config,
                                   rng, x_val=network.prepare(data.train_images[val_index]),
                                   y_val=labels[val_index],
                                   reporter=ProgressReporter(progress), augment=augmenter)
        except TrainingDiverged as error:
            raise TrainingDiverged(f"{error} Nothing was written to {out}.") from None
        test_accuracy = accuracy(data.test_labels, network.predict(data.test_images))
    network.metadata.update({
        "dataset": dataset,
        "model": model_name,
        "training": {**config.to_dict(), "hidden": list(hidden), "augment": augment,
                     # the distortions themselves, interpolation included: names may be retuned
                     "augment_strength": augmenter.strength.to_dict() if augmenter else None,
                     "seed": seed, "val_size": val_size, "train_size": len(train_index), "dtype": dtype},
        "metrics": {"test_accuracy": test_accuracy, "train_seconds": history.train_seconds},
        "history": history.to_list(),
    })
    network.save(out)
    if plots is not None:
        from ..plots import save_training_plots

        written = save_training_plots(network, data, plots)
        status_console.print(f"Wrote {', '.join(str(path) for path in written)}.")
    if as_json:
        click.echo(json.dumps({"test_accuracy": test_accuracy, "train_seconds": history.train_seconds,
                               "history": history.to_list(), "model": str(out), "dataset": dataset,
                               "architecture": network.describe(), "config": config.to_dict(),
                               "stopped_early": history.stopped_early}))
    else:
        status_console.print(f"Test accuracy [bold]{test_accuracy:.2%}[/bold] after "
                             f"{history.train_seconds:.1f} s of training. Saved the model to {out}.")
