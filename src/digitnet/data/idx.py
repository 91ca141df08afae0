"""Read and write IDX files, the format MNIST and Fashion-MNIST are published in.

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <rank>``, then ``rank``
big-endian unsigned 32-bit dimension sizes, then the elements in C order, big-endian.
Gzip-compressed files are recognised by their first two bytes, whatever their name.

Every way a file can be malformed raises :class:`IdxError` naming the file. The declared size
is checked against the bytes actually present *before* the array is allocated, so a corrupt
header can never trigger a huge allocation.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from digitnet.data.cache import atomic_write_bytes
from digitnet.errors import DataError

__all__ = [
    "IDX_DTYPES",
    "ByteReader",
    "IdxError",
    "IdxHeader",
    "decode_idx",
    "encode_idx",
    "read_at_most",
    "read_decompressed",
    "read_idx",
    "write_idx",
]

#: IDX type code -> big-endian element type.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES: dict[np.dtype, int] = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"
_MAX_RANK = 255
_MAX_HEADER_SIZE = 4 + 4 * _MAX_RANK
_READ_CHUNK = 4 << 20  # bounded reads grow the buffer 4 MiB at a time


class IdxError(DataError):
    """An IDX file is malformed: bad magic number, unknown type, truncated, or the wrong size."""


@dataclass(frozen=True)
class IdxHeader:
    """The parsed header of an IDX file.

    Attributes
    ----------
    dtype : numpy.dtype
        Big-endian element type.
    shape : tuple of int
        Declared dimensions.
    """

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def header_size(self) -> int:
        """Bytes taken by the magic number and the dimension sizes."""
        return 4 + 4 * len(self.shape)

    @property
    def data_size(self) -> int:
        """Bytes the declared dimensions require (a Python int: it cannot overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize


def _parse_header(read: Callable[[int], bytes], name: str) -> IdxHeader:
    """Parse an IDX header from a ``read(n)`` callable, raising :class:`IdxError` if malformed."""
    magic = read(4)
    if len(magic) < 4:
        raise IdxError(f"{name} is truncated: it ends inside the 4-byte IDX magic number; fetch the file again.")
    if magic[0] != 0 or magic[1] != 0:
        raise IdxError(
            f"{name} is not an IDX file (it starts with 0x{magic.hex()}, not 0x0000); "
            "check that you gave the right file."
        )
    dtype = IDX_DTYPES.get(magic[2])
    if dtype is None:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise IdxError(
            f"{name} declares unknown IDX element type 0x{magic[2]:02X} (known: {known}); "
            "the file is corrupt or not an IDX file."
        )
    rank = magic[3]
    dims = read(4 * rank)
    if len(dims) < 4 * rank:
        raise IdxError(
            f"{name} is truncated: its header declares {rank} dimensions but ends after "
            f"{4 + len(dims)} bytes; fetch the file again."
        )
    shape = struct.unpack(f">{rank}I", dims)
    return IdxHeader(dtype=dtype, shape=tuple(shape))


def _check_data_size(header: IdxHeader, available: int, name: str) -> None:
    """Compare the declared data size with the bytes present; raise :class:`IdxError` if they differ."""
    expected = header.data_size
    if available < expected:
        raise IdxError(
            f"{name} is truncated or its header is corrupt: dimensions {header.shape} of "
            f"{header.dtype.name} need {expected:,} bytes of data but the file holds only "
            f"{available:,}; fetch the file again."
        )
    if available > expected:
        raise IdxError(
            f"{name} has {available - expected:,} unexpected trailing bytes after the "
            f"{expected:,} bytes its dimensions {header.shape} declare; the file is corrupt, "
            "fetch it again."
        )


def _describe_shape(shape: tuple[int, ...]) -> str:
    """Show a shape in an error message, abbreviated when it has many dimensions."""
    return str(shape) if len(shape) <= 8 else f"({', '.join(map(str, shape[:8]))}, ...)"


def _to_array(buffer: bytes | bytearray, header: IdxHeader, offset: int, name: str) -> np.ndarray:
    """View the data part of ``buffer`` as an array in native byte order.

    Raises
    ------
    IdxError
        When numpy cannot represent the declared shape: more dimensions than numpy allows
        (64, or 32 before numpy 2), or an empty array whose other dimensions multiply beyond
        the address space. Such a header needs little or no data, so the size check passes.
    """
    count = math.prod(header.shape)
    try:
        array = np.frombuffer(buffer, dtype=header.dtype, count=count, offset=offset).reshape(header.shape)
    except ValueError as exc:
        raise IdxError(
            f"{name} declares {len(header.shape)} dimensions {_describe_shape(header.shape)}, which numpy "
            f"cannot represent ({exc}); the file is corrupt or not an IDX file."
        ) from exc
    if header.dtype.itemsize > 1:
        # Multi-byte elements: convert once to native order so arithmetic downstream is fast.
        array = array.astype(header.dtype.newbyteorder("="))
    return array


class ByteReader(Protocol):
    """Anything :func:`read_at_most` can read: a file, a gzip stream, a zip member, an HTTP response."""

    def read(self, size: int, /) -> bytes:
        """At most ``size`` bytes; fewer only at the end of the stream (``b""`` there)."""


def read_at_most(stream: ByteReader, limit: int) -> bytearray:
    """Read until end of stream or ``limit`` bytes, whichever comes first, in bounded chunks.

    Growing the buffer chunk by chunk means memory follows the bytes that really exist, never
    a size a header (or a server) merely claims.

    Parameters
    ----------
    stream : binary file object
        Any object with ``read(n)``: a file, a gzip stream, an HTTP response.
    limit : int
        The most bytes to read.

    Returns
    -------
    bytearray
        The bytes read, at most ``limit`` of them.
    """
    buffer = bytearray()
    while len(buffer) < limit:
        chunk = stream.read(min(_READ_CHUNK, limit - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def read_decompressed(stream: BinaryIO, *, limit: int, name: str) -> bytearray:
    """Read a seekable stream's content, gunzipping it first if it starts with the gzip magic bytes.

    Parameters
    ----------
    stream : binary file object
        Positioned at the start of the content; must support ``seek``.
    limit : int
        Read at most this many (uncompressed) bytes. Pass the expected size plus one to detect
        files that are too long without reading all of them.
    name : str
        Shown in error messages.

    Returns
    -------
    bytearray
        At most ``limit`` uncompressed bytes.

    Raises
    ------
    IdxError
        When the gzip stream is damaged or truncated.
    """
    start = stream.tell()
    is_gzip = stream.read(2) == GZIP_MAGIC
    stream.seek(start)
    if not is_gzip:
        return read_at_most(stream, limit)
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
            return read_at_most(unzipped, limit)
    except (EOFError, OSError, zlib.error) as exc:
        raise IdxError(f"{name} is a damaged gzip file ({exc}); fetch the file again.") from exc


def decode_idx(buffer: bytes | bytearray, name: str = "IDX data") -> np.ndarray:
    """Decode the complete content of an IDX file held in memory.

    Parameters
    ----------
    buffer : bytes or bytearray
        The uncompressed file content. A ``bytearray`` gives a writable array without a copy.
    name : str, optional
        Shown in error messages (usually the file name).

    Returns
    -------
    numpy.ndarray
        The elements with the declared shape, in native byte order.

    Raises
    ------
    IdxError
        When the content is not a well-formed IDX file.
    """
    header = _parse_header(io.BytesIO(bytes(buffer[:_MAX_HEADER_SIZE])).read, name)
    _check_data_size(header, len(buffer) - header.header_size, name)
    return _to_array(buffer, header, offset=header.header_size, name=name)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, plain or gzip-compressed.

    Parameters
    ----------
    path : path-like
        The file. Compression is detected from its first bytes, not its name.

    Returns
    -------
    numpy.ndarray
        The elements with the declared shape and type (``uint8`` for MNIST), in native byte
        order and writable.

    Raises
    ------
    IdxError
        When the file is missing, unreadable, damaged, or not a well-formed IDX file; the
        message names the file.

    Examples
    --------
    >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape, images.dtype  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    name = str(path)
    try:
        with open(path, "rb") as stream:
            if stream.read(2) == GZIP_MAGIC:
                stream.seek(0)
                return _read_gzip_idx(stream, name)
            stream.seek(0)
            header = _parse_header(stream.read, name)
            # Compare the declared size with the file's real length before allocating anything.
            available = os.fstat(stream.fileno()).st_size - header.header_size
            _check_data_size(header, available, name)
            data = bytearray(header.data_size)
            received = stream.readinto(data)
            if received != header.data_size:  # the file shrank while we read it
                _check_data_size(header, received, name)
            return _to_array(data, header, offset=0, name=name)
    except FileNotFoundError as exc:
        raise IdxError(f"{name} does not exist; check the path.") from exc
    except IsADirectoryError as exc:
        raise IdxError(f"{name} is a directory, not an IDX file; give the path of a file.") from exc
    except PermissionError as exc:
        raise IdxError(f"{name} cannot be read (permission denied); check its permissions.") from exc


def _read_gzip_idx(stream: BinaryIO, name: str) -> np.ndarray:
    """Read a gzip-compressed IDX file, decompressing at most the declared size plus one byte."""
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
            header = _parse_header(unzipped.read, name)
            # One byte more than declared is enough to tell "trailing bytes" from "exact".
            data = read_at_most(unzipped, header.data_size + 1)
    except (EOFError, OSError, zlib.error) as exc:
        raise IdxError(f"{name} is a damaged gzip file ({exc}); fetch the file again.") from exc
    if len(data) > header.data_size:
        raise IdxError(
            f"{name} has unexpected trailing bytes after the {header.data_size:,} bytes its "
            f"dimensions {header.shape} declare; the file is corrupt, fetch it again."
        )
    _check_data_size(header, len(data), name)
    return _to_array(data, header, offset=0, name=name)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as the bytes of an uncompressed IDX file.

    Parameters
    ----------
    array : numpy.ndarray
        Of type uint8, int8, int16, int32, float32 or float64, with at most 255 dimensions,
        each smaller than 2**32.

    Returns
    -------
    bytes
        Magic number, big-endian dimensions, big-endian elements.

    Raises
    ------
    TypeError
        When the element type has no IDX type code.
    ValueError
        When the array has too many dimensions or a dimension is too large.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    code = _TYPE_CODES.get(native)
    if code is None:
        raise TypeError(
            f"IDX cannot store {array.dtype}; use one of "
            f"{', '.join(str(dtype.newbyteorder('=')) for dtype in IDX_DTYPES.values())}."
        )
    if array.ndim > _MAX_RANK:
        raise ValueError(f"IDX stores at most {_MAX_RANK} dimensions, not {array.ndim}.")
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(f"IDX dimensions must be smaller than 2**32, got {array.shape}.")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    return header + body


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write an array as an IDX file, atomically; gzip-compressed when the name ends in ``.gz``.

    Parameters
    ----------
    path : path-like
        Destination. Parent directories are created.
    array : numpy.ndarray
        See :func:`encode_idx` for the supported types and shapes.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    data = encode_idx(array)
    if str(path).endswith(".gz"):
        # mtime=0 keeps the compressed bytes reproducible for the same array.
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data)
