"""Files and folders a killed digitnet leaves behind, how to recognise them, and when to remove them.

Two things can outlive a process that is killed outright (``kill -9``, an out-of-memory kill,
a power cut), because no ``finally`` clause runs:

* the temporary file of an atomic write (:func:`~digitnet.data.cache.atomic_write_bytes`),
  ``.<name>.<pid>@<host>.<random>.part`` beside a model or in the dataset cache; one can be as
  large as the largest MNIST file;
* the folder ``pip download`` fills on the package-index route,
  ``<temp>/digitnet-pip-<pid>@<host>-<random>``, with a partly or fully downloaded wheel.

Both names carry the writer's process id and host, so a later digitnet can tell an abandoned
leftover from one that another process is still writing. A leftover is *stale* when

* it was made on this host and its process no longer runs, or
* it has not been modified for :data:`STALE_AFTER_S` seconds, whatever its process id says:
  that covers a process id reused by an unrelated program, a cache shared with other hosts
  over a network file system (where the id means nothing here), and names written by digitnet
  versions that did not record a process id (``.<name>.<8 random characters>.part`` and
  ``digitnet-pip-<8 random characters>``).

Only names of exactly these shapes are ever considered; nothing else in a folder is touched.
See ``docs/DATA.md`` ("Leftovers after a crash").
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "HOST_TAG",
    "PIP_DIR_PREFIX",
    "STALE_AFTER_S",
    "Leftover",
    "find_pip_folders",
    "find_temporaries",
    "pip_folder_prefix",
    "process_is_running",
    "remove_stale",
    "remove_stale_temporaries",
    "temporary_path_for",
]

#: A leftover untouched for this long is stale even if a process with its id is running. Writes
#: touch their file continuously, so a live writer's temporary is never this old.
STALE_AFTER_S = 6 * 3600
_HOURS = STALE_AFTER_S // 3600

#: This machine's name as it appears in leftover names: letters, digits and dashes only, so a
#: name parses unambiguously, and short, so it stays far from file-name length limits.
HOST_TAG = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"

#: Start of the name of every folder ``pip download`` fills for digitnet.
PIP_DIR_PREFIX = "digitnet-pip-"

TEMP_SUFFIX = ".part"

_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[0-9a-f]{8}\.part$")
# What tempfile.mkstemp made for older digitnet versions: eight characters of its alphabet.
_LEGACY_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.part$")
_PIP_FOLDER = re.compile(rf"^{PIP_DIR_PREFIX}(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)-.+$")
_LEGACY_PIP_FOLDER = re.compile(rf"^{PIP_DIR_PREFIX}[a-z0-9_]{{8}}$")


@dataclass(frozen=True)
class Leftover:
    """A temporary file or download folder found on disk.

    Attributes
    ----------
    path : pathlib.Path
        Where it is.
    size : int
        Its bytes (for a folder, the bytes of the files inside).
    pid : int or None
        The process that made it, when its name records one.
    stale : bool
        Whether it is abandoned and may be removed.
    reason : str
        Why it is (or is not) considered stale, as a phrase for messages.
    """

    path: Path
    size: int
    pid: int | None
    stale: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        """Plain types only, for JSON output."""
        return {"path": str(self.path), "bytes": self.size, "pid": self.pid, "stale": self.stale, "reason": self.reason}


def process_is_running(pid: int) -> bool:
    """Whether a process with this id exists on this machine.

    Only POSIX can ask without side effects (``kill(pid, 0)`` sends nothing). On Windows
    ``os.kill`` would *terminate* the process, so there every process counts as running and
    leftovers become stale by age alone.
    """
    if pid == os.getpid():
        return True
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists but belongs to another user
        return True
    return True


def temporary_path_for(target: Path) -> Path:
    """Return a fresh temporary name beside ``target`` that records this process and host.

    The name starts with a dot and ends in ``.part``, so it can never be mistaken for a data
    file, which the cache only ever looks up by its exact canonical name.
    """
    return target.with_name(f".{target.name}.{os.getpid()}@{HOST_TAG}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def pip_folder_prefix() -> str:
    """The prefix of the temporary folder this process gives ``pip download``."""
    return f"{PIP_DIR_PREFIX}{os.getpid()}@{HOST_TAG}-"


def _judge(path: Path, size: int, mtime: float, match: re.Match[str] | None) -> Leftover:
    """Decide whether one leftover is stale, from the pid and host in its name and its age."""
    age = time.time() - mtime
    old = age > STALE_AFTER_S
    if match is None:  # a name from a digitnet version that did not record its process
        reason = "no process id in its name; "
        reason += f"untouched for over {_HOURS} hours" if old else f"kept until it is {_HOURS} hours old"
        return Leftover(path, size, None, old, reason)
    pid, host = int(match["pid"]), match["host"]
    if host == HOST_TAG and not process_is_running(pid):
        return Leftover(path, size, pid, True, f"process {pid} that wrote it is no longer running")
    if old:
        return Leftover(path, size, pid, True, f"untouched for over {_HOURS} hours")
    where = "" if host == HOST_TAG else f" on {host or 'another host'}"
    return Leftover(path, size, pid, False, f"process {pid}{where} may still be writing it")


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """List ``folder``, or nothing when it does not exist or cannot be read."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []


def find_temporaries(folder: str | os.PathLike[str]) -> list[Leftover]:
    """Find the temporary files of atomic writes in ``folder``, live and stale.

    Parameters
    ----------
    folder : path-like
        A folder written by :func:`~digitnet.data.cache.atomic_write_bytes` (a dataset's cache
        folder, a folder of models). A missing folder holds nothing.

    Returns
    -------
    list of Leftover
        Sorted by name.
    """
    found = []
    for entry in _entries(Path(folder)):
        if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
            continue
        match = _TEMPORARY.match(entry.name)
        if match is None and _LEGACY_TEMPORARY.match(entry.name) is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
        except OSError:  # removed meanwhile by its writer or another cleaner
            continue
        found.append(_judge(Path(entry.path), info.st_size, info.st_mtime, match))
    return sorted(found, key=lambda leftover: leftover.path.name)


def _folder_size(folder: Path) -> int:
    """Total bytes of the files below ``folder``, skipping what vanishes or cannot be read."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def find_pip_folders(folder: str | os.PathLike[str] | None = None) -> list[Leftover]:
    """Find the ``digitnet-pip-*`` download folders in the temporary directory, live and stale.

    Parameters
    ----------
    folder : path-like, optional
        Where to look; defaults to :func:`tempfile.gettempdir`.

    Returns
    -------
    list of Leftover
        Sorted by name.
    """
    found = []
    for entry in _entries(Path(folder if folder is not None else tempfile.gettempdir())):
        if not entry.name.startswith(PIP_DIR_PREFIX):
            continue
        match = _PIP_FOLDER.match(entry.name)
        if match is None and _LEGACY_PIP_FOLDER.match(entry.name) is None:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        path = Path(entry.path)
        found.append(_judge(path, _folder_size(path), mtime, match))
    return sorted(found, key=lambda leftover: leftover.path.name)


def remove_stale(leftovers: list[Leftover]) -> list[Leftover]:
    """Remove the stale ones among ``leftovers``; return those actually removed.

    Failures are skipped, not raised: another process may be cleaning the same folder, and a
    leftover that cannot be removed now must not stop the work that triggered the cleaning.
    """
    removed = []
    for leftover in leftovers:
        if not leftover.stale:
            continue
        try:
            if leftover.path.is_dir() and not leftover.path.is_symlink():
                shutil.rmtree(leftover.path)
            else:
                leftover.path.unlink()
        except FileNotFoundError:
            continue  # another cleaner was first
        except OSError:
            continue
        removed.append(leftover)
    return removed


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Leftover]:
    """Remove the stale temporary files of atomic writes in ``folder``; return those removed."""
    return remove_stale(find_temporaries(folder))
