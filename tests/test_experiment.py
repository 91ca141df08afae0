"""digitnet.experiment: the one entry point every way of training goes through."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from digitnet.cli import main
from digitnet.data import Dataset, load_dataset
from digitnet.experiment import ExperimentConfig, run
from digitnet.nn import Network
from digitnet.recipes import default_config, resolve_recipe
from digitnet.train import pixel_statistics, split_validation

SMALL = {"epochs": 4, "batch_size": 32}


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits: real handwriting, offline, trains in a fraction of a second."""
    return load_dataset("digits")


def small(**fields) -> ExperimentConfig:
    return ExperimentConfig(**{"dataset": "digits", "hidden": (16,), "val_size": 200, "recipe": SMALL, **fields})


def test_the_same_config_gives_the_same_network_bit_for_bit(digits):
    first, second = run(small(seed=4), digits), run(small(seed=4), digits)
    for name, value in first.network.state().items():
        assert value.tobytes() == second.network.state()[name].tobytes(), name
    assert (
        run(small(seed=5), digits).network.state()["layer1.W"].tobytes() != first.network.state()["layer1.W"].tobytes()
    )


def test_the_command_line_trains_exactly_what_run_trains(digits, tmp_path):
    path = tmp_path / "cli.npz"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--dataset",
            "digits",
            "--hidden",
            "16",
            "--val-size",
            "200",
            "--epochs",
            "4",
            "--batch-size",
            "32",
            "--seed",
            "4",
            "--out",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = Network.load(path)
    trained = run(small(seed=4), digits).network
    for name, value in trained.state().items():
        np.testing.assert_array_equal(saved.state()[name], value, err_msg=name)
    assert saved.metadata["training"]["seed"] == 4 and saved.metadata["training"]["epochs"] == 4


def test_normalisation_is_measured_on_the_training_part_alone(digits):
    network = run(small(seed=2), digits).network
    rng = np.random.default_rng(2)  # the run's first draw is the validation split
    train_index, _ = split_validation(len(digits.train_labels), 200, rng)
    assert (network.mean, network.std) == pixel_statistics(digits.train_images[train_index])
    assert (network.mean, network.std) != pixel_statistics(digits.train_images)


def test_the_test_set_never_influences_training(digits):
    scrambled = Dataset(
        digits.name,
        digits.class_names,
        digits.train_images,
        digits.train_labels,
        255 - digits.test_images,
        (digits.test_labels + 1) % 10,
    )
    ours, theirs = run(small(), digits), run(small(), scrambled)
    for name, value in ours.network.state().items():
        assert value.tobytes() == theirs.network.state()[name].tobytes(), name
    assert ours.test_accuracy() > 0.5 > theirs.test_accuracy()


def test_test_accuracy_is_recorded_in_the_model_metadata(digits):
    result = run(small(), digits)
    assert "test_accuracy" not in result.network.metadata["metrics"]
    accuracy = result.test_accuracy()
    assert result.network.metadata["metrics"]["test_accuracy"] == accuracy
    assert accuracy == float((result.network.predict(digits.test_images) == digits.test_labels).mean())


def test_metadata_records_everything_needed_to_repeat_the_run(digits):
    result = run(small(seed=3, augment="light"), digits)
    training = result.network.metadata["training"]
    assert training["seed"] == 3 and training["hidden"] == [16] and training["augment"] == "light"
    assert training["augment_strength"]["interpolation"] == "nearest"
    assert training["train_size"] + training["val_size"] == len(digits.train_labels)
    assert len(result.network.metadata["history"]) == SMALL["epochs"]
    json.dumps(result.network.metadata, allow_nan=False)  # it must be saveable as strict JSON


def test_recipe_overrides_replace_only_what_they_name():
    config = small(model="cnn", recipe={"epochs": 5, "weight_decay": 1e-4})
    recipe = config.train_config()
    base = default_config("cnn", "light")
    assert base.epochs != 5  # else the override below could be ignored unnoticed
    assert (recipe.epochs, recipe.weight_decay) == (5, 1e-4)
    assert (recipe.lr, recipe.batch_size, recipe.optimizer) == (base.lr, base.batch_size, base.optimizer)


def test_changing_only_the_optimiser_brings_a_learning_rate_that_suits_it():
    assert resolve_recipe("mlp", optimizer="sgd").lr == 0.1
    assert resolve_recipe("mlp", optimizer="sgd", lr=0.02).lr == 0.02
    assert resolve_recipe("mlp", optimizer="adam").lr == default_config().lr


def test_each_model_trains_with_its_default_augmentation_unless_told():
    assert ExperimentConfig(model="mlp").augment_strength is None
    assert ExperimentConfig(model="cnn").augment_strength == "light"
    assert ExperimentConfig(model="cnn", augment="none").augment_strength is None
    assert ExperimentConfig(model="cnn").train_config() == default_config("cnn", "light")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"model": "transformer"}, "unknown model"),
        ({"augment": "extreme"}, "unknown augmentation"),
        ({"recipe": {"learning_rate": 0.1}}, "unknown recipe settings"),
        ({"dtype": "float16"}, "unknown dtype"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_a_config_with_an_unknown_setting_is_refused_at_once(fields, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig(**fields)


def test_a_validation_set_as_large_as_the_training_set_is_refused(digits):
    with pytest.raises(ValueError, match="smaller than"):
        run(small(val_size=len(digits.train_labels)), digits)
