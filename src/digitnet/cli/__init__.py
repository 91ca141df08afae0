"""The ``digitnet`` command: one sub-command per module in this package.

Errors a user can cause (:class:`digitnet.errors.DigitnetError`) are turned into one clear line on
stderr and exit status 1, never a traceback; anything else is a bug and propagates.
"""

from __future__ import annotations

import click

from .. import __version__
from .common import DigitnetGroup


@click.group(cls=DigitnetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digitnet")
def main() -> None:
    """digitnet: a from-scratch NumPy network that reads handwritten digits.

    Start with `digitnet train`, then `digitnet evaluate model.npz` and
    `digitnet predict model.npz your_digit.png`.
    """


def _register_commands() -> None:
    from .data import data
    from .ensemble import ensemble
    from .evaluate import evaluate
    from .export import export
    from .predict import predict
    from .serve import serve
    from .show import show
    from .sweep import sweep
    from .train import train

    for command in (train, evaluate, predict, show, serve, data, export, sweep, ensemble):
        main.add_command(command)


_register_commands()
