"""Property-based tests of the IDX reader: whatever the bytes, an array or a DataError, in bounded memory.

Hypothesis generates arbitrary byte strings, valid files with flipped bytes, truncations and
extra bytes, gzip streams damaged after compression, and headers that declare enormous or
numerous dimensions. The reader must answer each with a numpy array or a :class:`DataError`
(never another exception), and must refuse a header that claims more data than the file holds
before it allocates anything.
"""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitnet.data.idx import IDX_DTYPES, decode_idx, encode_idx, read_idx
from digitnet.errors import DataError

# Few examples per property, to keep the module short; no deadline, because a loaded machine
# makes single examples slow without anything being wrong.
QUICK = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: No single read of these small inputs may use more memory than this.
MEMORY_BOUND = 16 * 2**20

TYPE_CODES = sorted(IDX_DTYPES)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One folder for the files of every example (module-scoped: Hypothesis re-runs the test body)."""
    return tmp_path_factory.mktemp("idx-properties")


def read_all_ways(content: bytes, folder: Path) -> list[np.ndarray | DataError]:
    """Decode ``content`` in memory, from a plain file and from a gzip file; collect each outcome.

    Any exception other than DataError propagates and fails the test that called this.
    """
    outcomes: list[np.ndarray | DataError] = []
    plain, packed = folder / "plain-idx", folder / "packed-idx.gz"
    plain.write_bytes(content)
    packed.write_bytes(gzip.compress(content, mtime=0))
    for read in (lambda: decode_idx(content, name="in-memory"), lambda: read_idx(plain), lambda: read_idx(packed)):
        try:
            outcomes.append(read())
        except DataError as exc:
            assert str(exc), "a DataError must say what is wrong"
            outcomes.append(exc)
    return outcomes


def peak_memory_of(function) -> int:
    """Run ``function`` and return the peak bytes traced while it ran."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@st.composite
def valid_idx_files(draw) -> tuple[bytes, np.ndarray]:
    """A well-formed IDX file of any element type, rank 0..4 and small dimensions, with its array."""
    code = draw(st.sampled_from(TYPE_CODES))
    dtype = IDX_DTYPES[code].newbyteorder("=")
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    raw = draw(st.binary(min_size=dtype.itemsize * int(np.prod(shape)), max_size=dtype.itemsize * int(np.prod(shape))))
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return encode_idx(array), array


def header(code: int, dims: list[int]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@QUICK
@given(content=st.binary(max_size=300))
def test_arbitrary_bytes_give_an_array_or_a_data_error(scratch, content):
    outcomes = read_all_ways(content, scratch)

    # The three ways of reading agree on whether the bytes are a valid IDX file.
    assert len({isinstance(outcome, DataError) for outcome in outcomes}) == 1


@QUICK
@given(data=st.data(), file=valid_idx_files())
def test_a_valid_file_with_flipped_bytes_gives_an_array_or_a_data_error(scratch, data, file):
    content, array = file
    damaged = bytearray(content)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(content) - 1), st.integers(1, 255)), max_size=4))
    for position, mask in flips:
        damaged[position] ^= mask

    outcomes = read_all_ways(bytes(damaged), scratch)

    if bytes(damaged) == content:
        for outcome in outcomes:
            np.testing.assert_array_equal(outcome, array)


@QUICK
@given(data=st.data(), file=valid_idx_files())
def test_a_truncated_or_extended_valid_file_is_a_data_error(scratch, data, file):
    content, _ = file
    cut = data.draw(st.integers(0, len(content) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=16))

    for changed in (content[:cut], content + extra):
        for outcome in read_all_ways(changed, scratch):
            assert isinstance(outcome, DataError)


@QUICK
@given(data=st.data(), file=valid_idx_files())
def test_a_gzip_stream_damaged_after_compression_gives_an_array_or_a_data_error(scratch, data, file):
    content, array = file
    packed = bytearray(gzip.compress(content, mtime=0))
    position = data.draw(st.integers(0, len(packed) - 1))
    packed[position] ^= data.draw(st.integers(1, 255))
    path = scratch / "damaged.gz"
    path.write_bytes(bytes(packed[: data.draw(st.integers(0, len(packed)))]))

    try:
        loaded = read_idx(path)
    except DataError:
        return
    # A flip that gzip cannot notice (in the header's mtime or OS byte, say) leaves the data intact.
    np.testing.assert_array_equal(loaded, array)


@QUICK
@given(
    code=st.sampled_from(TYPE_CODES),
    dims=st.lists(
        st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1])), min_size=1, max_size=6
    ),
    body=st.binary(max_size=64),
)
def test_huge_declared_dimensions_are_refused_before_anything_is_allocated(scratch, code, dims, body):
    content = header(code, dims) + body

    peak = peak_memory_of(lambda: read_all_ways(content, scratch))

    assert peak < MEMORY_BOUND, f"dimensions {dims} made the reader use {peak:,} bytes"


@QUICK
@given(rank=st.integers(0, 255), code=st.sampled_from(TYPE_CODES))
def test_any_rank_up_to_255_gives_an_array_or_a_data_error(scratch, rank, code):
    # Dimensions of 1: the file is tiny and well-formed, but numpy holds at most 64 (or 32) axes.
    content = header(code, [1] * rank) + b"\x00" * IDX_DTYPES[code].itemsize

    read_all_ways(content, scratch)


def test_a_header_claiming_ten_to_the_twelve_elements_is_refused_without_allocating_them(scratch):
    content = header(0x08, [10**6, 10**6]) + b"\x00" * 18

    for outcome in read_all_ways(content, scratch):
        assert isinstance(outcome, DataError)
        assert "1,000,000,000,000 bytes" in str(outcome)
    peak = peak_memory_of(lambda: read_all_ways(content, scratch))

    # Bounded by one read chunk of the gzip reader, not by the terabyte the header claims.
    assert peak < MEMORY_BOUND


def test_an_empty_array_with_enormous_other_dimensions_is_a_data_error_not_a_value_error(scratch):
    # Zero elements, so no data is needed, but numpy cannot make an array of this shape.
    content = header(0x08, [0, 2**32 - 1, 2**32 - 1])

    for outcome in read_all_ways(content, scratch):
        assert isinstance(outcome, DataError)
        assert "numpy" in str(outcome)


def test_more_dimensions_than_numpy_supports_is_a_data_error_not_a_value_error(scratch):
    content = header(0x08, [1] * 100) + b"\x07"

    for outcome in read_all_ways(content, scratch):
        assert isinstance(outcome, DataError)
        assert "100 dimensions" in str(outcome)
