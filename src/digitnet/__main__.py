"""``python -m digitnet``: the same as the ``digitnet`` command."""

from .cli import main

main(prog_name="digitnet")
