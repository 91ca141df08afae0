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
    network = build_mlp(
        (16, 8),
        input_shape=(1, 6, 6),
        num_classes=10,
        rng=rng,
        mean=0.1,
        std=0.3,
        metadata={"dataset": "mnist", "history": [{"epoch": 1, "loss": 0.5}]},
    )
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
    with pytest.raises(
        ModelFileError,
        match=r"m.npz is not a digitnet model file \(expected a .npz archive "
        r"written by `digitnet train`\)\.$",
    ) as caught:
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


@pytest.fixture
def cnn(rng) -> Network:
    """A small CNN with every layer type, trained BatchNorm statistics and a full training record."""
    from digitnet.nn import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

    layers = [
        Conv2D(1, 4, 3, "same", rng=rng),
        BatchNorm(4),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
        Dense(64, 8, rng=rng),
        ReLU(),
        Dropout(0.25),
        Dense(8, 3, rng=rng),
    ]
    network = Network(
        layers,
        (1, 8, 8),
        mean=0.1,
        std=0.3,
        class_names=["a", "b", "c"],
        metadata={
            "dataset": "toy",
            "model": "cnn",
            "training": {"epochs": 2, "augment": None, "hidden": [8]},
            "metrics": {"test_accuracy": 0.5, "train_seconds": 1.5},
            "notes": {"by": ["me", 1, None]},
            "history": [
                {"epoch": 1, "seconds": 0.1, "loss": 1.0, "train_accuracy": 0.4, "val_accuracy": None, "lr": 0.003}
            ],
        },
    )
    layers[1].buffers["running_mean"][:] = rng.standard_normal(4)
    layers[1].buffers["running_var"][:] = rng.uniform(0.5, 2, 4)
    return network


def test_a_cnn_with_batchnorm_round_trips_its_arrays_and_metadata_exactly(cnn, tmp_path, rng):
    cnn.save(tmp_path / "cnn.npz")
    loaded = Network.load(tmp_path / "cnn.npz")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in cnn.layers]
    for name, value in cnn.state().items():
        assert loaded.state()[name].tobytes() == value.tobytes(), name
    assert {key: value for key, value in loaded.metadata.items() if key != "digitnet_version"} == cnn.metadata
    assert loaded.class_names == ["a", "b", "c"]
    images = rng.random((4, 8, 8))
    np.testing.assert_array_equal(loaded.predict_proba(images), cnn.predict_proba(images))


def test_saving_metadata_the_format_refuses_writes_nothing_and_names_the_field(model, tmp_path):
    model.metadata["metrics"] = {"test_accuracy": "97%"}
    with pytest.raises(
        ModelFileError,
        match=r"m.npz: cannot save the model: metadata field metrics.test_accuracy "
        r"must be a number from 0 to 1 or null; nothing was written\.$",
    ):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_saving_a_network_with_nan_weights_writes_nothing(model, tmp_path):
    model.layers[1].params["W"][0, 0] = np.nan
    with pytest.raises(ModelFileError, match="array layer1.W holds NaN or infinite values; nothing was written"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_saving_metadata_over_one_mebibyte_is_refused(model, tmp_path):
    model.metadata["notes"] = "x" * 300_000
    with pytest.raises(ModelFileError, match=r"its metadata takes \d+ bytes \(at most 1048576\)"):
        model.save(tmp_path / "m.npz")


def test_reserved_keys_in_a_networks_metadata_cannot_overwrite_its_architecture(model, tmp_path):
    model.metadata.update(layers=[], dtype="int8", class_names=["x"])
    model.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    assert loaded.describe() == "36-16-8-10" and loaded.class_names == list("0123456789")


def test_arrays_in_fortran_order_or_big_endian_load_to_the_same_values(model, tmp_path):
    model.save(tmp_path / "m.npz")
    weights = model.state()["layer1.W"]
    rewrite_archive(
        tmp_path / "m.npz",
        lambda a: a.update({"layer1.W": np.asfortranarray(weights), "layer3.W": a["layer3.W"].astype(">f4")}),
    )
    loaded = Network.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.state()["layer1.W"], weights)
    np.testing.assert_array_equal(loaded.state()["layer3.W"], model.state()["layer3.W"])


def test_every_built_in_layer_has_a_schema_whose_arrays_and_shapes_match_the_layer(cnn):
    from digitnet.nn import LAYER_TYPES
    from digitnet.nn.modelfile import LAYER_SCHEMAS

    assert set(LAYER_SCHEMAS) == {name for name, cls in LAYER_TYPES.items() if cls.__module__.startswith("digitnet.")}
    shape = cnn.input_shape
    for layer in cnn.layers:
        schema = LAYER_SCHEMAS[type(layer).__name__].model_validate({"type": type(layer).__name__, **layer.config()})
        assert schema.arrays() == {name: value.shape for name, value in {**layer.params, **layer.buffers}.items()}
        assert schema.output_shape(shape) == layer.output_shape(shape)
        shape = layer.output_shape(shape)


def test_each_field_rule_is_stated_once():
    """FIELD_RULES is keyed by field name: two fields of one name must not state different rules."""
    from digitnet.nn import modelfile

    schemas = [
        modelfile.MetadataSchema,
        modelfile.NormalisationSchema,
        modelfile.TrainingSchema,
        modelfile.MetricsSchema,
        modelfile.EpochSchema,
        *modelfile.LAYER_SCHEMAS.values(),
    ]
    for schema in schemas:
        for name, field in schema.model_fields.items():
            if field.description:
                assert modelfile.FIELD_RULES[name] == field.description, (schema.__name__, name)


def test_from_metadata_applies_the_file_checks_to_arrays_in_memory(model):
    metadata, arrays = model.to_metadata(), {name: value.copy() for name, value in model.state().items()}
    assert Network.from_metadata(metadata, arrays).describe() == "36-16-8-10"
    arrays["layer5.W"][:] = 3e38
    with pytest.raises(ModelFileError, match="NaN or infinite outputs"):
        Network.from_metadata(metadata, arrays)
    with pytest.raises(ModelFileError, match="metadata field normalisation.std must be a positive finite number"):
        Network.from_metadata({**metadata, "normalisation": {"mean": 0, "std": 0}}, arrays)
