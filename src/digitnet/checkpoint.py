"""Training checkpoints: a run's state in a file, to resume it exactly as if it had never stopped.

``digitnet train --checkpoint-every N`` writes one every N epochs, Ctrl+C writes one, and
``digitnet train --resume FILE`` continues from it::

    checkpoint = load_checkpoint("model.checkpoint.npz")
    check_resumable(checkpoint, config, data, "model.checkpoint.npz")
    result = run(config, data, start=checkpoint.state)

The format
----------
An ``.npz`` archive as :func:`numpy.savez` writes it (nothing pickled, read with
``allow_pickle=False``), holding:

======================  ========================================================================
``metadata``            a 0-d unicode array whose one string is a JSON object (below)
``weights.<name>``      the network's arrays (``weights.layer1.W``)
``best.<name>``         early stopping's best network so far (absent before a validated epoch)
``optimizer.<name>``    the optimiser's state: Adam's step count ``t`` and moments ``m<i>``, ``s<i>``;
                        momentum's ``velocity<i>``
======================  ========================================================================

The JSON object: ``format`` (``"digitnet-checkpoint"``), ``format_version`` (1),
``digitnet_version``, ``experiment`` (the :class:`~digitnet.experiment.ExperimentConfig` fields but
``recipe`` and ``threads``), ``training`` (the resolved :class:`~digitnet.train.TrainConfig`),
``epoch`` and ``steps`` done, ``rng`` (the generator's ``bit_generator.state``), ``history``
(epoch records, ``stopped_early``, ``best_epoch``), ``best_accuracy`` and
``epochs_without_gain`` (early stopping), ``normalisation`` (``mean``, ``std``), and the data it
trained on: ``train_images`` (count) and ``class_names``.

Reading validates the JSON against one schema and every array (finite, known names) before
anything is used; the arrays' shapes are checked against the network when the run continues. Every
refusal is a :class:`~digitnet.errors.CheckpointError` in one sentence. Writes are atomic (a
temporary file, then :func:`os.replace`). A checkpoint is for resuming your own runs: share models,
not checkpoints.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .data import Dataset
from .errors import CheckpointError
from .experiment import ExperimentConfig
from .nn.modelfile import NormalisationSchema, _decode_json, _field_path, _Refusal
from .train import EpochRecord, History, TrainState

FORMAT_NAME = "digitnet-checkpoint"
FORMAT_VERSION = 1
_GROUPS = ("weights", "best", "optimizer")
_MEMBER = re.compile(r"(weights|best|optimizer)\.[A-Za-z0-9_.]{1,64}")
_AGAIN = "start the run again without --resume"

_Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Schema(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ExperimentSchema(_Schema):
    """The checkpoint's ``experiment``: the run's settings but ``recipe`` and ``threads``."""

    dataset: str = Field(max_length=64)
    model: Literal["mlp", "cnn", "cnn-padded"]
    hidden: list[Annotated[int, Field(ge=1, le=1 << 16)]] = Field(max_length=64)
    augment: str | None = Field(max_length=64)
    seed: int = Field(ge=0, lt=1 << 63)
    val_size: int | None = Field(ge=0)
    dtype: Literal["float32", "float64"]


class TrainingSchema(_Schema):
    """The checkpoint's ``training``: the resolved training settings."""

    epochs: int = Field(ge=1, le=1 << 20)
    batch_size: int = Field(ge=1)
    optimizer: Literal["sgd", "momentum", "nesterov", "adam"]
    lr: _Finite = Field(gt=0)
    momentum: _Finite = Field(ge=0)
    weight_decay: _Finite = Field(ge=0)
    schedule: Literal["constant", "step", "cosine"]
    warmup_epochs: _Finite = Field(ge=0)
    label_smoothing: _Finite = Field(ge=0, lt=1)
    patience: int | None = Field(ge=1)


class PCG64StateSchema(_Schema):
    """The PCG64 generator's ``state`` and ``inc``, 128-bit integers."""

    state: int = Field(ge=0, lt=1 << 128)
    inc: int = Field(ge=0, lt=1 << 128)


class RngSchema(_Schema):
    """The checkpoint's ``rng``: the random generator's ``bit_generator.state``."""

    bit_generator: Literal["PCG64"]
    state: PCG64StateSchema
    has_uint32: int = Field(ge=0, le=1)
    uinteger: int = Field(ge=0, lt=1 << 32)


class EpochSchema(_Schema):
    """One epoch record of the checkpoint's ``history``."""

    epoch: int = Field(ge=1)
    seconds: _Finite = Field(ge=0)
    loss: _Finite
    train_accuracy: _Finite = Field(ge=0, le=1)
    val_accuracy: _Finite | None = Field(ge=0, le=1)
    lr: _Finite


class HistorySchema(_Schema):
    """The checkpoint's ``history``: epoch records and early stopping's outcome."""

    epochs: list[EpochSchema]
    stopped_early: bool
    best_epoch: int | None = Field(ge=1)


class CheckpointSchema(_Schema):
    """The whole JSON object of a checkpoint's ``metadata`` (see the module docstring)."""

    format: Literal["digitnet-checkpoint"]
    format_version: int = Field(ge=1, le=FORMAT_VERSION)
    digitnet_version: str | None = Field(max_length=64)
    experiment: ExperimentSchema
    training: TrainingSchema
    epoch: int = Field(ge=0)
    steps: int = Field(ge=0)
    rng: RngSchema
    history: HistorySchema
    best_accuracy: _Finite
    epochs_without_gain: int = Field(ge=0)
    normalisation: NormalisationSchema
    train_images: int = Field(ge=1)
    class_names: list[str] = Field(min_length=1, max_length=256)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the run it belongs to and where it stopped.

    Attributes
    ----------
    config : ExperimentConfig
        The run's configuration, its recipe fully resolved.
    state : TrainState
        Pass to :func:`digitnet.experiment.run` as ``start``.
    train_images : int
        The number of training images the run had (validation included).
    class_names : tuple of str
    """

    config: ExperimentConfig
    state: TrainState
    train_images: int
    class_names: tuple[str, ...]


# -- writing ------------------------------------------------------------------------------------


def checkpoint_metadata(config: ExperimentConfig, state: TrainState, data: Dataset) -> dict[str, Any]:
    """The JSON object of a checkpoint of ``state`` in the run ``config`` on ``data``."""
    from . import __version__

    # The recipe is saved resolved, as "training"; threads may differ on resume (see README).
    skipped = ("recipe", "threads")
    experiment = {f.name: getattr(config, f.name) for f in fields(ExperimentConfig) if f.name not in skipped}
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "digitnet_version": __version__,
        "experiment": {**experiment, "hidden": list(config.hidden)},
        "training": config.train_config().to_dict(),
        "epoch": state.epoch,
        "steps": state.steps,
        "rng": state.rng,
        "history": {
            "epochs": state.history.to_list(),
            "stopped_early": state.history.stopped_early,
            "best_epoch": state.history.best_epoch,
        },
        "best_accuracy": state.best_accuracy,
        "epochs_without_gain": state.epochs_without_gain,
        "normalisation": {"mean": state.mean, "std": state.std},
        "train_images": len(data.train_labels),
        "class_names": list(data.class_names),
    }


def save_checkpoint(path: str | os.PathLike, config: ExperimentConfig, state: TrainState, data: Dataset) -> None:
    """Write a checkpoint of ``state`` to ``path`` atomically: readers see the old file or the new one.

    Parameters
    ----------
    path : path-like
    config : ExperimentConfig
        The run the state belongs to.
    state : TrainState
        As :func:`digitnet.train.train` passes it to ``on_epoch_end`` or
        :class:`~digitnet.train.TrainingInterrupted` carries it.
    data : Dataset
        The data of the run (its size and classes are recorded, to refuse resuming on other data).
    """
    from .data.cache import atomic_write_bytes

    text = json.dumps(checkpoint_metadata(config, state, data), allow_nan=False)
    arrays = {f"weights.{name}": value for name, value in state.weights.items()}
    arrays |= {f"best.{name}": value for name, value in state.best_weights.items()}
    arrays |= {f"optimizer.{name}": value for name, value in state.optimizer.items()}
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.array(text), **arrays)  # type: ignore[arg-type]  # no array is named allow_pickle
    atomic_write_bytes(Path(path), buffer.getbuffer())


# -- reading ------------------------------------------------------------------------------------

#: What numpy, zipfile and zlib raise on a damaged archive.
_DAMAGE = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        For a missing, damaged or invalid file, or one from a newer digitnet, in one sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; give the file `digitnet train` wrote.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            metadata = _read_metadata(archive, path)
            arrays = _read_arrays(archive)
        checkpoint = _checkpoint_from(metadata, arrays)  # ValueError: settings ExperimentConfig refuses
    except _Refusal as refusal:
        raise CheckpointError(f"{path}: {refusal.problem}; the checkpoint is damaged, {_AGAIN}.") from None
    except _DAMAGE as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{path} is damaged or not a digitnet checkpoint ({first_line}); {_AGAIN}.") from None
    return checkpoint


def _read_metadata(archive: Any, path: Path) -> CheckpointSchema:
    if "metadata" not in archive.files:
        raise _Refusal("it has no metadata entry")
    entry = archive["metadata"]
    if entry.dtype.kind != "U" or entry.shape != ():
        raise _Refusal(f"its metadata entry is a {entry.dtype} array of shape {entry.shape}, not a JSON text")
    metadata = _decode_json(str(entry))
    if isinstance(metadata, dict) and metadata.get("format") == "digitnet-model":
        raise CheckpointError(
            f"{path} is a digitnet model, not a training checkpoint; resume from the .checkpoint.npz file "
            "`digitnet train` wrote."
        )
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise _Refusal(f'its metadata has no "format": "{FORMAT_NAME}" marker')
    version = metadata.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer digitnet (checkpoint format version {version}); "
            "upgrade digitnet to resume it."
        )
    try:
        schema = CheckpointSchema.model_validate(metadata)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        message = first["msg"][:1].lower() + first["msg"][1:]
        raise _Refusal(f"its metadata field {_field_path(first['loc'])} is invalid ({message})") from None
    if len(schema.history.epochs) != schema.epoch or schema.epoch > schema.training.epochs:
        raise _Refusal(
            f"it records {len(schema.history.epochs)} epochs of history at epoch {schema.epoch} "
            f"of {schema.training.epochs}"
        )
    return schema


def _read_arrays(archive: Any) -> dict[str, dict[str, np.ndarray]]:
    arrays: dict[str, dict[str, np.ndarray]] = {group: {} for group in _GROUPS}
    for member in archive.files:
        if member == "metadata":
            continue
        if not _MEMBER.fullmatch(member):
            raise _Refusal(f"it holds an entry {member[:40]!r} that is not part of the format")
        value = archive[member]
        if value.dtype.kind not in "fi" or (value.dtype.kind == "f" and not np.isfinite(value).all()):
            raise _Refusal(f"its array {member} is {value.dtype} or holds NaN or infinite values")
        group, name = member.split(".", 1)
        arrays[group][name] = value
    return arrays


def _checkpoint_from(schema: CheckpointSchema, arrays: dict[str, dict[str, np.ndarray]]) -> Checkpoint:
    training = schema.training.model_dump()
    config = ExperimentConfig(**schema.experiment.model_dump(), recipe=training)
    history = History(
        [EpochRecord(**record.model_dump()) for record in schema.history.epochs],
        schema.history.stopped_early,
        schema.history.best_epoch,
    )
    state = TrainState(
        epoch=schema.epoch,
        steps=schema.steps,
        weights=arrays["weights"],
        optimizer=arrays["optimizer"],
        rng=schema.rng.model_dump(),
        history=history,
        best_accuracy=schema.best_accuracy,
        epochs_without_gain=schema.epochs_without_gain,
        best_weights=arrays["best"],
        mean=schema.normalisation.mean,
        std=schema.normalisation.std,
    )
    return Checkpoint(config, state, schema.train_images, tuple(schema.class_names))


# -- matching a checkpoint to a run -------------------------------------------------------------


def config_difference(saved: ExperimentConfig, requested: ExperimentConfig) -> str | None:
    """The first setting in which two runs differ, as ``"lr 0.003, not 0.01"``; ``None`` if none does.

    ``threads`` is not compared: a run may resume on another machine. One and two BLAS threads
    round differently, so a resume is bit-identical only with the same number of threads.
    """
    left = {**asdict(saved), **saved.train_config().to_dict()}
    right = {**asdict(requested), **requested.train_config().to_dict()}
    for key in left:
        if key not in ("recipe", "threads") and left[key] != right[key]:
            return f"{key.replace('_', ' ')} {_show(left[key])}, not {_show(right[key])}"
    return None


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value) or "none"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def check_resumable(checkpoint: Checkpoint, config: ExperimentConfig, data: Dataset, source: str) -> None:
    """Refuse to continue ``checkpoint`` as the run ``config`` on ``data`` unless they are its own.

    Raises
    ------
    CheckpointError
        Naming the first setting that differs, or the data that does.
    """
    difference = config_difference(checkpoint.config, config)
    if difference is not None:
        raise CheckpointError(
            f"{source} was written by a run with {difference}; resume it with the settings it was written "
            f"with (give no training options), or {_AGAIN}."
        )
    if (len(data.train_labels), tuple(data.class_names)) != (checkpoint.train_images, checkpoint.class_names):
        raise CheckpointError(
            f"{source} was written by a run on {checkpoint.train_images:,} training images of "
            f"{len(checkpoint.class_names)} classes, not on these {len(data.train_labels):,} of "
            f"{data.num_classes}; resume it on the data it was written with, or {_AGAIN}."
        )
