"""``digitnet sweep``: a hyperparameter search on Ray Tune, resumable, with a table, a CSV and a figure."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..data import DATASETS
from ..errors import DigitnetError
from .common import check_writable_file, console, data_options, load_dataset_for_cli, status_console

EXAMPLE = """
    \b
    # sweep.toml
    dataset = "mnist"
    search = "random"        # random, grid or optuna
    trials = 16
    [space]
    model = "mlp"
    lr = { loguniform = [1e-4, 1e-2] }
    batch_size = { choice = [64, 128, 256] }
    epochs = { randint = [4, 12] }
    hidden = { choice = ["128", "256,128"] }
    augment = { choice = ["none", "light"] }
"""


@click.command(help=None)
@click.argument("space_file", required=False, type=click.Path(dir_okay=False, path_type=Path), metavar="[SPACE.toml]")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sweep"),
    show_default=True,
    help="The sweep's folder (Tune state, trials.csv, sweep.png). Running the same sweep again with the "
    "same folder resumes it.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The best model [default: DIR/best.npz].",
)
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default=None, help="Overrides the file's [mnist].")
@click.option(
    "--search", type=click.Choice(["random", "grid", "optuna"]), default=None, help="Overrides the file's [random]."
)
@click.option("--trials", type=click.IntRange(1, 10_000), default=None, help="Overrides the file's [16; grid: 1].")
@click.option("--no-early-stopping", is_flag=True, help="Let every trial finish (no ASHA).")
@click.option(
    "--max-concurrent",
    type=click.IntRange(1),
    default=None,
    help="Trials at a time [default: the cluster's cores / threads per trial].",
)
@click.option(
    "--address",
    envvar="RAY_ADDRESS",
    show_envvar=True,
    default=None,
    help="A running Ray cluster (HOST:PORT) to run the trials on [default: a local Ray on this machine's cores].",
)
@data_options
def sweep(
    space_file, folder, out, dataset, search, trials, no_early_stopping, max_concurrent, address,
    data_dir, cache_dir, openml,
) -> None:  # fmt: skip
    """Search hyperparameters with Ray Tune; save the best model (chosen on validation accuracy).

    SPACE.toml declares what to vary (fixed values, choice lists, uniform, loguniform or randint
    ranges) over model, hidden, augment, lr, batch_size, epochs, optimizer, schedule, weight_decay
    and label_smoothing; an example:
    """
    from ..cluster import require_ray
    from ..cluster.space import load_spec

    overrides = {"dataset": dataset, "search": search, "trials": trials}
    if no_early_stopping:
        overrides["early_stopping"] = False
    spec = load_spec(space_file, **overrides)  # a typo is named before anything starts
    require_ray("sweep")
    out = out or folder / "best.npz"
    if out.parent.exists():  # DIR/best.npz: DIR is made by the sweep itself
        check_writable_file(out, "--out")
    data = load_dataset_for_cli(spec.dataset, data_dir, cache_dir, openml)
    outcome = _run(spec, data, folder, address, max_concurrent)
    _print_table(outcome)
    status_console.print(f"Wrote {outcome.csv_path}" + (f" and {outcome.figure_path}." if outcome.figure_path else "."))
    if outcome.interrupted:
        raise DigitnetError(f"The sweep was interrupted; run the same command again to resume it from {folder}.")
    if outcome.best is None:
        raise DigitnetError("No trial finished, so no model was saved; see the errors above.")
    from ..cluster.sweep import METRIC, save_best

    save_best(outcome.best, out)
    status_console.print(
        f"Best trial {outcome.best['trial']}: validation accuracy [bold]{outcome.best[METRIC]:.2%}[/bold]; saved its "
        f"model to {out}. Its test accuracy: `digitnet evaluate {out}`."
    )


sweep.help = (sweep.help or "") + EXAMPLE


def _run(spec, data, folder: Path, address, max_concurrent):
    from ..cluster.runtime import ray_session
    from ..cluster.sweep import run_sweep

    with ray_session(address) as resources:
        cores = int(resources.get("CPU", 1))
        concurrency = max_concurrent or max(1, cores // spec.threads_per_trial)
        status_console.print(
            f"Sweeping {spec.effective_trials} {spec.search} trial(s) on {spec.dataset}: {cores} cores, "
            f"{concurrency} trial(s) at a time, early stopping {'on' if spec.early_stopping else 'off'}; in {folder}."
        )
        outcome, _ = run_sweep(spec, data, folder, concurrency=concurrency)
    return outcome


def _print_table(outcome) -> None:
    from ..cluster.sweep import METRIC

    table = Table(title="Trials, best first (validation accuracy; the test set is never used to choose)")
    for column in ("trial", "status", *outcome.varied, "epochs", "val acc", "seconds"):
        table.add_column(column, justify="right")
    ranked = sorted(outcome.rows, key=lambda row: -(row[METRIC] or -1))
    for row in ranked:
        table.add_row(
            str(row["trial"]),
            row["status"],
            *(_cell(row.get(name)) for name in outcome.varied),
            _cell(row["epochs_trained"]),
            f"{row[METRIC]:.2%}" if row[METRIC] is not None else "-",
            f"{row['seconds']:.1f}" if row["seconds"] is not None else "-",
        )
    console.print(table)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)
