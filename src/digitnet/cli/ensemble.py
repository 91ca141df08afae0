"""``digitnet ensemble``: train N members in parallel on Ray and save them as one ensemble file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..augment import STRENGTHS
from ..data import DATASETS
from ..experiment import ExperimentConfig
from ..metrics import accuracy
from ..nn.architectures import ARCHITECTURES
from ..recipes import ENSEMBLES
from .common import FiniteFloat, check_writable_file, data_options, load_dataset_for_cli, status_console
from .train import parse_hidden


@click.command()
@click.option(
    "--recipe",
    type=click.Choice(sorted(ENSEMBLES)),
    default=None,
    help="A named ensemble: cnn12 is the README's 99.6% recipe (7 medium, 4 light and 1 plain CNN); "
    "cnn12-fast is the same twelve on the default CNN, light members at four epochs (99.59%, about a quarter "
    "of the time). "
    "Without it, --members copies of one setting with seeds --seed, --seed+1, ...",
)
@click.option("--members", type=click.IntRange(1, 64), default=5, show_default=True, help="Members to train.")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="mnist", show_default=True)
@click.option("--model", "model_name", type=click.Choice(sorted(ARCHITECTURES)), default="mlp", show_default=True)
@click.option(
    "--hidden", default="128", callback=parse_hidden, show_default=True, help="Hidden layer sizes, e.g. 256,128."
)
@click.option("--augment", type=click.Choice(["none", *STRENGTHS]), default=None, help="[default: the model's]")
@click.option("--epochs", type=click.IntRange(1), default=None, help="[default: the recipe's]")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="[default: the recipe's]")
@click.option("--lr", type=FiniteFloat(0, low_open=True), default=None, help="[default: the recipe's]")
@click.option("--seed", type=click.IntRange(0, 2**62), default=0, show_default=True, help="The first member's seed.")
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="BLAS threads (and Ray cores) per member: Ray runs cores / threads members at a time.",
)
@click.option(
    "--address",
    envvar="RAY_ADDRESS",
    show_envvar=True,
    default=None,
    help="A running Ray cluster (HOST:PORT) to train on [default: a local Ray on this machine's cores].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default="ensemble.npz",
    show_default=True,
    help="The ensemble file; `digitnet evaluate`, `predict` and `serve` read it like a model.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
@data_options
def ensemble(
    recipe, members, dataset, model_name, hidden, augment, epochs, batch_size, lr, seed, threads, address, out,
    as_json, data_dir, cache_dir, openml,
) -> None:  # fmt: skip
    """Train an ensemble on Ray (members in parallel) and save it as one file.

    Members vote by averaging their class probabilities. The members' test accuracies are not
    looked at; the ensemble's is reported once, at the end.
    """
    from ..cluster import require_ray

    require_ray("ensemble")
    check_writable_file(out, "--out")
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
    recipe_settings = {key: value for key, value in overrides.items() if value is not None}
    if recipe is not None:
        configs = recipe_members(recipe, dataset=dataset, threads=threads, overrides=recipe_settings)
    else:
        from ..cluster.ensemble import member_configs

        base = ExperimentConfig(
            dataset=dataset, model=model_name, hidden=hidden, augment=augment, seed=seed, threads=threads,
            recipe=recipe_settings,
        )  # fmt: skip
        configs = member_configs(base, members)
    data = load_dataset_for_cli(dataset, data_dir, cache_dir, openml)
    trained = _train(configs, data, address)
    test_accuracy = accuracy(data.test_labels, trained.predict(data.test_images))
    trained.metadata.setdefault("metrics", {})["test_accuracy"] = test_accuracy
    trained.save(out)
    if as_json:
        click.echo(json.dumps({"test_accuracy": test_accuracy, "model": str(out), **trained.metadata}, allow_nan=False))
    else:
        status_console.print(
            f"Ensemble of {len(configs)}: test accuracy [bold]{test_accuracy:.2%}[/bold]. Saved it to {out}."
        )


def _train(configs, data, address):
    from ..cluster.ensemble import train_ensemble
    from ..cluster.runtime import ray_session

    def report(k, result) -> None:
        config = result.config
        val = f"val acc {result.val_accuracy:.2%}" if result.val_accuracy is not None else "no validation"
        status_console.print(
            f"member {k:>2}: {config.model} {config.augment_strength or 'none'} seed {config.seed}  {val}  "
            f"{result.seconds:.1f} s"
        )

    with ray_session(address) as resources:
        cores = int(resources.get("CPU", 1))
        at_once = max(1, cores // (configs[0].threads or 1))
        status_console.print(f"Training {len(configs)} members on Ray: {cores} cores, up to {at_once} at a time.")
        trained, _ = train_ensemble(configs, data, on_member=report)
    return trained


def recipe_members(recipe: str, *, dataset: str, threads: int, overrides: dict) -> list[ExperimentConfig]:
    """The members of the named ensemble ``recipe``; ``overrides`` (recipe settings given as
    options) win over a member's own."""
    configs = []
    for member in ENSEMBLES[recipe]:
        settings = member | {"recipe": member.get("recipe", {}) | overrides}
        configs.append(ExperimentConfig(dataset=dataset, threads=threads, **settings))
    return configs
