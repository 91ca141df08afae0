"""``digitnet data``: fetch, inspect and verify the datasets digitnet trains on.

Register it on the main group with ``main.add_command(data)``. Every
:class:`~digitnet.errors.DigitnetError` is turned into a one-line ``click.ClickException`` by the
group (:class:`~digitnet.cli.common.DigitnetGroup`), at the command-line boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from digitnet.data import DATASETS, dataset_info, fetch_dataset, verify_dataset

from .common import DigitnetGroup, dir_options, openml_option

__all__ = ["data"]


def _dataset_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dataset",
        type=click.Choice(list(DATASETS)),
        default="mnist",
        show_default=True,
        help="Which dataset of the catalogue.",
    )(function)


def _console() -> Console:
    # highlight=False: file names and numbers are printed as given, not recoloured.
    return Console(highlight=False)


def _say(console: Console) -> Callable[[str], None]:
    """A progress callback that prints messages literally (they may contain [brackets])."""
    return lambda message: console.print(message, markup=False)


@click.group("data", cls=DigitnetGroup)
def data() -> None:
    """Fetch, inspect and verify the datasets digitnet trains on."""


@data.command()
@_dataset_option
@dir_options
@openml_option
def fetch(dataset: str, data_dir: Path | None, cache_dir: Path | None, openml: bool) -> None:
    """Download (or copy from --data-dir) a dataset, verify it, and store it in the cache."""
    console = _console()
    result = fetch_dataset(
        dataset, data_dir=data_dir, cache_dir=cache_dir, allow_openml=openml, progress=_say(console)
    )
    if result["note"]:
        console.print(result["note"], markup=False)
        return
    console.print(f"{dataset}: verified files in {result['cache_dir']}", markup=False)
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("bytes", justify="right")
    table.add_column("from", overflow="fold")
    for file in result["files"]:
        table.add_row(file["name"], f"{file['bytes']:,}", file["source"])
    console.print(table)


@data.command()
@_dataset_option
@dir_options
def info(dataset: str, data_dir: Path | None, cache_dir: Path | None) -> None:
    """Show a dataset's classes, split sizes, cache location, cached files and sources."""
    console = _console()
    result = dataset_info(dataset, cache_dir=cache_dir, data_dir=data_dir)
    height, width = result["image_shape"]
    splits = result["splits"]
    console.print(f"{result['dataset']}: {result['title']}", markup=False)
    console.print(f"classes: {', '.join(result['class_names'])}", markup=False)
    console.print(f"images: {height}x{width}; train: {splits['train']:,}; test: {splits['test']:,}", markup=False)
    if result["cache_dir"] is None:
        console.print(f"source: {result['sources'][0]} (nothing is cached)", markup=False)
        return
    console.print(f"cache: {result['cache_dir']}", markup=False)
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("cached")
    table.add_column("bytes", justify="right")
    for file in result["files"]:
        size = f"{file['bytes']:,}" if file["present"] else "-"
        if file["present"] and file["bytes"] != file["expected_bytes"]:
            size += f" (expected {file['expected_bytes']:,})"
        table.add_row(file["name"], "yes" if file["present"] else "no", size)
    console.print(table)
    console.print("sources, in order:", markup=False)
    for number, label in enumerate(result["sources"], start=1):
        console.print(f"  {number}. {label}", markup=False)


@data.command()
@_dataset_option
@dir_options
def verify(dataset: str, data_dir: Path | None, cache_dir: Path | None) -> None:
    """Re-hash the cached files (or those in --data-dir) and fail if any is missing or corrupt."""
    console = _console()
    result = verify_dataset(dataset, cache_dir=cache_dir, data_dir=data_dir)
    if result["note"]:
        console.print(result["note"], markup=False)
        return
    console.print(f"{dataset}: checking {result['location']}", markup=False)
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("status")
    table.add_column("problem", overflow="fold")
    for file in result["files"]:
        table.add_row(file["name"], file["status"], file["problem"])
    console.print(table)
    if all(file["status"] == "missing" for file in result["files"]):
        hint = "check the folder" if data_dir is not None else f"run `digitnet data fetch --dataset {dataset}` first"
        raise click.ClickException(f"No {dataset} files in {result['location']}; {hint}.")
    if not result["ok"]:
        bad = [f"{file['name']} ({file['status']})" for file in result["files"] if file["status"] != "ok"]
        if data_dir is not None:
            remedy = "replace them with good copies"
        else:
            remedy = f"run `digitnet data fetch --dataset {dataset}` to fetch them again"
        raise click.ClickException(
            f"{len(bad)} of {len(result['files'])} {dataset} files in {result['location']} failed verification: "
            f"{', '.join(bad)}; {remedy}."
        )
    console.print(f"All {len(result['files'])} files match their sha256.", markup=False)
