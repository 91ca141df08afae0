"""Model files: round trip, atomic writes, and a clear error for every kind of damage."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from digitnet.errors import ModelFileError
from digitnet.nn import Network, build_mlp


@pytest.fixture
def model(rng) -> Network:
    network = build_mlp((16, 8), input_shape=(1, 6, 6), num_classes=10, rng=rng, mean=0.1, std=0.3,
                        metadata={"dataset": "mnist", "history": [{"epoch": 1, "loss": 0.5}]})
    for _, param, _ in network.parameters():
        param += rng.standard_normal(param.shape).astype(np.float32) * 0.1
    return network


def rewrite_archive(path, change):
    """Load the npz at ``path`` as a dict, let ``change`` edit it, and write it back."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    np.savez(path, **arrays)


def rewrite_metadata(path, edit):
    """Let ``edit`` change the JSON metadata of the model file at ``path``."""
    def change(arrays):
        metadata = json.loads(str(arrays["metadata"]))
        edit(metadata)
        arrays["metadata"] = np.array(json.dumps(metadata))

    rewrite_archive(path, change)


def test_saved_and_reloaded_model_gives_bit_identical_predictions(model, tmp_path, rng):
    images = rng.random((50, 6, 6)).astype(np.float32)
    model.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    assert loaded.predict_proba(images).tobytes() == model.predict_proba(images).tobytes()
    assert loaded.describe() == "36-16-8-10"
    assert loaded.metadata["history"] == [{"epoch": 1, "loss": 0.5}]
    assert (loaded.mean, loaded.std) == (pytest.approx(0.1), pytest.approx(0.3))
    assert loaded.metadata["digitnet_version"]


def test_model_file_loads_without_pickle(model, tmp_path):
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        metadata = json.loads(str(archive["metadata"]))
    assert metadata["format"] == "digitnet-model"
    assert [layer["type"] for layer in metadata["layers"]] == ["Flatten", "Dense", "ReLU", "Dense", "ReLU", "Dense"]


def test_failed_save_leaves_the_previous_file_untouched(model, tmp_path, monkeypatch):
    target = tmp_path / "m.npz"
    target.write_bytes(b"previous model")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("digitnet.data.cache.os.replace", explode)
    with pytest.raises(OSError):
        model.save(target)
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left behind


def test_missing_model_file_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file.*digitnet train"):
        Network.load(tmp_path / "nothing.npz")


def test_file_that_is_not_a_zip_gives_a_clear_error(tmp_path):
    (tmp_path / "m.npz").write_text("hello")
    with pytest.raises(ModelFileError, match=r"m.npz is not a digitnet model file \(expected a .npz archive "
                                             r"written by `digitnet train`\)\.$") as caught:
        Network.load(tmp_path / "m.npz")
    assert "pickle" not in str(caught.value)  # NumPy's advice to load it unsafely is not passed on


def test_truncated_model_file_gives_a_clear_error(model, tmp_path):
    model.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "m.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="damaged or truncated"):
        Network.load(tmp_path / "m.npz")


def test_npz_without_metadata_is_not_a_digitnet_model(tmp_path):
    np.savez(tmp_path / "m.npz", W=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a digitnet model"):
        Network.load(tmp_path / "m.npz")


def test_mismatched_shapes_give_a_clear_error(model, tmp_path):
    model.save(tmp_path / "m.npz")
    rewrite_archive(tmp_path / "m.npz", lambda a: a.update({"layer1.W": np.zeros((36, 17), np.float32)}))
    with pytest.raises(ModelFileError, match=r"layer1.W has shape \(36, 17\), expected \(36, 16\)"):
        Network.load(tmp_path / "m.npz")


def test_missing_array_gives_a_clear_error(model, tmp_path):
    model.save(tmp_path / "m.npz")
    rewrite_archive(tmp_path / "m.npz", lambda a: a.pop("layer5.b"))
    with pytest.raises(ModelFileError, match="architecture needs"):
        Network.load(tmp_path / "m.npz")


def test_unknown_layer_type_gives_a_clear_error(model, tmp_path):
    model.save(tmp_path / "m.npz")
    rewrite_metadata(tmp_path / "m.npz", lambda metadata: metadata["layers"][2].update(type="Teleport"))
    with pytest.raises(ModelFileError, match="unknown layer type"):
        Network.load(tmp_path / "m.npz")


def test_non_finite_weights_are_rejected(model, tmp_path):
    model.save(tmp_path / "m.npz")
    rewrite_archive(tmp_path / "m.npz", lambda a: a["layer3.W"].__setitem__((0, 0), np.nan))
    with pytest.raises(ModelFileError, match="NaN"):
        Network.load(tmp_path / "m.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "m.npz", "w") as archive:
        archive.writestr("metadata.npy", buffer.getvalue())
    with pytest.raises(ModelFileError, match="not a readable digitnet model"):
        Network.load(tmp_path / "m.npz")


def test_newer_format_version_asks_for_an_upgrade(model, tmp_path):
    model.save(tmp_path / "m.npz")
    rewrite_metadata(tmp_path / "m.npz", lambda metadata: metadata.update(format_version=99))
    with pytest.raises(ModelFileError, match="upgrade digitnet"):
        Network.load(tmp_path / "m.npz")
