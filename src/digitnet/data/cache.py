"""Where downloaded datasets live, how they are written, and how they are checked.

The cache holds each dataset's files *uncompressed* under ``<cache>/<dataset>/<file>``, so
that loading is one read and one hash per file. Every write goes through
:func:`atomic_write_bytes`, so a file at its final name is always complete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import platformdirs

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
    half way, the temporary file is removed and ``path`` is untouched.

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
    # The temporary name starts with a dot and ends in ".part": it can never be mistaken for
    # a data file, which the cache only ever looks up by its exact canonical name.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        # BaseException on purpose: a Ctrl-C mid-write must not leave the temporary file behind.
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


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
