"""``python -m digitnet``: the same as the ``digitnet`` command."""

from .cli import main

if __name__ == "__main__":  # not when a tool (the documentation's generator) only imports it
    main(prog_name="digitnet")
