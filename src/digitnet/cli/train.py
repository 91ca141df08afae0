"""``digitnet train``: fetch the data if needed, train, evaluate on the test set, save the model."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ..augment import STRENGTHS
from ..data import DATASETS
from ..errors import TrainingDiverged, TrainingFailed
from ..experiment import ExperimentConfig, ExperimentResult, run
from ..nn.architectures import ARCHITECTURES
from ..optim import OPTIMIZERS, SCHEDULES
from ..recipes import PRESETS, default_config
from ..train import EpochRecord, Reporter
from .common import (
    DEFAULT_MODEL,
    FiniteFloat,
    check_writable_file,
    check_writable_folder,
    data_options,
    load_dataset_for_cli,
    status_console,
)

#: The widest hidden layer the command accepts: larger layers would not fit a typical machine's
#: memory with the training set, and a typo (an extra zero or two) should not be tried for minutes.
MAX_HIDDEN_UNITS = 65_536


def parse_hidden(ctx, param, value: str) -> tuple[int, ...]:
    """``"256,128"`` -> ``(256, 128)``; an empty string means no hidden layer."""
    try:
        sizes = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of layer sizes, e.g. 256,128") from None
    if any(size < 1 for size in sizes):
        raise click.BadParameter("every hidden layer needs at least one unit")
    if any(size > MAX_HIDDEN_UNITS for size in sizes):
        raise click.BadParameter(f"at most {MAX_HIDDEN_UNITS} units per layer (got {max(sizes)})")
    return sizes


class ProgressReporter(Reporter):
    """A live bar with ETA during each epoch and a one-line summary after it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = TaskID(-1)

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=batches, loss="...")

    def batch_done(self, batch: int, loss: float) -> None:
        self.progress.update(self.task, completed=batch, loss=f"{loss:.4f}")

    def epoch_done(self, record: EpochRecord, epochs: int) -> None:
        self.progress.remove_task(self.task)
        val = f"  val acc {record.val_accuracy:.2%}" if record.val_accuracy is not None else ""
        self.progress.console.print(
            f"epoch {record.epoch:>{len(str(epochs))}}/{epochs}  loss {record.loss:.4f}  "
            f"train acc {record.train_accuracy:.2%}{val}  {record.seconds:.2f} s"
        )


def recipe_help(field: str) -> str:
    """The ``--help`` default note for an option whose default comes from the model's recipe."""
    return f"[default: from the model's recipe, {getattr(default_config(), field)!r} for mlp]"


@click.command()
@click.option(
    "--recipe",
    "preset",
    type=click.Choice(sorted(PRESETS)),
    default="default",
    show_default=True,
    help="A named experiment: reader trains the model `digitnet predict` ships with (a CNN that "
    "reads other writers, pens and scanners). Options given with it still apply.",
)
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="mnist", show_default=True)
@click.option(
    "--model",
    "model_name",
    type=click.Choice(sorted(ARCHITECTURES)),
    default=None,
    help="Architecture: mlp is the 784-128-10 multilayer perceptron, cnn a small convolutional "
    "network [default: the recipe's, mlp].",
)
@click.option(
    "--hidden",
    default="128",
    callback=parse_hidden,
    show_default=True,
    help="Hidden layer sizes, comma-separated (e.g. 256,128): of the mlp, or the dense layers after "
    "the cnn's convolutions.",
)
@click.option(
    "--augment",
    type=click.Choice(["none", *STRENGTHS]),
    default=None,
    is_flag=False,
    flag_value="light",
    metavar="[none|" + "|".join(STRENGTHS) + "]",
    help="Random distortions (shift, rotation, scale, shear; elastic from medium on) of every "
    "training batch; the recipe adapts (more epochs). --augment alone means light "
    "[default: none for mlp, light for cnn].",
)
@click.option("--epochs", type=click.IntRange(1), default=None, help=recipe_help("epochs"))
@click.option("--batch-size", type=click.IntRange(1), default=None, help=recipe_help("batch_size"))
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None, help=recipe_help("optimizer"))
@click.option(
    "--lr",
    type=FiniteFloat(0, low_open=True),
    default=None,
    help="Peak learning rate [default: the recipe's; 0.1 for sgd, 0.05 with momentum].",
)
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    default=None,
    help="Learning-rate schedule over the run " + recipe_help("schedule"),
)
@click.option("--weight-decay", type=FiniteFloat(0), default=None, help="L2 penalty on the weights [default: 0].")
@click.option(
    "--label-smoothing",
    type=FiniteFloat(0, 1, high_open=True),
    default=None,
    help="Mix this much of the uniform distribution into the one-hot targets [default: 0].",
)
@click.option(
    "--val-size",
    type=click.IntRange(0),
    default=None,
    help="Training images held out for validation, 0 for none [default: one in twelve, 5000 for MNIST].",
)
@click.option(
    "--patience",
    type=click.IntRange(1),
    default=None,
    help="Stop early after this many epochs without validation improvement.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64"]),
    default="float32",
    show_default=True,
    help="Floating-point precision of the network: float32 is about twice as fast, float64 is for exact checks.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=0,
    show_default=True,
    help="Seeds the run's one random generator: the validation split, the initial weights, "
    "the batch order and the distortions. The same seed gives the same model.",
)
@click.option("--threads", type=click.IntRange(1), default=None, help="BLAS threads [default: the number of cores].")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_MODEL,
    show_default=True,
    help="Where to save the trained model.",
)
@click.option(
    "--plots",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write the learning curve and sample predictions as PNGs into this folder.",
)
@click.option(
    "--keep-failed",
    is_flag=True,
    help="Save the model even if training ended at chance level (it is refused otherwise).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
@data_options
def train(
    preset,
    dataset,
    model_name,
    hidden,
    augment,
    epochs,
    batch_size,
    optimizer,
    lr,
    schedule,
    weight_decay,
    label_smoothing,
    val_size,
    patience,
    dtype,
    seed,
    threads,
    out,
    plots,
    keep_failed,
    as_json,
    data_dir,
    cache_dir,
    openml,
) -> None:
    """Train a network on a dataset (MNIST by default), report test accuracy, and save it.

    With no options: the 784-128-10 network with digitnet's tuned recipe.
    """
    check_writable_file(out, "--out")  # found now, not after minutes of training
    if plots is not None:
        check_writable_folder(plots, "--plots")
    named = PRESETS[preset]
    config = ExperimentConfig(
        dataset=dataset,
        model=model_name or named.get("model", "mlp"),
        hidden=hidden,
        augment=augment or named.get("augment"),
        seed=seed,
        val_size=val_size,
        dtype=dtype,
        threads=threads,
        recipe={
            key: value
            for key, value in {
                "epochs": epochs,
                "batch_size": batch_size,
                "optimizer": optimizer,
                "lr": lr,
                "schedule": schedule,
                "weight_decay": weight_decay,
                "label_smoothing": label_smoothing,
                "patience": patience,
            }.items()
            if value is not None
        },
    )
    data = load_dataset_for_cli(dataset, data_dir, cache_dir, openml)
    if val_size is not None and val_size >= len(data.train_labels):
        raise click.BadParameter(
            f"must be smaller than the {len(data.train_labels)} training images", param_hint="--val-size"
        )
    result = _run_with_progress(config, data, out)
    test_accuracy = result.test_accuracy()
    _refuse_chance_level(result, test_accuracy, out, keep_failed)
    result.network.save(out)
    if plots is not None:
        from ..plots import save_training_plots

        written = save_training_plots(result.network, data, plots)
        status_console.print(f"Wrote {', '.join(str(path) for path in written)}.")
    _report(result, test_accuracy, out, as_json)


def _run_with_progress(config: ExperimentConfig, data, out: Path) -> ExperimentResult:
    """:func:`digitnet.experiment.run` with a progress bar on stderr."""
    recipe = config.train_config()
    status_console.print(
        f"Training {config.model} on {data.name}; {recipe.optimizer} lr {recipe.lr:g}, "
        f"batch {recipe.batch_size}, {recipe.epochs} epochs, augmentation "
        f"{config.augment_strength or 'none'}, seed {config.seed}."
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=status_console, transient=True) as progress:
        try:
            return run(config, data, reporter=ProgressReporter(progress))
        except TrainingDiverged as error:
            raise TrainingDiverged(f"{error} Nothing was written to {out}.") from None


def _refuse_chance_level(result: ExperimentResult, test_accuracy: float, out: Path, keep_failed: bool) -> None:
    """A run no better than guessing is a failure to report, not a model to save over a good one."""
    chance = 1 / result.data.num_classes
    if test_accuracy >= 1.5 * chance or keep_failed:
        return
    raise TrainingFailed(
        f"Training ended at chance level ({test_accuracy:.1%} test accuracy, guessing gives {chance:.0%}; final "
        f"loss {result.history.epochs[-1].loss:.3g}), so nothing was written to {out}. Lower the learning rate "
        f"(now {result.train_config.lr:g}), or pass --keep-failed to save it anyway."
    )


def _report(result: ExperimentResult, test_accuracy: float, out: Path, as_json: bool) -> None:
    history = result.history
    if as_json:
        click.echo(
            json.dumps(
                {
                    "test_accuracy": test_accuracy,
                    "train_seconds": history.train_seconds,
                    "history": history.to_list(),
                    "model": str(out),
                    "dataset": result.data.name,
                    "architecture": result.network.describe(),
                    "config": result.train_config.to_dict(),
                    "stopped_early": history.stopped_early,
                },
                allow_nan=False,
            )
        )
    else:
        status_console.print(
            f"Test accuracy [bold]{test_accuracy:.2%}[/bold] after "
            f"{history.train_seconds:.1f} s of training. Saved the model to {out}."
        )
