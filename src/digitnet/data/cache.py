"""Where downloaded datasets live, how they are written, and how they are checked.

The cache holds each dataset's files *uncompressed* under ``<cache>/<dataset>/<file>``, so
that loading is one read and one hash per file. Every write goes through
:func:`atomic_write_bytes`, so a file at its final name is always complete. Model files are
written the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

from digitnet.data.leftovers import remove_stale_temporaries, temporary_path_for

__all__ = [
    "CACHE_ENV_VAR",
    "atomic_write_bytes",
    "dataset_cache_dir",
    "default_cache_dir",
    "sha256_of_bytes",
    "sha256_of_file",
]

#: Environment variable that overrides the platform's user cache directory.
CACHE_ENV_VAR = "DIGITNET_CACHE_DIR"

_HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """Return the directory that holds cached datasets.

    Returns
    -------
    pathlib.Path
        ``$DIGITNET_CACHE_DIR`` when that variable is set and not empty, otherwise the
        platform's user cache directory for ``digitnet`` (for example ``~/.cache/digitnet``
        on Linux). The directory is not created here.
    """
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("digitnet"))


def dataset_cache_dir(cache_dir: str | os.PathLike[str] | None, dataset: str) -> Path:
    """Return the folder of one dataset inside a cache directory.

    Parameters
    ----------
    cache_dir : path-like or None
        The cache root; ``None`` means :func:`default_cache_dir`.
    dataset : str
        The catalogue name, for example ``"mnist"``.

    Returns
    -------
    pathlib.Path
        ``<cache_dir>/<dataset>``.
    """
    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return root / dataset


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The bytes go to a temporary file in the same directory (same file system, so the final
    rename is atomic), are flushed to disk, and only then replace ``path``. If anything fails
    half way, the temporary file is removed and ``path`` is untouched. A process killed outright
    cannot remove its temporary; its name records the writer's process id, so the next write in
    the folder removes it (see :mod:`digitnet.data.leftovers`).

    The new file gets the permissions ``0o666`` less the umask, like any file a program creates.

    Parameters
    ----------
    path : path-like
        The final location. Missing parent directories are created.
    data : bytes-like
        The complete file content.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    fd, tmp = _create_temporary(target)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, target)
    except BaseException:
        # BaseException on purpose: a Ctrl-C mid-write must not leave the temporary file behind.
        tmp.unlink(missing_ok=True)
        raise
    return target


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create and open a new temporary file beside ``target``; return its descriptor and path.

    ``os.open`` with mode ``0o666`` lets the kernel apply the umask (and any default ACL) at
    creation. ``tempfile.mkstemp`` would force ``0o600`` whatever the umask, and reading the umask
    to chmod afterwards needs ``os.umask``, which changes it process-wide for a moment.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):  # a clash needs the same pid and 32 random bits: retrying is enough
        tmp = temporary_path_for(target)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique temporary file beside {target}")


def sha256_of_bytes(data: bytes | bytearray | memoryview) -> str:
    """Return the hexadecimal SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Return the hexadecimal SHA-256 digest of a file's bytes, read in chunks.

    Parameters
    ----------
    path : path-like
        The file to hash. It is hashed as stored: a ``.gz`` file's compressed bytes.

    Returns
    -------
    str
        64 lowercase hexadecimal characters.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
