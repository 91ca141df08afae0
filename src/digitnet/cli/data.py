"""``digitnet data``: fetch, inspect and verify the datasets digitnet trains on.

Register it on the main group with ``main.add_command(data)``. Every
:class:`~digitnet.errors.DigitnetError` is turned into a one-line ``click.ClickException`` by the
group (:class:`~digitnet.cli.common.DigitnetGroup`), at the command-line boundary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from digitnet.data import DATASETS, dataset_info, fetch_dataset, verify_dataset
from digitnet.data.reports import DatasetInfo, FetchReport, VerifyReport

from .common import DigitnetGroup, dir_options, openml_option, status_console

__all__ = ["data"]


def _dataset_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dataset",
        type=click.Choice(list(DATASETS)),
        default="mnist",
        show_default=True,
        help="Which dataset of the catalogue.",
    )(function)


def _json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")(function)


def _console() -> Console:
    # highlight=False: file names and numbers are printed as given, not recoloured.
    return Console(highlight=False)


def _say(console: Console) -> Callable[[str], None]:
    """A progress callback that prints messages literally (they may contain [brackets])."""
    return lambda message: console.print(message, markup=False)


def _print_json(payload: dict[str, Any]) -> None:
    # click.echo, not rich: JSON must reach stdout byte for byte, without wrapping.
    click.echo(json.dumps(payload, indent=2))


@click.group("data", cls=DigitnetGroup)
def data() -> None:
    """Fetch, inspect and verify the datasets digitnet trains on."""


@data.command()
@_dataset_option
@dir_options
@openml_option
@_json_option
def fetch(dataset: str, data_dir: Path | None, cache_dir: Path | None, openml: bool, as_json: bool) -> None:
    """Download (or copy from --data-dir) a dataset, verify it, and store it in the cache.

    Temporary files and download folders left by killed runs are removed on the way.
    """
    console = _console()
    # With --json, progress goes to stderr so that stdout holds nothing but the JSON object.
    progress = _say(status_console if as_json else console)
    report = fetch_dataset(dataset, data_dir=data_dir, cache_dir=cache_dir, allow_openml=openml, progress=progress)
    if as_json:
        _print_json(report.to_dict())
    else:
        _show_fetch(console, report)


def _show_fetch(console: Console, report: FetchReport) -> None:
    if report.note:
        console.print(report.note, markup=False)
        return
    console.print(f"{report.dataset}: verified files in {report.cache_dir}", markup=False)
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("bytes", justify="right")
    table.add_column("from", overflow="fold")
    for file in report.files:
        table.add_row(file.name, f"{file.size:,}", file.source)
    console.print(table)


@data.command()
@_dataset_option
@dir_options
@_json_option
def info(dataset: str, data_dir: Path | None, cache_dir: Path | None, as_json: bool) -> None:
    """Show a dataset's classes, split sizes, cache location, cached files and sources."""
    report = dataset_info(dataset, cache_dir=cache_dir, data_dir=data_dir)
    if as_json:
        _print_json(report.to_dict())
    else:
        _show_info(_console(), report)


def _show_info(console: Console, report: DatasetInfo) -> None:
    height, width = report.image_shape
    console.print(f"{report.dataset}: {report.title}", markup=False)
    console.print(f"classes: {', '.join(report.class_names)}", markup=False)
    console.print(f"images: {height}x{width}; train: {report.train_count:,}; test: {report.test_count:,}", markup=False)
    if report.cache_dir is None:
        console.print(f"source: {report.sources[0]} (nothing is cached)", markup=False)
        return
    console.print(f"cache: {report.cache_dir}", markup=False)
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("cached")
    table.add_column("bytes", justify="right")
    for file in report.files:
        size = f"{file.size:,}" if file.size is not None else "-"
        if file.present and file.size != file.expected_size:
            size += f" (expected {file.expected_size:,})"
        table.add_row(file.name, "yes" if file.present else "no", size)
    console.print(table)
    console.print("sources, in order:", markup=False)
    for number, label in enumerate(report.sources, start=1):
        console.print(f"  {number}. {label}", markup=False)


@data.command()
@_dataset_option
@dir_options
@click.option(
    "--clean", is_flag=True, help="Remove stale leftovers of interrupted runs (temporary files, pip folders)."
)
@_json_option
def verify(dataset: str, data_dir: Path | None, cache_dir: Path | None, clean: bool, as_json: bool) -> None:
    """Re-hash the cached files (or those in --data-dir) and fail if any is missing or corrupt.

    Also lists leftovers of interrupted runs; --clean removes those no process is using.
    """
    report = verify_dataset(dataset, cache_dir=cache_dir, data_dir=data_dir, clean=clean)
    if as_json:
        _print_json(report.to_dict())
    else:
        _show_verify(_console(), report)
    if report.note:
        return
    if all(file.status == "missing" for file in report.files):
        hint = "check the folder" if data_dir is not None else f"run `digitnet data fetch --dataset {dataset}` first"
        raise click.ClickException(f"No {dataset} files in {report.location}; {hint}.")
    if not report.ok:
        bad = [f"{file.name} ({file.status})" for file in report.files if file.status != "ok"]
        if data_dir is not None:
            remedy = "replace them with good copies"
        else:
            remedy = f"run `digitnet data fetch --dataset {dataset}` to fetch them again"
        raise click.ClickException(
            f"{len(bad)} of {len(report.files)} {dataset} files in {report.location} failed verification: "
            f"{', '.join(bad)}; {remedy}."
        )


def _show_verify(console: Console, report: VerifyReport) -> None:
    if report.note:
        console.print(report.note, markup=False)
        return
    console.print(f"{report.dataset}: checking {report.location}", markup=False)
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("status")
    table.add_column("problem", overflow="fold")
    for file in report.files:
        table.add_row(file.name, file.status, file.problem)
    console.print(table)
    if report.ok:
        console.print(f"All {len(report.files)} files match their sha256.", markup=False)
    _show_leftovers(console, report)


def _show_leftovers(console: Console, report: VerifyReport) -> None:
    """List leftovers of interrupted runs: removed, removable with --clean, or possibly in use."""
    removed = {leftover.path for leftover in report.removed}
    for leftover in report.leftovers:
        if leftover.path in removed:
            state = "removed"
        else:
            state = "stale, remove with --clean" if leftover.stale else "may be in use, kept"
        console.print(f"leftover {leftover.path} ({leftover.size:,} bytes): {leftover.reason}; {state}", markup=False)
