"""``digitnet train``: fetch the data if needed, train, evaluate on the test set, save the model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
from click.core import ParameterSource
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ..augment import STRENGTHS
from ..checkpoint import Checkpoint, check_resumable, load_checkpoint, save_checkpoint
from ..errors import CheckpointError, TrainingDiverged, TrainingFailed
from ..experiment import ExperimentConfig, ExperimentResult, run
from ..nn.architectures import ARCHITECTURES
from ..optim import OPTIMIZERS, SCHEDULES
from ..recipes import PRESETS, default_config
from ..threads import splits_batches
from ..train import EpochRecord, Reporter, TrainingInterrupted, TrainState
from .common import (
    DEFAULT_MODEL,
    DatasetName,
    FiniteFloat,
    ThreadCount,
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
@click.option(
    "--dataset",
    type=DatasetName(),
    default="mnist",
    show_default=True,
    help="A dataset by name, or a FOLDER of your own images with one subfolder per class "
    "(FOLDER/<class>/*.png); each image is prepared as `digitnet predict` prepares it.",
)
@click.option(
    "--model",
    "model_name",
    type=click.Choice(sorted(ARCHITECTURES)),
    default=None,
    help="Architecture: mlp is the 784-128-10 multilayer perceptron, cnn a small convolutional "
    "network (99.3% in a few epochs), cnn-padded digitnet's first CNN, on which the 12-CNN ensemble is built "
    "[default: the recipe's, mlp].",
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
    "[default: none for mlp, light for the cnns].",
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
@click.option(
    "--threads",
    type=ThreadCount(),
    default="auto",
    show_default=True,
    help="Threads: a number, or auto to measure at the start whether more than one pays for "
    "this network (one thread for small ones, which also survives a busy machine). A CNN's "
    "threads each train on a share of every batch; an MLP's split its matrix products.",
)
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
@click.option(
    "--checkpoint-every",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Write a checkpoint every N epochs, to resume from with --resume. Ctrl+C always writes one.",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where checkpoints are written [default: next to --out, model.checkpoint.npz for model.npz].",
)
@click.option(
    "--resume",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Continue the run a checkpoint holds, exactly as if it had never stopped (its settings are used; "
    "options that would change them are refused).",
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
    checkpoint_every,
    checkpoint_path,
    resume,
    as_json,
    data_dir,
    cache_dir,
    openml,
) -> None:
    """Train a network on a dataset (MNIST by default), report test accuracy, and save it.

    With no options: the 784-128-10 network with digitnet's tuned recipe.
    """
    check_writable_file(out, "--out")  # found now, not after minutes of training
    checkpoint_path = checkpoint_path or default_checkpoint_path(out)
    check_writable_file(checkpoint_path, "--checkpoint")
    if plots is not None:
        check_writable_folder(plots, "--plots")
    named = PRESETS[preset]
    settings = {
        "dataset": dataset,
        "model": model_name or named.get("model", "mlp"),
        "hidden": hidden,
        "augment": augment or named.get("augment"),
        "seed": seed,
        "val_size": val_size,
        "dtype": dtype,
        "threads": threads,
    }
    recipe = {
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "lr": lr,
        "schedule": schedule,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
        "patience": patience,
    }
    saved = load_checkpoint(resume) if resume is not None else None
    if saved is None:
        config = ExperimentConfig(**settings, recipe={key: value for key, value in recipe.items() if value is not None})
    else:
        config = _resumed_config(saved.config, settings, recipe)
    data = load_dataset_for_cli(config.dataset, data_dir, cache_dir, openml)
    if saved is not None:
        check_resumable(saved, config, data, str(resume))
    if config.val_size is not None and config.val_size >= len(data.train_labels):
        raise click.BadParameter(
            f"must be smaller than the {len(data.train_labels)} training images", param_hint="--val-size"
        )
    saving = _CheckpointWriter(checkpoint_path, config, data, checkpoint_every)
    result = _run_with_progress(config, data, out, saving, saved, resume)
    test_accuracy = result.test_accuracy()
    _refuse_chance_level(result, test_accuracy, out, keep_failed)
    result.network.save(out)
    if plots is not None:
        from ..plots import save_training_plots

        written = save_training_plots(result.network, data, plots)
        status_console.print(f"Wrote {', '.join(str(path) for path in written)}.")
    _report(result, test_accuracy, out, as_json)


def default_checkpoint_path(out: Path) -> Path:
    """``model.npz`` -> ``model.checkpoint.npz``, in the same folder."""
    return out.with_name(f"{out.stem}.checkpoint.npz")


#: ``digitnet train`` parameters that are not settings of the run: they may differ on --resume.
_NOT_SETTINGS = frozenset(
    {"out", "plots", "keep_failed", "checkpoint_every", "checkpoint_path", "resume", "as_json", "threads"}
    | {"data_dir", "cache_dir", "openml"}
)


def _resumed_config(saved: ExperimentConfig, settings: dict, recipe: dict) -> ExperimentConfig:
    """The checkpoint's configuration with the options given on this command line applied (so that
    :func:`~digitnet.checkpoint.check_resumable` can name any that would change the run)."""
    ctx = click.get_current_context()
    given = {
        name
        for name in ctx.params
        if name not in _NOT_SETTINGS and ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
    }
    option_of = {"model": "model_name"}
    changes = {key: value for key, value in settings.items() if option_of.get(key, key) in given}
    if "preset" in given:
        changes.setdefault("model", settings["model"])
        changes.setdefault("augment", settings["augment"])
    overrides = {key: value for key, value in recipe.items() if key in given}
    return replace(saved, **changes, threads=settings["threads"], recipe={**saved.recipe, **overrides})


class _CheckpointWriter:
    """Writes a checkpoint every ``every`` epochs (none if ``every`` is ``None``), and on Ctrl+C."""

    def __init__(self, path: Path, config: ExperimentConfig, data, every: int | None) -> None:
        self.path, self.config, self.data, self.every = path, config, data, every

    def __call__(self, state: TrainState) -> None:
        if self.every is not None and state.epoch % self.every == 0:
            save_checkpoint(self.path, self.config, state, self.data)

    def interrupted(self, state: TrainState, out: Path) -> None:
        """Save ``state`` and say how to continue; exit with 130, the shell's code for Ctrl+C."""
        save_checkpoint(self.path, self.config, state, self.data)
        command = f"digitnet train --resume {self.path}" + (f" --out {out}" if str(out) != DEFAULT_MODEL else "")
        status_console.print(
            f"Interrupted: saved a checkpoint after epoch {state.epoch} of {self.config.train_config().epochs} "
            f"to {self.path}. Resume with: {command}"
        )
        click.get_current_context().exit(130)


def _run_with_progress(
    config: ExperimentConfig, data, out: Path, saving: _CheckpointWriter, saved: Checkpoint | None, resume: Path | None
) -> ExperimentResult:
    """:func:`digitnet.experiment.run` with a progress bar on stderr, checkpoints and Ctrl+C handled."""
    recipe = config.train_config()
    if saved is not None:
        status_console.print(f"Resuming from {resume} after epoch {saved.state.epoch} of {recipe.epochs}.")
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
    try:
        with Progress(*columns, console=status_console, transient=True) as progress:
            start = saved.state if saved is not None else None
            return run(config, data, reporter=ProgressReporter(progress), start=start, on_epoch_end=saving)
    except TrainingDiverged as error:
        raise TrainingDiverged(f"{error} Nothing was written to {out}.") from None
    except CheckpointError as error:
        raise CheckpointError(f"{resume}: {error}; start the run again without --resume.") from None
    except TrainingInterrupted as interrupt:
        saving.interrupted(interrupt.state, out)
        raise  # not reached: interrupted() exits


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


def describe_threads(result: ExperimentResult) -> str:
    """How the run used its threads: "1 BLAS thread", or "2 threads, each on a share of every batch"."""
    count = result.threads_used or 1
    if count > 1 and splits_batches(result.network):
        return f"{count} threads, each on a share of every batch"
    return f"{count} BLAS thread{'' if count == 1 else 's'}"


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
                    "threads": result.threads_used,
                },
                allow_nan=False,
            )
        )
    else:
        status_console.print(
            f"Test accuracy [bold]{test_accuracy:.2%}[/bold] after "
            f"{history.train_seconds:.1f} s of training ({describe_threads(result)}). Saved the model to {out}."
        )
