"""Places dataset bytes come from: the cache, folders, web mirrors and OpenML.

A *source* delivers the uncompressed content of some of a dataset's files. Sources never decide
whether content is good: :func:`digitnet.data.gather.gather_files` checks every file's size and
sha256 against the catalogue, writes only verified files into the cache, and moves on to the
next source for whatever is still missing. The package-index route for MNIST lives in
:mod:`digitnet.data.package_index`; the order in which sources are tried is set by
:func:`digitnet.data.gather.default_sources`.

Network access is injectable (``opener`` for URLs) so tests can simulate good mirrors, corrupt
ones, timeouts and failing downloads without a network.
"""

from __future__ import annotations

import io
import os
import tempfile
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from digitnet import __version__
from digitnet.data.datasets import DatasetSpec, FileSpec
from digitnet.data.idx import IdxError, encode_idx, read_at_most, read_decompressed

__all__ = [
    "NOT_FOUND",
    "CacheSource",
    "DirectorySource",
    "Fetched",
    "MirrorSource",
    "OpenMLSource",
    "Opener",
    "Progress",
    "Source",
    "SourceFailed",
    "idx_files_from_arrays",
    "ignore_progress",
    "uint8_images",
    "uint8_labels",
    "urlopen",
]

#: A callable receiving one human-readable status line.
Progress = Callable[[str], None]
#: ``opener(url, timeout=seconds)`` returns a readable, closable response (like ``urllib.request.urlopen``).
Opener = Callable[..., BinaryIO]

MIRROR_TIMEOUT_S = 5.0
NOT_FOUND = "not found"
# A .gz of already-compressed bytes can be slightly larger than the original; allow for it.
_GZIP_SLACK = 1 << 16


def ignore_progress(message: str) -> None:
    """The default progress callback: say nothing."""


class SourceFailed(Exception):
    """A whole source cannot deliver anything (unreachable, not installed, download failed).

    Internal to the data layer: :func:`~digitnet.data.gather.gather_files` collects these into
    one :class:`DataError`.
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


def uint8_images(pixels: np.ndarray, spec: DatasetSpec, what: str) -> np.ndarray:
    """Turn ``(N, H*W)`` values into ``(N, H, W)`` uint8, refusing values outside 0..255."""
    height, width = spec.image_shape
    if pixels.ndim != 2 or pixels.shape[1] != height * width:
        raise SourceFailed(f"{what} has shape {pixels.shape}, expected (N, {height * width})")
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise SourceFailed(f"{what} has pixel values outside 0..255")
    return pixels.astype(np.uint8).reshape(-1, height, width)


def uint8_labels(labels: np.ndarray, spec: DatasetSpec, what: str) -> np.ndarray:
    """Turn integer labels into uint8, refusing values that name no class."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= len(spec.class_names))):
        raise SourceFailed(f"{what} are not 1-D labels in 0..{len(spec.class_names) - 1}")
    return labels.astype(np.uint8)


def idx_files_from_arrays(spec: DatasetSpec, arrays: Mapping[str, np.ndarray]) -> dict[str, bytes | bytearray]:
    """Encode arrays by role as the dataset's canonical IDX files."""
    return {spec.file(role).name: encode_idx(array) for role, array in arrays.items()}


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
                # An optional dependency, imported only when this opt-in source is used.
                from sklearn.datasets import fetch_openml
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
            files=idx_files_from_arrays(
                spec,
                {
                    "train_images": uint8_images(images[:n_train], spec, "OpenML training images"),
                    "train_labels": uint8_labels(labels[:n_train], spec, "OpenML training labels"),
                    "test_images": uint8_images(images[n_train:], spec, "OpenML test images"),
                    "test_labels": uint8_labels(labels[n_train:], spec, "OpenML test labels"),
                },
            )
        )
