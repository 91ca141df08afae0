"""One object for the choices every data-layer function passes along: where to look, what may be used.

The public functions (:func:`~digitnet.data.load_dataset`, :func:`~digitnet.data.fetch_dataset`)
take these as keyword arguments for convenience and bundle them into a :class:`DataOptions`
at once; everything inside the package passes that one object.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digitnet.data.cache import dataset_cache_dir
from digitnet.data.package_index import Runner
from digitnet.data.sources import Opener, Progress, Source, ignore_progress

__all__ = ["DATA_DIR_ENV_VAR", "DataOptions", "PathLike"]

#: Environment variable naming a directory of user-supplied dataset files.
DATA_DIR_ENV_VAR = "DIGITNET_DATA_DIR"

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class DataOptions:
    """Where dataset files are looked for and kept, which sources may be used, and test doubles.

    Attributes
    ----------
    data_dir : path-like, optional
        A folder holding the four IDX files (plain or ``.gz``); ``None`` means
        ``$DIGITNET_DATA_DIR`` when that is set (see :meth:`resolved_data_dir`).
    cache_dir : path-like, optional
        The cache root; ``None`` means :func:`~digitnet.data.cache.default_cache_dir`.
    allow_openml : bool, default False
        Also try OpenML through scikit-learn (needs the open internet).
    allow_network : bool, default True
        Whether any network source may be used.
    progress : callable, optional
        Called with one status line at a time.
    sources : sequence of Source, optional
        Replaces the sources tried after the cache (for tests and special set-ups).
    opener, runner : callable, optional
        Substitutes for ``urllib`` and for running ``pip`` in the default sources (for tests).
    """

    data_dir: PathLike | None = None
    cache_dir: PathLike | None = None
    allow_openml: bool = False
    allow_network: bool = True
    progress: Progress | None = None
    sources: Sequence[Source] | None = None
    opener: Opener | None = None
    runner: Runner | None = None

    def resolved_data_dir(self) -> Path | None:
        """Return ``data_dir``, else ``$DIGITNET_DATA_DIR`` when set, else ``None``."""
        data_dir = self.data_dir
        if data_dir is None:
            data_dir = os.environ.get(DATA_DIR_ENV_VAR) or None
        return None if data_dir is None else Path(data_dir).expanduser()

    def cache_folder(self, dataset: str) -> Path:
        """Return the cache folder of one dataset, ``<cache_dir>/<dataset>``."""
        return dataset_cache_dir(self.cache_dir, dataset)

    def report(self, message: str) -> None:
        """Pass one status line to ``progress``, if there is one."""
        (self.progress or ignore_progress)(message)
