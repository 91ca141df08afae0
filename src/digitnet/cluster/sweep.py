"""``digitnet sweep`` on Ray Tune: every trial is one :func:`digitnet.experiment.run`.

Each trial reports its validation accuracy after every epoch (the number training already
computes), so ASHA can stop weak trials early; the test set is never looked at. The sweep lives in
one folder::

    sweep.json    the sweep as started (a rerun with the same file resumes it)
    tune/         Ray Tune's experiment state and each trial's final checkpoint (its model file)
    trials.csv    one row per trial: its settings, epochs trained, validation accuracy, seconds
    sweep.png     validation accuracy against each hyperparameter the sweep varied

Stopped by Ctrl+C or a crash, the same command resumes it with Tune's restore: finished trials are
kept, unfinished ones start again.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import Dataset
from ..data.cache import atomic_write_bytes
from ..errors import DigitnetError
from ..experiment import ExperimentConfig, run
from ..nn import Network
from ..recipes import default_config
from ..train import EpochRecord, Reporter
from .space import SweepSpec, parse_hidden

METRIC = "val_accuracy"
SPEC_FILE = "sweep.json"
TUNE_DIR = "tune"
#: Recipe settings a trial's configuration may hold (the rest are ExperimentConfig fields).
RECIPE_KEYS = ("lr", "batch_size", "epochs", "optimizer", "schedule", "weight_decay", "label_smoothing")


def experiment_config(params: dict[str, Any]) -> ExperimentConfig:
    """The experiment one trial runs, from the trial's sampled settings."""
    return ExperimentConfig(
        dataset=params["dataset"],
        model=params["model"],
        hidden=parse_hidden(str(params["hidden"])),
        augment=params["augment"],
        seed=params["seed"],
        val_size=params["val_size"],
        threads=params["threads"],
        recipe={key: params[key] for key in RECIPE_KEYS if params.get(key) is not None},
    )


class TuneReporter(Reporter):
    """Forwards each epoch's validation accuracy (and loss) to Tune, which may stop the trial.

    It never attaches a checkpoint: :func:`trial` takes a restored checkpoint to mean "finished".
    """

    def epoch_done(self, record: EpochRecord, epochs: int) -> None:
        from ray import tune

        tune.report(
            {
                METRIC: record.val_accuracy,
                "epoch": record.epoch,
                "loss": record.loss,
                "train_accuracy": record.train_accuracy,
                "epoch_seconds": record.seconds,
            }
        )


def trial(params: dict[str, Any], data: Dataset) -> None:
    """One Tune trial: train, then report once more with the model file as the checkpoint."""
    import ray
    from ray import tune

    if tune.get_checkpoint() is not None:
        # Only the final report carries a checkpoint (TuneReporter never attaches one), so this trial
        # had finished when Ctrl+C stopped the sweep, before Tune marked it done. Returning ends it
        # with that final result again. (Ctrl+C between Tune logging that result and saving its
        # checkpoint still means one more training: time lost, nothing wrong kept.)
        return
    started = time.perf_counter()
    result = run(experiment_config(params), data, reporter=TuneReporter())
    last = result.history.epochs[-1]
    with tempfile.TemporaryDirectory() as folder:
        result.network.save(Path(folder) / "model.npz")
        tune.report(
            {
                METRIC: last.val_accuracy,
                "epoch": last.epoch,
                "loss": last.loss,
                "train_accuracy": last.train_accuracy,
                "train_seconds": result.history.train_seconds,
                "trial_seconds": time.perf_counter() - started,
                "finished": True,
                "node": ray.get_runtime_context().get_node_id(),
            },
            checkpoint=tune.Checkpoint.from_directory(folder),
        )


@dataclass
class SweepOutcome:
    """What a finished (or interrupted) sweep left behind."""

    rows: list[dict[str, Any]]
    varied: list[str]
    best: dict[str, Any] | None
    interrupted: bool
    csv_path: Path
    figure_path: Path | None


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """Tune's search space: the varied settings, and the fixed ones every trial needs."""
    space = {name: dist.to_tune(grid=spec.search == "grid") for name, dist in spec.space.given().items()}
    return {
        **space,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "val_size": spec.val_size,
        "threads": spec.threads_per_trial,
    }


def horizon(spec: SweepSpec) -> int:
    """The most epochs a trial can train: ASHA's ``max_t``."""
    if (epochs := spec.space.max_epochs()) is not None:
        return epochs
    models, augments = spec.space.model.candidates(), spec.space.augment.candidates()
    return max(default_config(m, None if a == "none" else a).epochs for m in models for a in augments)


def tune_config(spec: SweepSpec, concurrency: int) -> Any:
    """Searcher, ASHA and the concurrency limit."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    if spec.search == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch

            searcher: Any = OptunaSearch(seed=spec.seed)
        except (ImportError, AssertionError):
            raise DigitnetError(
                "search = optuna needs Optuna; install it with pip install 'digitnet[cluster]'."
            ) from None
    else:
        searcher = BasicVariantGenerator(random_state=spec.seed, max_concurrent=concurrency)
    scheduler = (
        # max_t one past the last epoch: ASHA stops a trial that reaches max_t, which would cut off the
        # final report that carries the model file.
        ASHAScheduler(time_attr="epoch", max_t=horizon(spec) + 1, grace_period=spec.grace_epochs, reduction_factor=3)
        if spec.early_stopping
        else FIFOScheduler()
    )
    return tune.TuneConfig(
        metric=METRIC,
        mode="max",
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=spec.effective_trials,
        # A new worker process per trial costs an import of Ray, NumPy and digitnet (many seconds on
        # a busy machine, BENCHMARKS.md); the next trial reuses the finished trial's process instead.
        reuse_actors=True,
        # The random and grid generator limits itself (above); Tune's own limit is for searchers.
        max_concurrent_trials=concurrency if spec.search == "optuna" else None,
    )


def make_tuner(spec: SweepSpec, folder: Path, data: Dataset, concurrency: int) -> Any:
    """A new Tuner, or the one stored in ``folder`` restored (finished trials are not repeated)."""
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(trial, data=data), {"cpu": spec.threads_per_trial})
    experiment = folder.resolve() / TUNE_DIR
    if tune.Tuner.can_restore(str(experiment)):
        return tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True)
    run_config = tune.RunConfig(
        name=TUNE_DIR,
        storage_path=str(folder.resolve()),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=2),  # a lost worker's trial starts again
        verbose=1,
    )
    return tune.Tuner(
        trainable, param_space=param_space(spec), tune_config=tune_config(spec, concurrency), run_config=run_config
    )


def prepare_folder(spec: SweepSpec, folder: Path) -> bool:
    """Record the sweep in ``folder``; True if it already held this sweep (to resume).

    Raises
    ------
    DigitnetError
        If the folder holds a different sweep: resuming it with other settings would mix two.
    """
    recorded = folder / SPEC_FILE
    text = json.dumps(spec.model_dump(mode="json"), indent=2, sort_keys=True)
    if recorded.exists():
        if json.loads(recorded.read_text()) != json.loads(text):
            raise DigitnetError(
                f"{folder} holds another sweep (its settings are in {recorded}); give another --dir, or the "
                "same settings to resume it."
            )
        return True
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(recorded, text.encode())
    return False


def run_sweep(spec: SweepSpec, data: Dataset, folder: Path, *, concurrency: int) -> tuple[SweepOutcome, Any]:
    """Run (or resume) the sweep in ``folder`` on the connected Ray; return its outcome and results."""
    prepare_folder(spec, folder)
    tuner = make_tuner(spec, folder, data, concurrency)
    results = tuner.fit()
    rows = [trial_row(result) for result in results]
    varied = spec.space.varied()
    interrupted = any(not row["finished"] and row["status"] not in ("stopped", "error") for row in rows)
    csv_path = write_csv(rows, varied, folder / "trials.csv")
    figure = plot_sweep(rows, varied, folder / "sweep.png", spec) if varied and rows else None
    finished = [row for row in rows if row["finished"] and row[METRIC] is not None]
    best = max(finished, key=lambda row: row[METRIC]) if finished else None
    return SweepOutcome(rows, varied, best, interrupted, csv_path, figure), results


def trial_row(result: Any) -> dict[str, Any]:
    """One trial's settings and scores, flat, for the table, the CSV and the figure."""
    metrics = result.metrics or {}
    finished = bool(metrics.get("finished"))
    status = "done" if finished else ("error" if result.error else "stopped")
    if not finished and result.error is None and metrics.get("epoch") is None:
        status = "pending"
    config = {
        key: value for key, value in result.config.items() if key not in ("dataset", "seed", "val_size", "threads")
    }
    return {
        "trial": metrics.get("trial_id") or Path(result.path).name,
        "status": status,
        "finished": finished,
        **config,
        "epochs_trained": metrics.get("epoch"),
        METRIC: metrics.get(METRIC),
        "seconds": metrics.get("trial_seconds", metrics.get("time_total_s")),
        "node": metrics.get("node"),
        "checkpoint": result.checkpoint.path if (finished and result.checkpoint) else None,
    }


def write_csv(rows: list[dict[str, Any]], varied: list[str], path: Path) -> Path:
    """Every trial's row as CSV, written atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row if key != "checkpoint"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_bytes(path, buffer.getvalue().encode())


def plot_sweep(rows: list[dict[str, Any]], varied: list[str], path: Path, spec: SweepSpec) -> Path:
    """Validation accuracy against each varied hyperparameter, one panel each; finished trials filled."""
    from matplotlib.figure import Figure

    from ..plots import save_figure

    figure = Figure(figsize=(3.2 * len(varied), 3.0), layout="constrained")
    axes = figure.subplots(1, len(varied), squeeze=False)[0]
    scored = [row for row in rows if row[METRIC] is not None]
    for ax, name in zip(axes, varied):
        values = [row[name] for row in scored]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        labels = sorted({str(v) for v in values}) if not numeric else []
        xs = values if numeric else [labels.index(str(v)) for v in values]
        colours = ["tab:blue" if row["finished"] else "white" for row in scored]
        ax.scatter(xs, [100 * row[METRIC] for row in scored], c=colours, edgecolors="tab:blue")
        if numeric and spec.space.given()[name].kind == "loguniform":
            ax.set_xscale("log")
        if labels:
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
        ax.set_ylabel("validation accuracy (%)")
    figure.suptitle("Each trial's last validation accuracy (hollow: stopped early)")
    return save_figure(figure, path)


def save_best(best: dict[str, Any], out: Path) -> Network:
    """Copy the best trial's model file to ``out`` (atomically, checked as any model file is)."""
    network = Network.load(Path(best["checkpoint"]) / "model.npz")
    network.metadata["sweep"] = {
        key: value for key, value in best.items() if key not in ("checkpoint",) and _json_value(value)
    }
    network.save(out)
    return network


def _json_value(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, bool)) or (isinstance(value, float) and math.isfinite(value))
