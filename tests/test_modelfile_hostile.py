"""Hostile model files: each is refused with one sentence, before anything of its claimed size exists.

Every file here is crafted in ``tmp_path``: ZIP archives with :mod:`zipfile` (or byte by byte, where
an archive must lie about itself), ``.npy`` headers with :mod:`numpy.lib.format`. Memory is measured
with :mod:`tracemalloc`, which sees NumPy's array allocations too.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from numpy.lib import format as npy_format

from digitnet.errors import ModelFileError
from digitnet.nn import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    Network,
    ReLU,
    build_mlp,
)

#: A refusal may read headers and metadata, nothing the size of a model (the 784-16-10 model's
#: load peaks at about 0.2 MiB; every hostile claim below is 50 MiB or more).
REFUSAL_PEAK = 1 << 20


# -- crafting files -----------------------------------------------------------------------------


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple, *, version: tuple[int, int] = (1, 0)) -> bytes:
    """Just a ``.npy`` header, claiming whatever it is told to."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    (npy_format.write_array_header_1_0 if version == (1, 0) else npy_format.write_array_header_2_0)(buffer, header)
    return buffer.getvalue()


def members_of(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def metadata_of(members: dict[str, bytes]) -> dict:
    return json.loads(str(np.load(io.BytesIO(members["metadata.npy"]), allow_pickle=False)))


def with_metadata(members: dict[str, bytes], metadata) -> dict[str, bytes]:
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return {**members, "metadata.npy": npy_bytes(np.array(text))}


def raw_zip(entries: list[tuple[str, bytes, int, int, int]], flags: int = 0) -> bytes:
    """A ZIP written byte by byte, so that it can lie: ``(name, payload, method, crc, claimed_size)``."""
    local, directory, offset = [], [], 0
    for name, payload, method, crc, claimed_size in entries:
        encoded = name.encode()
        header = struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0, crc, len(payload), claimed_size, len(encoded), 0
        )
        directory.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                flags,
                method,
                0,
                0,
                crc,
                len(payload),
                claimed_size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
        local.append(header + encoded + payload)
        offset += len(local[-1])
    directory_bytes = b"".join(directory)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory_bytes), offset, 0)
    return b"".join(local) + directory_bytes + end


def deflate(chunks) -> bytes:
    """Raw deflate (as ZIP stores it) of the concatenated ``chunks``."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    return b"".join(compressor.compress(chunk) for chunk in chunks) + compressor.flush()


def refusal(path) -> tuple[str, int]:
    """Load ``path``, expecting a refusal: its message and the load's peak traced memory."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as caught:
            Network.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message, peak


@pytest.fixture
def mlp_members(tmp_path, rng) -> dict[str, bytes]:
    """The members of a saved 784-16-10 network (Flatten, Dense, ReLU, Dense)."""
    build_mlp((16,), input_shape=(1, 28, 28), rng=rng, mean=0.13, std=0.31).save(tmp_path / "mlp.npz")
    return members_of(tmp_path / "mlp.npz")


@pytest.fixture
def cnn_members(tmp_path, rng) -> dict[str, bytes]:
    """Members of a saved small CNN with every layer type (BatchNorm after the convolution)."""
    layers = [
        Conv2D(1, 4, 3, "same", rng=rng),
        BatchNorm(4),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
        Dense(64, 8, rng=rng),
        ReLU(),
        Dropout(0.25),
        Dense(8, 10, rng=rng),
    ]
    Network(layers, (1, 8, 8), mean=0.1, std=0.3).save(tmp_path / "cnn.npz")
    return members_of(tmp_path / "cnn.npz")


def edited(members: dict[str, bytes], edit) -> dict[str, bytes]:
    metadata = metadata_of(members)
    edit(metadata)
    return with_metadata(members, metadata)


# -- sizes in the metadata are checked against the arrays before anything is built ------------------


def test_a_layer_edited_to_twenty_thousand_units_is_refused_before_anything_is_allocated(mlp_members, tmp_path):
    def widen(metadata):
        metadata["layers"][1]["out_features"] = metadata["layers"][3]["in_features"] = 20_000

    write_zip(tmp_path / "m.npz", edited(mlp_members, widen))
    message, peak = refusal(tmp_path / "m.npz")
    assert "array layer1.W has shape (784, 16), expected (784, 20000)" in message
    assert peak < REFUSAL_PEAK  # the old loader built the 20,000-unit network first (3.2 GB at 784 in)


@pytest.mark.parametrize(("layer", "field"), [(1, "out_features"), (1, "in_features"), (3, "in_features")])
def test_a_billion_units_is_refused_by_the_schema_without_a_memory_error(mlp_members, tmp_path, layer, field):
    write_zip(tmp_path / "m.npz", edited(mlp_members, lambda m: m["layers"][layer].update({field: 10**9})))
    message, peak = refusal(tmp_path / "m.npz")
    assert f"metadata field layers[{layer}].{field} must be a whole number from 1 to 65536" in message
    assert peak < REFUSAL_PEAK


def test_batchnorm_with_a_billion_channels_is_refused_before_it_allocates_them(cnn_members, tmp_path):
    write_zip(tmp_path / "m.npz", edited(cnn_members, lambda m: m["layers"][1].update(channels=10**9)))
    message, peak = refusal(tmp_path / "m.npz")
    assert "metadata field layers[1].channels must be a whole number from 1 to 65536" in message
    assert peak < REFUSAL_PEAK


def test_batchnorm_channels_that_disagree_with_the_convolution_are_refused(cnn_members, tmp_path):
    write_zip(tmp_path / "m.npz", edited(cnn_members, lambda m: m["layers"][1].update(channels=5000)))
    message, _ = refusal(tmp_path / "m.npz")
    assert "metadata field layers[1].channels is 5000 but the layers before it give 4 channels" in message


def test_an_input_shape_too_large_to_probe_is_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", edited(mlp_members, lambda m: m.update(input_shape=[4, 4096, 4096])))
    message, peak = refusal(tmp_path / "m.npz")
    assert "metadata field input_shape describes images of 67108864 values (at most 262144)" in message
    assert peak < REFUSAL_PEAK


def test_a_convolution_whose_padding_would_explode_the_activations_is_refused(cnn_members, tmp_path):
    write_zip(tmp_path / "m.npz", edited(cnn_members, lambda m: m["layers"][0].update(padding=10_000)))
    message, _ = refusal(tmp_path / "m.npz")
    assert 'metadata field layers[0].padding must be "same", "valid" or a whole number from 0 to 32' in message


def test_a_convolution_with_more_im2col_values_than_the_limit_is_refused(cnn_members, tmp_path):
    def enlarge(metadata):
        metadata["input_shape"] = [1, 400, 400]
        metadata["layers"][0].update(kernel_size=[9, 9])

    write_zip(tmp_path / "m.npz", edited(cnn_members, enlarge))
    message, peak = refusal(tmp_path / "m.npz")
    assert "metadata field layers[0] (Conv2D) would need 12960000 im2col values per image" in message
    assert peak < REFUSAL_PEAK


# -- zip bombs: names, headers and sizes are checked before any data is unpacked -------------------


def test_a_deflated_member_that_would_inflate_far_beyond_its_size_is_refused_unread(mlp_members, tmp_path):
    """Consistent metadata and header, 62.7 MB of zeros in 61 kB: refused from the ZIP directory alone."""

    def widen(metadata):
        metadata["layers"][1]["out_features"] = metadata["layers"][3]["in_features"] = 20_000

    members = edited(mlp_members, widen)
    members["layer1.b.npy"] = npy_bytes(np.zeros(20_000, np.float32))
    members["layer3.W.npy"] = npy_bytes(np.zeros((20_000, 10), np.float32))
    entries = [(name, data, 0, zlib.crc32(data), len(data)) for name, data in members.items() if name != "layer1.W.npy"]
    header = npy_header("<f4", (784, 20_000))
    entries.append(
        ("layer1.W.npy", deflate([header] + [bytes(784 * 4)] * 20_000), 8, 0, len(header) + 784 * 20_000 * 4)
    )
    (tmp_path / "m.npz").write_bytes(raw_zip(entries))
    message, peak = refusal(tmp_path / "m.npz")
    assert "its entry layer1.W.npy claims 62720128 bytes from" in message
    assert peak < REFUSAL_PEAK


def test_a_metadata_member_over_one_mebibyte_is_refused_before_it_is_read(mlp_members, tmp_path):
    members = edited(mlp_members, lambda m: m.update(notes=" " * 400_000))  # 1.6 MB as UTF-32
    write_zip(tmp_path / "m.npz", members, zipfile.ZIP_DEFLATED)
    message, peak = refusal(tmp_path / "m.npz")
    assert "its entry metadata.npy claims" in message
    assert peak < REFUSAL_PEAK


def test_a_metadata_header_claiming_a_gigabyte_of_text_is_refused_unread(mlp_members, tmp_path):
    members = {**mlp_members, "metadata.npy": npy_header("<U250000000", ()) + b"{}"}
    write_zip(tmp_path / "m.npz", members)
    message, peak = refusal(tmp_path / "m.npz")
    assert "its metadata entry's header claims 1000000000 bytes of text" in message
    assert peak < REFUSAL_PEAK


def test_an_npy_header_claiming_a_trillion_elements_is_refused_without_a_memory_error(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", {**mlp_members, "layer1.W.npy": npy_header("<f4", (10**6, 10**6)) + bytes(64)})
    message, peak = refusal(tmp_path / "m.npz")
    assert "array layer1.W has shape (1000000, 1000000), expected (784, 16)" in message
    assert peak < REFUSAL_PEAK


def test_an_npy_header_length_field_of_four_gibibytes_is_not_followed(mlp_members, tmp_path):
    """NumPy would read the claimed 4 GiB of header before checking it; 16 MiB of zeros are deflated here."""
    bomb = b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFFF)
    payload = deflate([bomb] + [bytes(1 << 20)] * 16)
    entries = [
        (name, data, 0, zlib.crc32(data), len(data)) for name, data in mlp_members.items() if name != "layer1.W.npy"
    ]
    entries.append(("layer1.W.npy", payload, 8, 0, len(payload) * 4))
    (tmp_path / "m.npz").write_bytes(raw_zip(entries))
    message, peak = refusal(tmp_path / "m.npz")
    assert "entry layer1.W.npy has no valid .npy header" in message
    assert peak < REFUSAL_PEAK


def test_a_member_whose_stream_outgrows_its_claimed_size_is_read_only_up_to_the_claim(mlp_members, tmp_path):
    """The directory claims the right size; the deflated stream goes on for 32 MiB more, never unpacked."""
    expected = mlp_members["layer1.W.npy"]
    payload = deflate([expected] + [bytes(1 << 20)] * 32)
    entries = [
        (name, data, 0, zlib.crc32(data), len(data)) for name, data in mlp_members.items() if name != "layer1.W.npy"
    ]
    entries.append(("layer1.W.npy", payload, 8, zlib.crc32(expected), len(expected)))
    (tmp_path / "m.npz").write_bytes(raw_zip(entries))
    write_zip(tmp_path / "good.npz", mlp_members)
    tracemalloc.start()
    try:
        loaded = Network.load(tmp_path / "m.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(loaded.state()["layer1.W"], Network.load(tmp_path / "good.npz").state()["layer1.W"])
    assert peak < REFUSAL_PEAK


def test_fifty_thousand_empty_entries_are_refused_before_zipfile_lists_them(tmp_path):
    (tmp_path / "m.npz").write_bytes(raw_zip([(f"{i}", b"", 0, 0, 0) for i in range(50_000)]))
    message, peak = refusal(tmp_path / "m.npz")
    assert "its ZIP directory lists 50000 entries (a model has at most 1025)" in message
    assert peak < REFUSAL_PEAK  # zipfile would have built 50,000 ZipInfo objects (about 20 MB)


def test_a_member_listed_twice_is_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", mlp_members)
    with zipfile.ZipFile(tmp_path / "m.npz", "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("layer1.b.npy", npy_bytes(np.full(16, 1e30, np.float32)))
    assert "it holds the entry layer1.b.npy twice" in refusal(tmp_path / "m.npz")[0]


@pytest.mark.parametrize("name", ["evil.pkl", "../layer1.W.npy", "layer1.W", "layer1.W.npy/x", "LAYER1.W.NPY"])
def test_members_outside_the_format_are_refused(mlp_members, tmp_path, name):
    write_zip(tmp_path / "m.npz", {**mlp_members, name: b"\x80\x04K\x01."})
    assert "that is not part of the format" in refusal(tmp_path / "m.npz")[0]


def test_a_member_compressed_with_bzip2_is_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", mlp_members, zipfile.ZIP_BZIP2)
    assert "uses compression method 12 (only stored or deflated entries are read)" in refusal(tmp_path / "m.npz")[0]


def test_an_encrypted_member_is_refused(mlp_members, tmp_path):
    entries = [(name, data, 0, zlib.crc32(data), len(data)) for name, data in mlp_members.items()]
    (tmp_path / "m.npz").write_bytes(raw_zip(entries, flags=0x1))
    assert "its entry metadata.npy is encrypted" in refusal(tmp_path / "m.npz")[0]


def test_a_member_with_more_data_than_its_header_implies_is_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", {**mlp_members, "layer1.b.npy": mlp_members["layer1.b.npy"] + bytes(4096)})
    message, _ = refusal(tmp_path / "m.npz")
    assert "entry layer1.b.npy holds 4160 bytes of data, its header says 64" in message


# -- metadata of the wrong type is refused in one sentence naming the field ---------------------------


def _set(path: str, value):
    """An edit that sets the metadata field at dotted ``path`` (list indices as numbers) to ``value``."""

    def edit(metadata):
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        target = metadata
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


def _delete(path: str):
    def edit(metadata):
        *parents, last = path.split(".")
        target = metadata
        for part in parents:
            target = target[int(part) if part.isdigit() else part]
        del target[last]

    return edit


MLP_CASES = {
    "format_version as a string": (_set("format_version", "1"), "metadata field format_version must be a whole number"),
    "format_version null": (_set("format_version", None), "metadata field format_version must be a whole number"),
    "format_version true": (_set("format_version", True), "metadata field format_version must be a whole number"),
    "std zero": (_set("normalisation.std", 0), "metadata field normalisation.std must be a positive finite number"),
    "std negative": (_set("normalisation.std", -0.3), "metadata field normalisation.std must be a positive finite"),
    "std NaN": (_set("normalisation.std", float("nan")), "metadata field normalisation.std must be a positive finite"),
    "std a string": (_set("normalisation.std", "0.3"), "metadata field normalisation.std must be a positive finite"),
    "std missing": (_delete("normalisation.std"), "metadata field normalisation.std is missing"),
    "mean infinite": (_set("normalisation.mean", float("inf")), "metadata field normalisation.mean must be a finite"),
    "normalisation a list": (_set("normalisation", [0, 1]), "metadata field normalisation must be an object"),
    "dtype int8": (_set("dtype", "int8"), 'metadata field dtype must be "float32" or "float64"'),
    "dtype bool": (_set("dtype", "bool"), 'metadata field dtype must be "float32" or "float64"'),
    "dtype object": (_set("dtype", "object"), 'metadata field dtype must be "float32" or "float64"'),
    "dtype datetime": (_set("dtype", "datetime64[ns]"), 'metadata field dtype must be "float32" or "float64"'),
    "dtype float16": (_set("dtype", "float16"), 'metadata field dtype must be "float32" or "float64"'),
    "class_names short": (
        _set("class_names", list("012345678")),
        "metadata field class_names has 9 names but the network gives 10 outputs",
    ),
    "class_names long": (
        _set("class_names", list("0123456789x")),
        "metadata field class_names has 11 names but the network gives 10 outputs",
    ),
    "class_names numbers": (
        _set("class_names", list(range(10))),
        "metadata field class_names[0] is invalid: class_names must be a list of names",
    ),
    "class_names a string": (_set("class_names", "0123456789"), "metadata field class_names must be a list of names"),
    "input_shape one number": (_set("input_shape", [7]), "metadata field input_shape must be three whole numbers"),
    "input_shape negative": (_set("input_shape", [1, 28, -28]), "metadata field input_shape[2] is invalid"),
    "input_shape floats": (_set("input_shape", [1, 28.0, 28]), "metadata field input_shape[1] is invalid"),
    "input_shape a string": (_set("input_shape", "1x28x28"), "metadata field input_shape must be three whole"),
    "input that does not reach the first Dense": (
        _set("input_shape", [1, 20, 20]),
        "metadata field layers[1].in_features is 784 but the layers before it give 400",
    ),
    "first Dense without Flatten": (
        _set("layers.0", {"type": "ReLU"}),
        "metadata field layers[1] (Dense) needs flat input but the layers",
    ),
    "Dense in_features a string": (
        _set("layers.1.in_features", "784"),
        "metadata field layers[1].in_features must be a whole number from 1 to 65536",
    ),
    "Dense in_features fractional": (
        _set("layers.1.in_features", 784.0),
        "metadata field layers[1].in_features must be a whole number",
    ),
    "Dense with an unknown setting": (
        _set("layers.1.units", 5),
        "metadata field layers[1].units is not part of the format",
    ),
    "ReLU with a setting": (_set("layers.2.slope", 0.1), "metadata field layers[2].slope is not part of the format"),
    "layer without a type": (_delete("layers.2.type"), "metadata field layers[2] is invalid"),
    "layer that is not an object": (_set("layers.2", "ReLU"), "metadata field layers[2] is invalid"),
    "unknown layer type": (_set("layers.2.type", "Teleport"), "layers[2].type is 'Teleport', an unknown layer type"),
    "no layers": (_set("layers", []), "metadata field layers must be a list of 1 to 256 layer objects"),
    "metrics a string": (_set("metrics", "97%"), "metadata field metrics must be an object"),
    "test accuracy a string": (
        _set("metrics", {"test_accuracy": "0.97"}),
        "metadata field metrics.test_accuracy must be a number from 0 to 1 or null",
    ),
    "test accuracy above one": (
        _set("metrics", {"test_accuracy": 97}),
        "metrics.test_accuracy must be a number from 0",
    ),
    "dataset a list": (_set("dataset", ["mnist"]), "metadata field dataset must be a short string or null"),
    "history an object": (_set("history", {"epoch": 1}), "metadata field history must be a list of at most"),
    "history record without epoch": (_set("history", [{"loss": 0.5}]), "metadata field history[0].epoch is missing"),
    "history loss a string": (
        _set("history", [{"epoch": 1, "loss": "low"}]),
        "metadata field history[0].loss must be a finite number or null",
    ),
    "training a list": (_set("training", ["adam"]), "metadata field training must be an object"),
    "training epochs a string": (_set("training", {"epochs": "8"}), "metadata field training.epochs must be a non-neg"),
    "digitnet_version a number": (_set("digitnet_version", 1.2), "metadata field digitnet_version must be a short"),
    "deep nesting beyond the recursion limit": (_set("history", "DEEP"), "its metadata nests deeper than 32 levels"),
    "nesting beyond the depth limit": (_set("notes", json.loads("[" * 40 + "]" * 40)), "nests deeper than 32 levels"),
}


@pytest.mark.parametrize("case", sorted(MLP_CASES))
def test_metadata_of_the_wrong_type_is_refused_naming_the_field(mlp_members, tmp_path, case):
    edit, expected = MLP_CASES[case]
    metadata = metadata_of(mlp_members)
    edit(metadata)
    text = json.dumps(metadata).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)
    write_zip(tmp_path / "m.npz", with_metadata(mlp_members, text))
    message, _ = refusal(tmp_path / "m.npz")
    assert expected in message
    assert message.endswith("the file is not a valid digitnet model, train a new one with `digitnet train`.")


CNN_CASES = {
    "dropout rate above one": (
        _set("layers.7.rate", 1.5),
        "metadata field layers[7].rate must be a number from 0 up to",
    ),
    "dropout rate one": (_set("layers.7.rate", 1), "metadata field layers[7].rate must be a number from 0 up to"),
    "padding unknown": (_set("layers.0.padding", "full"), 'metadata field layers[0].padding must be "same", "valid"'),
    "padding true": (_set("layers.0.padding", True), 'metadata field layers[0].padding must be "same", "valid"'),
    "kernel of one number": (_set("layers.0.kernel_size", [3]), "metadata field layers[0].kernel_size must be two"),
    "kernel of zero": (_set("layers.0.kernel_size", [0, 3]), "metadata field layers[0].kernel_size[0] is invalid"),
    "valid padding shrinking the image": (
        _set("layers.0.padding", "valid"),
        "metadata field layers[5].in_features is 64 but the layers before it give 36",
    ),
    "conv in_channels wrong": (
        _set("layers.0.in_channels", 3),
        "metadata field layers[0].in_channels is 3 but the layers before it give 1 channels",
    ),
    "pool of zero": (_set("layers.3.pool_size", 0), "metadata field layers[3].pool_size must be a whole number from 1"),
    "pool larger than the input": (_set("layers.3.pool_size", 9), "metadata field layers[3].pool_size 9 does not fit"),
    "stride a string": (_set("layers.3.stride", "2"), "metadata field layers[3].stride must be a whole number"),
    "batchnorm momentum two": (
        _set("layers.1.momentum", 2),
        "metadata field layers[1].momentum must be a number from 0",
    ),
    "batchnorm eps zero": (_set("layers.1.eps", 0), "metadata field layers[1].eps must be a positive number"),
    "batchnorm eps negative": (_set("layers.1.eps", -1e-5), "metadata field layers[1].eps must be a positive number"),
    "batchnorm eps NaN": (_set("layers.1.eps", float("nan")), "metadata field layers[1].eps must be a positive number"),
}


@pytest.mark.parametrize("case", sorted(CNN_CASES))
def test_layer_settings_out_of_range_are_refused_naming_the_field(cnn_members, tmp_path, case):
    edit, expected = CNN_CASES[case]
    write_zip(tmp_path / "m.npz", edited(cnn_members, edit))
    assert expected in refusal(tmp_path / "m.npz")[0]


def test_metadata_that_is_not_json_is_refused_as_unreadable(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", with_metadata(mlp_members, '{"format": "digitnet-model", '))
    assert "not a readable digitnet model (its metadata is not valid JSON" in refusal(tmp_path / "m.npz")[0]


def test_metadata_that_is_a_json_list_is_not_a_digitnet_model(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", with_metadata(mlp_members, "[1, 2, 3]"))
    assert (
        'not a digitnet model (its metadata has no "format": "digitnet-model" marker)' in refusal(tmp_path / "m.npz")[0]
    )


def test_metadata_stored_as_numbers_is_refused_as_unreadable(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", {**mlp_members, "metadata.npy": npy_bytes(np.arange(5.0))})
    assert "its metadata entry is not a JSON text but a <f8 array of shape (5,)" in refusal(tmp_path / "m.npz")[0]


def test_an_array_of_strings_is_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", {**mlp_members, "layer1.b.npy": npy_bytes(np.array(["x"] * 16))})
    assert "array layer1.b has dtype <U1, expected float32" in refusal(tmp_path / "m.npz")[0]


def test_an_array_of_another_precision_than_the_metadata_says_is_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", {**mlp_members, "layer1.b.npy": npy_bytes(np.zeros(16, np.float64))})
    assert "array layer1.b has dtype <f8, expected float32" in refusal(tmp_path / "m.npz")[0]


# -- models whose outputs would not be finite -------------------------------------------------------


def test_finite_weights_that_overflow_the_logits_are_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", {**mlp_members, "layer3.W.npy": npy_bytes(np.full((16, 10), 3e38, np.float32))})
    assert "it gives NaN or infinite outputs for test images" in refusal(tmp_path / "m.npz")[0]


def test_a_vanishing_std_that_overflows_the_inputs_is_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", edited(mlp_members, _set("normalisation.std", 1e-300)))
    assert "it gives NaN or infinite outputs for test images" in refusal(tmp_path / "m.npz")[0]


def test_an_infinite_bias_is_refused(mlp_members, tmp_path):
    write_zip(tmp_path / "m.npz", {**mlp_members, "layer1.b.npy": npy_bytes(np.full(16, np.inf, np.float32))})
    assert "array layer1.b holds NaN or infinite values" in refusal(tmp_path / "m.npz")[0]


def test_batchnorm_with_a_negative_running_variance_is_refused(cnn_members, tmp_path):
    variance = np.array([1.0, -0.5, 1.0, 1.0], np.float32)
    write_zip(tmp_path / "m.npz", {**cnn_members, "layer1.running_var.npy": npy_bytes(variance)})
    assert "array layer1.running_var holds negative variances" in refusal(tmp_path / "m.npz")[0]


# -- files that are not ZIP archives at all ---------------------------------------------------------

NOT_ZIP = {
    "text": b"hello\n",
    "empty": b"",
    "png": b"\x89PNG\r\n\x1a\n" + bytes(64),
    "pickle": pickle.dumps({"W": [1, 2, 3]}),
    "npy of objects": b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
    "gzip": b"\x1f\x8b\x08\x00" + bytes(32),
}


@pytest.mark.parametrize("kind", sorted(NOT_ZIP))
def test_a_file_that_is_not_a_zip_archive_says_so_and_nothing_about_pickles(tmp_path, kind):
    (tmp_path / "model.npz").write_bytes(NOT_ZIP[kind])
    message, _ = refusal(tmp_path / "model.npz")
    assert message == (
        f"{tmp_path / 'model.npz'} is not a digitnet model file (expected a .npz archive written by `digitnet train`)."
    )


def test_a_zip_signature_without_a_zip_directory_is_damaged(tmp_path):
    (tmp_path / "m.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    assert "not a readable digitnet model (the file is damaged or truncated" in refusal(tmp_path / "m.npz")[0]


def test_a_directory_is_not_a_model_file(tmp_path):
    assert "no such model file" in refusal(tmp_path)[0]


def test_loading_never_calls_numpys_loader(mlp_members, tmp_path, monkeypatch):
    """np.load is where allow_pickle lives; the reader parses headers itself and never needs it."""
    write_zip(tmp_path / "m.npz", mlp_members)

    def forbidden(*args, **kwargs):
        raise AssertionError("np.load was called")

    monkeypatch.setattr(np, "load", forbidden)
    assert Network.load(tmp_path / "m.npz").describe() == "784-16-10"


def test_a_refusal_costs_less_memory_than_loading_a_good_model(mlp_members, tmp_path):
    write_zip(tmp_path / "good.npz", mlp_members)
    tracemalloc.start()
    try:
        Network.load(tmp_path / "good.npz")
        good_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    write_zip(tmp_path / "bad.npz", edited(mlp_members, _set("layers.1.out_features", 10**9)))
    assert refusal(tmp_path / "bad.npz")[1] < good_peak
