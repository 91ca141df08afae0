"""Checkpoints and resume: a run stopped and resumed ends exactly where it would have, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from digitnet.checkpoint import check_resumable, load_checkpoint, save_checkpoint
from digitnet.cli import main
from digitnet.cli.train import ProgressReporter
from digitnet.data import Dataset, load_dataset
from digitnet.errors import CheckpointError
from digitnet.experiment import ExperimentConfig, run
from digitnet.nn import Network
from digitnet.train import Reporter, TrainingInterrupted


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def config(model: str = "mlp", **recipe) -> ExperimentConfig:
    return ExperimentConfig(
        dataset="digits",
        model=model,
        hidden=(16,),
        val_size=200,
        seed=3,
        threads=1,
        recipe={"epochs": 4, "batch_size": 64, **recipe},
    )


class CtrlC(Reporter):
    """Raises KeyboardInterrupt in the middle of an epoch, as Ctrl+C would."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.current = epoch, 0

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        self.current = epoch

    def batch_done(self, batch: int, loss: float) -> None:
        if self.current == self.epoch and batch == 2:
            raise KeyboardInterrupt


def assert_same_weights(a: Network, b: Network) -> None:
    for name, value in a.state().items():
        assert value.tobytes() == b.state()[name].tobytes(), name


def records(history) -> list[tuple]:
    """Everything an epoch record holds except its time."""
    return [(r.epoch, r.loss, r.train_accuracy, r.val_accuracy, r.lr) for r in history.epochs]


@pytest.mark.parametrize(
    "experiment",
    [
        config(),
        config(optimizer="nesterov", lr=0.05, schedule="step", weight_decay=1e-4),
        # dropout, distortions and early stopping draw from the generator or keep bookkeeping
        ExperimentConfig(**{**config("cnn", patience=3).__dict__, "augment": "light"}),
        # two threads share every batch, each replica with its own dropout generator
        ExperimentConfig(**{**config("cnn").__dict__, "augment": "light", "threads": 2}),
    ],
    ids=["mlp-adam-cosine", "mlp-nesterov-step-decay", "cnn-dropout-augment-patience", "cnn-two-shares"],
)
def test_four_epochs_straight_equal_two_epochs_then_a_resume_of_two_bit_for_bit(experiment, digits, tmp_path):
    straight = run(experiment, digits)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run(experiment, digits, reporter=CtrlC(epoch=3))
    assert interrupted.value.state.epoch == 2
    save_checkpoint(tmp_path / "run.checkpoint.npz", experiment, interrupted.value.state, digits)
    checkpoint = load_checkpoint(tmp_path / "run.checkpoint.npz")
    check_resumable(checkpoint, experiment, digits, "run.checkpoint.npz")
    resumed = run(experiment, digits, start=checkpoint.state)
    assert_same_weights(straight.network, resumed.network)
    assert records(resumed.history) == records(straight.history) and len(straight.history.epochs) == 4


def train_command(out, *extra: str) -> list[str]:
    return [
        "train",
        "--dataset",
        "digits",
        "--hidden",
        "16",
        "--val-size",
        "200",
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--out",
        str(out),
        *extra,
    ]


def test_a_checkpoint_every_two_epochs_resumes_to_the_model_the_whole_run_saved(tmp_path):
    runner = CliRunner()
    whole = runner.invoke(main, train_command(tmp_path / "whole.npz", "--epochs", "3", "--checkpoint-every", "2"))
    assert whole.exit_code == 0, whole.output
    checkpoint = tmp_path / "whole.checkpoint.npz"
    assert load_checkpoint(checkpoint).state.epoch == 2  # epoch 3 is not a multiple of 2
    resumed = runner.invoke(main, ["train", "--resume", str(checkpoint), "--out", str(tmp_path / "resumed.npz")])
    assert resumed.exit_code == 0, resumed.output
    assert "Resuming from" in resumed.output and "after epoch 2 of 3" in resumed.output
    assert_same_weights(Network.load(tmp_path / "whole.npz"), Network.load(tmp_path / "resumed.npz"))


def test_ctrl_c_writes_a_checkpoint_says_how_to_resume_and_exits_130(tmp_path, monkeypatch):
    runner = CliRunner()
    straight = runner.invoke(main, train_command(tmp_path / "straight.npz", "--epochs", "4"))
    assert straight.exit_code == 0, straight.output
    stop, started, batch_done = CtrlC(epoch=3), ProgressReporter.epoch_started, ProgressReporter.batch_done
    monkeypatch.setattr(
        ProgressReporter, "epoch_started", lambda self, *args: (stop.epoch_started(*args), started(self, *args))
    )
    monkeypatch.setattr(
        ProgressReporter, "batch_done", lambda self, *args: (batch_done(self, *args), stop.batch_done(*args))
    )
    out = tmp_path / "model.npz"
    interrupted = runner.invoke(main, train_command(out, "--epochs", "4"))
    checkpoint = tmp_path / "model.checkpoint.npz"
    assert interrupted.exit_code == 130 and "Traceback" not in interrupted.output
    assert f"after epoch 2 of 4 to {checkpoint}" in interrupted.output
    assert f"Resume with: digitnet train --resume {checkpoint} --out {out}" in interrupted.output
    assert not out.exists()  # the model is written only when training ends
    monkeypatch.undo()
    resumed = runner.invoke(main, ["train", "--resume", str(checkpoint), "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert_same_weights(Network.load(tmp_path / "straight.npz"), Network.load(out))


@pytest.fixture
def checkpoint_file(digits, tmp_path):
    """A checkpoint after epoch 2 of the 4-epoch MLP run of config()."""
    with pytest.raises(TrainingInterrupted) as interrupted:
        run(config(), digits, reporter=CtrlC(epoch=3))
    path = tmp_path / "run.checkpoint.npz"
    save_checkpoint(path, config(), interrupted.value.state, digits)
    return path


@pytest.mark.parametrize(
    "options, difference",
    [
        (["--hidden", "32"], "hidden 16, not 32"),
        (["--model", "cnn"], "model mlp, not cnn"),
        (["--lr", "0.1"], "lr 0.003, not 0.1"),
        (["--seed", "4"], "seed 3, not 4"),
    ],
)
def test_resuming_with_another_architecture_or_setting_is_refused_in_one_sentence(
    checkpoint_file, tmp_path, options, difference
):
    out = tmp_path / "model.npz"
    result = CliRunner().invoke(main, ["train", "--resume", str(checkpoint_file), "--out", str(out), *options])
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.output.strip()
    assert message.startswith(f"Error: {checkpoint_file} was written by a run with {difference};")
    assert "\n" not in message and not out.exists()


def test_repeating_the_checkpoints_own_settings_on_resume_is_allowed(checkpoint_file, tmp_path):
    out = tmp_path / "model.npz"
    result = CliRunner().invoke(
        main, ["train", "--resume", str(checkpoint_file), "--out", str(out), "--hidden", "16", "--epochs", "4"]
    )
    assert result.exit_code == 0, result.output


def test_resuming_on_other_data_is_refused(checkpoint_file, digits):
    train = (digits.train_images[:1000], digits.train_labels[:1000])
    fewer = Dataset("digits", digits.class_names, *train, digits.test_images, digits.test_labels)
    with pytest.raises(CheckpointError, match=r"1,437 training images of 10 classes, not on these 1,000 of 10"):
        check_resumable(load_checkpoint(checkpoint_file), config(), fewer, "run.checkpoint.npz")


def test_a_checkpoint_whose_arrays_belong_to_another_network_is_refused(digits, tmp_path):
    wider = ExperimentConfig(**{**config().__dict__, "hidden": (32,)})
    with pytest.raises(TrainingInterrupted) as interrupted:
        run(wider, digits, reporter=CtrlC(epoch=2))
    save_checkpoint(tmp_path / "odd.npz", config(), interrupted.value.state, digits)  # says 16, holds 32
    checkpoint = load_checkpoint(tmp_path / "odd.npz")
    with pytest.raises(CheckpointError, match=r"array layer1.W is float32 \(64, 32\).*\(64, 16\).*another network"):
        run(config(), digits, start=checkpoint.state)


def rewrite(path, *, metadata=None, arrays=None) -> None:
    """Re-save a checkpoint with its JSON or arrays changed (as damage or tampering would)."""
    with np.load(path) as archive:
        contents = {name: archive[name] for name in archive.files}
    meta = json.loads(str(contents.pop("metadata")))
    if metadata:
        metadata(meta)
    if arrays:
        arrays(contents)
    np.savez(path, metadata=np.array(json.dumps(meta)), **contents)


def set_nan(contents) -> None:
    contents["weights.layer1.W"] = np.full_like(contents["weights.layer1.W"], np.nan)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda path: path.write_bytes(path.read_bytes()[:3000]), r"is damaged or not a digitnet checkpoint \("),
        (lambda path: path.write_bytes(b"not a zip file at all"), r"is damaged or not a digitnet checkpoint \("),
        (lambda path: rewrite(path, metadata=lambda m: m.update(epoch=-1)), r"metadata field epoch is invalid"),
        (lambda path: rewrite(path, metadata=lambda m: m["rng"].update(bit_generator="MT19937")), r"field rng"),
        (lambda path: rewrite(path, metadata=lambda m: m.update(epoch=3)), r"3 epochs of history|2 epochs of history"),
        (lambda path: rewrite(path, arrays=set_nan), r"weights.layer1.W is float32 or holds NaN"),
        (lambda path: rewrite(path, metadata=lambda m: m.update(format_version=9)), r"newer digitnet .*version 9"),
        (lambda path: rewrite(path, metadata=lambda m: m["experiment"].update(augment="wild")), r"unknown augm"),
    ],
    ids=[
        "truncated",
        "garbage",
        "negative-epoch",
        "other-generator",
        "history-mismatch",
        "nan-weights",
        "newer",
        "unknown-augmentation",
    ],
)
def test_a_damaged_checkpoint_is_refused_in_one_sentence(checkpoint_file, damage, message):
    damage(checkpoint_file)
    with pytest.raises(CheckpointError, match=message) as refused:
        load_checkpoint(checkpoint_file)
    assert "\n" not in str(refused.value) and str(refused.value).endswith(".")


def test_a_model_file_given_as_checkpoint_is_refused_and_nothing_is_written(digits, tmp_path):
    model = tmp_path / "model.npz"
    run(config(epochs=1), digits).network.save(model)
    out = tmp_path / "new.npz"
    result = CliRunner().invoke(main, ["train", "--resume", str(model), "--out", str(out)])
    assert result.exit_code == 1 and "is a digitnet model, not a training checkpoint" in result.output
    assert not out.exists() and not (tmp_path / "new.checkpoint.npz").exists()


def test_a_checkpoint_can_name_every_architecture():
    from typing import get_args

    from digitnet.checkpoint import ExperimentSchema
    from digitnet.nn.architectures import ARCHITECTURES

    assert set(get_args(ExperimentSchema.model_fields["model"].annotation)) == set(ARCHITECTURES)
