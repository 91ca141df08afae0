"""Sweeps and ensembles on Ray: many trainings on this machine's cores, or on a cluster's.

Ray is an optional extra (``pip install 'digitnet[cluster]'``) and is imported only inside the
functions that need it, so ``digitnet --help`` and the core install never load it.

- :mod:`.space`     the search space file (TOML), checked by pydantic before anything starts
- :mod:`.runtime`   starting the embedded local Ray instance, or joining a cluster by address
- :mod:`.sweep`     ``digitnet sweep``: Ray Tune over :func:`digitnet.experiment.run`
- :mod:`.ensemble`  ``digitnet ensemble``: members trained as Ray tasks, saved as one file

Every trial and every member is one call of :func:`digitnet.experiment.run`; the dataset is
loaded once by the driver and reaches the workers through Ray's object store.
"""

from __future__ import annotations

from ..errors import DigitnetError

INSTALL_HINT = "pip install 'digitnet[cluster]'"


def require_ray(command: str) -> None:
    """Raise a one-sentence error saying how to install Ray if it is missing."""
    try:
        import ray  # noqa: F401
        import ray.tune  # noqa: F401
    except ImportError:
        raise DigitnetError(
            f"`digitnet {command}` runs on Ray, which is not installed; install it with {INSTALL_HINT}."
        ) from None
