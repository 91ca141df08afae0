"""Pieces shared by several commands: options, model loading, consoles."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click
from rich.console import Console

from ..errors import DigitnetError
from ..nn.ensemble import Model, load_model


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
    function = click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DIGITNET_CACHE_DIR",
        show_envvar=True,
        help="Where verified dataset files are kept [default: the user cache directory].",
    )(function)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DIGITNET_DATA_DIR",
        show_envvar=True,
        help="A folder holding the dataset files (plain or .gz), tried before any download.",
    )(function)


def openml_option(function):
    """``--openml``: the opt-in OpenML source."""
    return click.option(
        "--openml", is_flag=True, help="Also allow downloading MNIST from OpenML via scikit-learn (needs the internet)."
    )(function)


def data_options(function):
    """Every dataset option, shared by the commands that read a dataset."""
    return dir_options(openml_option(function))


def load_dataset_for_cli(name: str, data_dir, cache_dir, openml: bool):
    """Load a dataset, printing where it came from on stderr."""
    from ..data import load_dataset

    return load_dataset(
        name,
        data_dir=data_dir,
        cache_dir=cache_dir,
        allow_openml=openml,
        progress=lambda message: status_console.print(f"[dim]{message}[/dim]"),
    )


def printable(text: object) -> str:
    """``text`` made safe for the terminal: control and format characters dropped, rich markup escaped.

    Class names come from the model file and file names from the user: neither may move the
    cursor, clear the screen or change colours, nor be read as ``[markup]``.
    """
    import unicodedata

    from rich.markup import escape

    return escape("".join(ch for ch in str(text) if unicodedata.category(ch) not in ("Cc", "Cf")))


def model_or_reader(path: str | os.PathLike | None) -> tuple[Model, str]:
    """The model (or ensemble) file at ``path``, or the reader model that ships with digitnet when ``path`` is
    ``None``; with a name to show the user."""
    if path is not None:
        return load_model(path), str(path)
    from ..reader import load_reader

    return load_reader(), "the reader model that ships with digitnet"


class DatasetName(click.ParamType):
    """A dataset of the catalogue by name, or a folder of one's own images (one subfolder per class)."""

    name = "dataset"

    def get_metavar(self, param, ctx=None) -> str:  # ctx: click >= 8.2 passes it
        from ..data import DATASETS

        return "[" + "|".join(sorted(DATASETS)) + "|FOLDER]"

    def convert(self, value, param, ctx) -> str:
        from ..data import DATASETS, is_image_folder

        text = os.fspath(value)
        if text in DATASETS:
            return text
        if is_image_folder(text):  # absolute, as the model file records it
            return str(Path(text).expanduser().resolve())
        self.fail(
            f"{text!r} is neither a dataset ({', '.join(sorted(DATASETS))}) nor a folder; give a folder "
            "that holds one subfolder of images per class, such as my-digits/0/*.png and my-digits/1/*.png",
            param,
            ctx,
        )


class FiniteFloat(click.ParamType):
    """A finite number within ``[low, high]`` (``nan`` and ``inf`` pass click's FloatRange)."""

    name = "float"

    def __init__(
        self, low: float = float("-inf"), high: float = float("inf"), *, low_open: bool = False, high_open: bool = False
    ) -> None:
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def convert(self, value, param, ctx) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        too_low = number <= self.low if self.low_open else number < self.low
        too_high = number >= self.high if self.high_open else number > self.high
        if too_low or too_high:
            self.fail(
                f"{number:g} is not in {'(' if self.low_open else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.high_open else ']'}",
                param,
                ctx,
            )
        return number


class ThreadCount(click.ParamType):
    """``auto`` or a positive whole number of threads."""

    name = "auto|N"

    def convert(self, value, param, ctx) -> int | str:
        if isinstance(value, int) and value >= 1:
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is neither 'auto' nor a positive whole number", param, ctx)


def check_writable_file(path: Path, option: str) -> None:
    """Refuse, before any work starts, an output file that could not be written at the end."""
    if not str(path) or path.name == "":
        raise click.BadParameter("needs a file name", param_hint=option)
    if path.is_dir():
        raise click.BadParameter(
            f"{path} is a folder; give a file name such as {path / 'model.npz'}", param_hint=option
        )
    check_writable_folder(path.parent if str(path.parent) else Path("."), option, create=False)


def check_writable_folder(folder: Path, option: str, *, create: bool = True) -> None:
    """Refuse a folder that is missing (unless it can be created), not a folder, or not writable."""
    existing = folder
    while not existing.exists():  # the nearest existing ancestor decides whether it can be made
        if not create:
            raise click.BadParameter(f"the folder {folder} does not exist; create it first", param_hint=option)
        existing = existing.parent
    if not existing.is_dir():
        raise click.BadParameter(f"{existing} is a file, not a folder", param_hint=option)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.BadParameter(f"the folder {existing} is not writable", param_hint=option)
