"""The IDX reader and writer: round trips for every element type and rank, and every malformed file."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tracemalloc

import numpy as np
import pytest

import digitnet.data.datasets as catalogue
from digitnet.data import load_dataset
from digitnet.data.datasets import ROLES, DatasetSpec, FileSpec
from digitnet.data.idx import (
    IDX_DTYPES,
    IdxError,
    decode_idx,
    encode_idx,
    read_idx,
    write_idx,
)
from digitnet.errors import DataError

NATIVE_DTYPES = [dtype.newbyteorder("=") for dtype in IDX_DTYPES.values()]
SHAPES = {1: (7,), 2: (3, 5), 3: (4, 3, 2), 4: (2, 3, 2, 2)}


def sample_array(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Values that use each type's range, including negatives and fractions where possible."""
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        return rng.normal(scale=1e3, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def idx_bytes(type_code: int, dims: tuple[int, ...], data: bytes) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


@pytest.mark.parametrize("rank", sorted(SHAPES))
@pytest.mark.parametrize("dtype", NATIVE_DTYPES, ids=str)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_every_element_type_and_rank_survives_a_write_and_read(tmp_path, dtype, rank, suffix):
    array = sample_array(dtype, SHAPES[rank])
    path = write_idx(tmp_path / f"sample.idx{suffix}", array)

    loaded = read_idx(path)

    assert loaded.dtype == dtype
    assert loaded.dtype.isnative
    assert loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)


def test_written_files_are_big_endian_with_the_documented_header(tmp_path):
    path = write_idx(tmp_path / "labels", np.array([1, 258], dtype=np.int16))

    assert path.read_bytes() == bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x00, 0x01, 0x01, 0x02])


def test_gzip_is_recognised_by_its_magic_bytes_not_its_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(encode_idx(array)))

    np.testing.assert_array_equal(read_idx(path), array)


def test_a_gz_name_is_written_compressed(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((10, 10), np.uint8))

    assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_big_endian_input_arrays_are_written_correctly(tmp_path):
    array = np.arange(5, dtype=">i4")

    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "be", array)), [0, 1, 2, 3, 4])


def test_arrays_read_from_a_file_are_writable(tmp_path):
    loaded = read_idx(write_idx(tmp_path / "x", np.zeros(3, np.uint8)))

    loaded[0] = 1  # would raise if the array were a read-only view of the file bytes
    assert loaded[0] == 1


def test_decoding_in_memory_bytes_matches_reading_the_file(tmp_path):
    array = sample_array(np.dtype(np.float32), (3, 4))

    np.testing.assert_array_equal(decode_idx(encode_idx(array)), array)


def test_an_unsupported_dtype_cannot_be_written(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    assert not (tmp_path / "x").exists()


def test_a_malformed_file_from_read_idx_is_caught_as_a_data_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(0x08, (4,), b"\x01\x02"))

    # Callers (the command line among them) catch DataError, not the IDX module's own class.
    with pytest.raises(DataError) as caught:
        read_idx(path)

    assert str(caught.value) == (
        f"{path} is truncated or its header is corrupt: dimensions (4,) of uint8 need 4 bytes of data "
        "but the file holds only 2; fetch the file again."
    )


def test_a_verified_dataset_file_that_is_not_valid_idx_surfaces_from_load_dataset_as_a_data_error(
    tmp_path, monkeypatch
):
    # A catalogue whose checksums describe a malformed file: every byte verifies, decoding fails.
    content = {
        "train-images-idx3-ubyte": encode_idx(np.zeros((2, 2, 2), np.uint8)),
        "train-labels-idx1-ubyte": idx_bytes(0x08, (2,), b"\x01\x02\x03"),  # one trailing byte
        "t10k-images-idx3-ubyte": encode_idx(np.zeros((1, 2, 2), np.uint8)),
        "t10k-labels-idx1-ubyte": encode_idx(np.zeros(1, np.uint8)),
    }
    files = tuple(
        FileSpec(role, name, len(data), hashlib.sha256(data).hexdigest())
        for role, (name, data) in zip(ROLES, content.items(), strict=True)
    )
    spec = DatasetSpec("broken", "malformed", tuple("0123456789"), (2, 2), 2, 1, files=files)
    monkeypatch.setattr(catalogue, "DATASETS", {"broken": spec})
    for name, data in content.items():
        (tmp_path / name).write_bytes(data)

    with pytest.raises(DataError, match=r"broken/train-labels-idx1-ubyte has 1 unexpected trailing bytes"):
        load_dataset("broken", data_dir=tmp_path, cache_dir=tmp_path / "cache", allow_network=False)


MALFORMED = {
    "bad magic number": (b"\x12\x34\x08\x01" + b"\x00\x00\x00\x01" + b"\x00", "not an IDX file"),
    "unknown type code": (idx_bytes(0x0A, (1,), b"\x00"), "unknown IDX element type 0x0A"),
    "empty file": (b"", "truncated"),
    "truncated magic number": (b"\x00\x00", "truncated"),
    "truncated header": (bytes([0, 0, 0x08, 3]) + b"\x00\x00\x00\x02\x00\x00", "truncated"),
    "truncated data": (idx_bytes(0x08, (2, 3), b"\x00" * 5), "truncated"),
    "trailing bytes": (idx_bytes(0x08, (2, 3), b"\x00" * 7), "trailing bytes"),
    "data not a whole number of elements": (idx_bytes(0x0C, (2,), b"\x00" * 7), "truncated"),
    # 10**12 declared elements in a 30-byte file: must be refused without trying to allocate a terabyte.
    "absurd declared size": (idx_bytes(0x08, (10**6, 10**6), b"\x00" * 18), "truncated"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_an_idx_error_that_names_the_file(tmp_path, case, compress):
    content, expected = MALFORMED[case]
    path = tmp_path / "broken-file-idx"
    path.write_bytes(gzip.compress(content) if compress else content)

    tracemalloc.start()
    try:
        with pytest.raises(IdxError) as caught:
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert str(path) in str(caught.value)
    assert expected in str(caught.value)
    assert peak < 50 * 2**20, f"reading a {len(content)}-byte file peaked at {peak:,} bytes"


def test_absurd_declared_size_in_30_bytes_is_refused(tmp_path):
    content = idx_bytes(0x08, (10**6, 10**6), b"\x00" * 18)
    assert len(content) == 30
    path = tmp_path / "absurd"
    path.write_bytes(content)

    with pytest.raises(IdxError, match="absurd.*need 1,000,000,000,000 bytes"):
        read_idx(path)


def test_a_truncated_gzip_stream_raises_an_idx_error(tmp_path):
    compressed = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])

    with pytest.raises(IdxError, match="cut.gz"):
        read_idx(path)


def test_a_missing_file_raises_an_idx_error_naming_it(tmp_path):
    with pytest.raises(IdxError, match="nowhere-idx1-ubyte.*does not exist"):
        read_idx(tmp_path / "nowhere-idx1-ubyte")


def test_malformed_in_memory_bytes_raise_an_idx_error_with_the_given_name():
    with pytest.raises(IdxError, match="labels-from-somewhere"):
        decode_idx(idx_bytes(0x08, (4,), b"\x00"), name="labels-from-somewhere")
