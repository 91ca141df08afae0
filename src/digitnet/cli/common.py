"""Pieces shared by several commands: options, model loading, consoles."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.console import Console

from ..errors import DigitnetError
from ..nn import Network

class DigitnetGroup(click.Group):
    """A click group that reports user errors (:class:`DigitnetError`) as one clean message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DigitnetError as error:
            raise click.ClickException(str(error)) from None


#: Status and progress go to stderr so that ``--json`` output on stdout stays machine-readable.
status_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)

DEFAULT_MODEL = "model.npz"


def dir_options(function):
    """``--data-dir`` and ``--cache-dir``: where dataset files are looked for and kept."""
    function = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                            envvar="DIGITNET_CACHE_DIR", show_envvar=True,
                            help="Where verified dataset files are kept [default: the user cache "
                                 "directory].")(function)
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar="DIGITNET_DATA_DIR", show_envvar=True,
                        help="A folder holding the dataset files (plain or .gz), tried before "
                             "any download.")(function)


def openml_option(function):
    """``--openml``: the opt-in OpenML source."""
    return click.option("--openml", is_flag=True,
                        help="Also allow downloading MNIST from OpenML via scikit-learn "
                             "(needs the internet).")(function)


def data_options(function):
    """Every dataset option, shared by the commands that read a dataset."""
    return dir_options(openml_option(function))


def load_dataset_for_cli(name: str, data_dir, cache_dir, openml: bool):
    """Load a dataset, printing where it came from on stderr."""
    from ..data import load_dataset

    return load_dataset(name, data_dir=data_dir, cache_dir=cache_dir, allow_openml=openml,
                        progress=lambda message: status_console.print(f"[dim]{message}[/dim]"))


def load_model(path: str | os.PathLike) -> Network:
    """Load a model file; the errors are the file format's own clear messages."""
    return Network.load(path)


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity and container limits where visible)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
