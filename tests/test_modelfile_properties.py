"""Properties of the model file reader, over random and mutated files (Hypothesis).

Whatever the bytes, loading gives a working :class:`Network` or a :class:`ModelFileError`, never
another exception, and never costs more memory than twice what loading a good model costs. And
whatever a (small, valid) network holds, saving and loading it gives the same arrays and metadata.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _saved_bytes(network: Network, folder: Path, name: str) -> bytes:
    network.save(folder / name)
    return (folder / name).read_bytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, bytes]:
    """A small CNN with every layer type, and the seed network whose load sets the memory budget."""
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("models")
    layers = [
        Conv2D(1, 3, 3, "same", rng=rng),
        BatchNorm(3),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
        Dense(12, 6, rng=rng),
        ReLU(),
        Dropout(0.2),
        Dense(6, 4, rng=rng),
    ]
    cnn = Network(
        layers,
        (1, 4, 4),
        mean=0.2,
        std=0.4,
        class_names=list("abcd"),
        metadata={"dataset": "toy", "metrics": {"test_accuracy": 0.5}, "history": [{"epoch": 1}]},
    )
    seed = build_mlp((128,), rng=rng, mean=0.13, std=0.31)
    return {"cnn": _saved_bytes(cnn, folder, "cnn.npz"), "seed": _saved_bytes(seed, folder, "seed.npz")}


@pytest.fixture(scope="module")
def budget(files, tmp_path_factory) -> int:
    """Twice the peak traced memory of loading the 784-128-10 seed network."""
    path = tmp_path_factory.mktemp("budget") / "seed.npz"
    path.write_bytes(files["seed"])
    Network.load(path)  # imports and caches warm, so they do not count
    return 2 * _peak_of_load(path)[1]


def _peak_of_load(path: Path) -> tuple[Network | ModelFileError, int]:
    tracemalloc.start()
    try:
        try:
            outcome: Network | ModelFileError = Network.load(path)
        except ModelFileError as error:
            outcome = error
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_network_or_clean_refusal(data: bytes, folder: Path, budget: int) -> Network | ModelFileError:
    """Load ``data``: a usable network or a one-line ModelFileError, within the memory budget."""
    path = folder / "m.npz"
    path.write_bytes(data)
    outcome, peak = _peak_of_load(path)  # any other exception fails the test here
    assert peak <= budget, f"loading took {peak} bytes, budget {budget}"
    if isinstance(outcome, ModelFileError):
        assert "\n" not in str(outcome) and str(outcome).startswith(str(path))
    else:
        probe = np.random.default_rng(0).random((2, *outcome.input_shape))
        assert np.isfinite(outcome.predict_proba(probe)).all()
    return outcome


@SETTINGS
@given(data=st.binary(max_size=4096), zip_like=st.booleans())
def test_random_bytes_give_a_network_or_a_clean_refusal(files, budget, tmp_path, data, zip_like):
    outcome = assert_network_or_clean_refusal((b"PK\x03\x04" if zip_like else b"") + data, tmp_path, budget)
    assert isinstance(outcome, ModelFileError)


@SETTINGS
@given(st.data())
def test_flipped_bytes_give_a_network_or_a_clean_refusal(files, budget, tmp_path, data):
    original = bytearray(files["cnn"])
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(1, 255)), min_size=1, max_size=8)
    )
    for position, mask in flips:
        original[position] ^= mask
    assert_network_or_clean_refusal(bytes(original), tmp_path, budget)


@SETTINGS
@given(st.data())
def test_truncated_or_extended_files_give_a_network_or_a_clean_refusal(files, budget, tmp_path, data):
    original = files["cnn"]
    cut = data.draw(st.integers(0, len(original)))
    tail = data.draw(st.binary(max_size=64))
    assert_network_or_clean_refusal(original[:cut] + tail, tmp_path, budget)


def _paths(value, prefix=()):
    """Every path into a JSON value, the value itself included."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from([0, 1, -1, 10**9, 65536, 65537, 1e-300, 3e38, "same", "valid", "Dense", "float64"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@SETTINGS
@given(st.data())
def test_edited_metadata_values_give_a_network_or_a_clean_refusal(files, budget, tmp_path, data):
    members = _members(files["cnn"])
    metadata = json.loads(str(np.load(io.BytesIO(members["metadata.npy"]), allow_pickle=False)))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(metadata))[1:]))
        target = metadata
        for part in path[:-1]:
            target = target[part]
        if isinstance(target, dict) and data.draw(st.booleans()):
            del target[path[-1]]
        else:
            target[path[-1]] = data.draw(JSON)
    members["metadata.npy"] = _npy(np.array(json.dumps(metadata)))
    assert_network_or_clean_refusal(_archive(members), tmp_path, budget)


@SETTINGS
@given(st.data())
def test_replaced_arrays_give_a_network_or_a_clean_refusal(files, budget, tmp_path, data):
    members = _members(files["cnn"])
    name = data.draw(st.sampled_from(sorted(n for n in members if n != "metadata.npy")))
    shape = data.draw(st.lists(st.integers(0, 14), max_size=4).map(tuple))
    dtype = data.draw(st.sampled_from(["<f4", ">f4", "<f8", "<f2", "<i4", "<U3", "|b1"]))
    values = data.draw(st.sampled_from([0.0, 1.0, -1.0, 3e38, float("nan"), float("inf")]))
    with np.errstate(all="ignore"):
        array = np.full(shape, values).astype(dtype)
    members[name] = _npy(np.asfortranarray(array) if data.draw(st.booleans()) else array)
    assert_network_or_clean_refusal(_archive(members), tmp_path, budget)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hidden=st.lists(st.integers(1, 12), max_size=3),
    side=st.integers(2, 6),
    classes=st.lists(st.text(min_size=1, max_size=5), min_size=2, max_size=6),
    dtype=st.sampled_from([np.float32, np.float64]),
    std=st.floats(0.05, 5),
    mean=st.floats(-1, 1),
    seed=st.integers(0, 2**32 - 1),
    facts=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(
            lambda key: (
                key
                not in {
                    "format",
                    "format_version",
                    "layers",
                    "input_shape",
                    "normalisation",
                    "class_names",
                    "dtype",
                    "digitnet_version",
                    "dataset",
                    "model",
                    "training",
                    "metrics",
                    "history",
                }
            )
        ),
        JSON.filter(lambda value: "NaN" not in json.dumps(value)),
        max_size=3,
    ),
)
def test_saving_then_loading_gives_identical_arrays_and_metadata(
    tmp_path, hidden, side, classes, dtype, std, mean, seed, facts
):
    rng = np.random.default_rng(seed)
    network = build_mlp(
        hidden,
        input_shape=(1, side, side),
        num_classes=len(classes),
        rng=rng,
        dtype=dtype,
        mean=mean,
        std=std,
        class_names=classes,
        metadata=dict(facts),
    )
    network.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    assert loaded.state().keys() == network.state().keys()
    for name, value in network.state().items():
        assert loaded.state()[name].dtype == value.dtype
        assert loaded.state()[name].tobytes() == value.tobytes()
    assert {key: value for key, value in loaded.metadata.items() if key != "digitnet_version"} == facts
    assert (loaded.mean, loaded.std, loaded.class_names) == (mean, std, classes)
    assert loaded.to_metadata() == {**network.to_metadata(), "digitnet_version": loaded.metadata["digitnet_version"]}
