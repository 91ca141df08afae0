"""The training loop: shuffled mini-batches, an optimiser step per batch, a record per epoch.

:func:`train` works on arrays that are already normalised; :func:`split_validation` and
:meth:`digitnet.nn.Network.prepare` produce them. Progress is reported through a
:class:`Reporter`, so the loop knows nothing about terminals (the CLI draws a progress bar).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import CheckpointError, TrainingDiverged
from .nn import Network, SoftmaxCrossEntropy
from .nn.network import PREDICT_BATCH
from .optim import make_optimizer, make_schedule
from .parallel import DataParallel


@dataclass
class TrainConfig:
    """Everything that shapes a training run (saved in the model file).

    :mod:`digitnet.recipes` holds the tuned defaults per architecture; README.md explains them.
    """

    epochs: int = 8
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    patience: int | None = None  # early stopping: epochs without validation improvement

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (as saved in a model file's ``training``)."""
        return asdict(self)


@dataclass
class EpochRecord:
    """What one epoch did. ``seconds`` counts training only, not the evaluation after it."""

    epoch: int
    seconds: float
    loss: float
    train_accuracy: float
    val_accuracy: float | None
    lr: float


@dataclass
class History:
    """Per-epoch records of a run, plus how it ended."""

    epochs: list[EpochRecord] = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int | None = None

    @property
    def train_seconds(self) -> float:
        """Seconds spent training, summed over the epochs."""
        return sum(record.seconds for record in self.epochs)

    def to_list(self) -> list[dict[str, Any]]:
        """One JSON-serialisable dict per epoch (as saved in a model file's ``history``)."""
        return [asdict(record) for record in self.epochs]


class Reporter:
    """Receives progress events; the base class ignores them all."""

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        """Epoch ``epoch`` of ``epochs`` (counting from 1) starts; it has ``batches`` mini-batches."""

    def batch_done(self, batch: int, loss: float) -> None:
        """Mini-batch ``batch`` (counting from 1) of the epoch is done; ``loss`` was its mean loss."""

    def epoch_done(self, record: EpochRecord, epochs: int) -> None:
        """An epoch is done; ``record`` holds its losses, accuracies and time."""


def accuracy_of(network: Network, x: np.ndarray, labels: np.ndarray, batch_size: int = PREDICT_BATCH) -> float:
    """Fraction of correctly classified examples, for already-prepared inputs ``x``."""
    return count_correct(network, x, labels, batch_size) / max(1, len(x))


def count_correct(network: Network, x: np.ndarray, labels: np.ndarray, batch_size: int = PREDICT_BATCH) -> int:
    """How many examples of already-prepared inputs ``x`` the network classifies correctly."""
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((network.forward(x[i : i + batch_size]).argmax(axis=1) == labels[i : i + batch_size]).sum())
    return correct


def pixel_statistics(images: np.ndarray, chunk: int = 4096) -> tuple[float, float]:
    """Mean and standard deviation of ``images`` on the [0, 1] scale (the input normalisation).

    uint8 images are scaled by 1/255, float images taken as they are. Summed a chunk at a time, so no
    float copy of the whole training set is ever made. Images of one value everywhere get a
    standard deviation of 1 (nothing to scale), not 0.
    """
    scale = 1 / 255 if images.dtype == np.uint8 else 1.0
    total = total_sq = 0.0
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].astype(np.float64) * scale
        total += float(block.sum())
        total_sq += float(np.square(block).sum())
    count = images.size
    mean = total / count
    std = math.sqrt(max(0.0, total_sq / count - mean * mean))
    return mean, std if std > 0 else 1.0


def split_validation(n: int, val_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random disjoint index sets ``(train, validation)`` over ``n`` examples."""
    if not 0 <= val_size < n:
        raise ValueError(f"validation size {val_size} must be between 0 and {n - 1}")
    order = rng.permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


@dataclass
class TrainState:
    """Everything the rest of a run depends on, taken at the boundary between two epochs.

    :func:`train` started from a state continues exactly as if it had never stopped: same batches,
    same distortions, same dropout masks, same learning rates, same weights bit for bit.
    :mod:`digitnet.checkpoint` writes states to files; the scikit-learn estimator's ``partial_fit``
    keeps one in memory.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    steps : int
        Optimiser steps taken: the learning-rate schedule's position.
    weights : dict of str to ndarray
        The network's arrays (:meth:`~digitnet.nn.Network.state`).
    optimizer : dict of str to ndarray
        The optimiser's moments and step count (:meth:`~digitnet.optim.Optimizer.state`).
    rng : dict
        The run's generator state (``rng.bit_generator.state``): batch order, distortions, dropout.
    history : History
        The epochs so far.
    best_accuracy, epochs_without_gain, best_weights
        Early stopping's bookkeeping (``best_weights`` empty until a validated epoch).
    mean, std : float
        The network's input normalisation, fixed by the first run.
    """

    epoch: int
    steps: int
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    rng: dict[str, Any]
    history: History
    best_accuracy: float = -1.0
    epochs_without_gain: int = 0
    best_weights: dict[str, np.ndarray] = field(default_factory=dict)
    mean: float = 0.0
    std: float = 1.0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl+C during :func:`train`; ``state`` is the state after the last completed epoch.

    A subclass of :class:`KeyboardInterrupt`, so code that does not know it still stops as usual.
    """

    def __init__(self, state: TrainState) -> None:
        super().__init__(f"training interrupted after epoch {state.epoch}")
        self.state = state


def train(
    network: Network,
    x_train: np.ndarray,
    y_train: np.ndarray,
    config: TrainConfig,
    rng: np.random.Generator,
    *,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    reporter: Reporter | None = None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    start: TrainState | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    workers: int = 1,
) -> History:
    """Train ``network`` in place with mini-batch gradient descent.

    Parameters
    ----------
    network : Network
        Updated in place.
    x_train, y_train : ndarray
        Prepared inputs ``(N, *network.input_shape)`` and integer labels ``(N,)``.
    config : TrainConfig
    rng : numpy.random.Generator
        Shuffles the batches; the same generator state gives the same run.
    x_val, y_val : ndarray, optional
        Held-out examples, evaluated after every epoch (and used for early stopping).
    reporter : Reporter, optional
    augment : callable, optional
        ``augment(batch, rng)`` returns a randomly distorted copy of a training batch; applied to
        every batch, never to validation data.
    start : TrainState, optional
        Continue from this state (weights, optimiser, generator, schedule, early stopping, history)
        up to epoch ``config.epochs``, instead of starting afresh.
    on_epoch_end : callable, optional
        Called with the new :class:`TrainState` after every epoch (to write checkpoints).
    workers : int, optional
        Threads that share each batch (:mod:`digitnet.parallel`; run them with one BLAS thread
        each). 1, the default, runs every step on the calling thread.

    Returns
    -------
    History
        All epochs, those before ``start`` included.

    Raises
    ------
    TrainingDiverged
        If the loss becomes NaN or infinite. The network is first restored to the weights it had at
        the end of the last good epoch.
    TrainingInterrupted
        On Ctrl+C, carrying the state after the last completed epoch.
    CheckpointError
        If ``start`` holds arrays that do not fit this network or optimiser.
    """
    reporter = reporter or Reporter()
    batches_per_epoch = math.ceil(len(x_train) / config.batch_size)
    step = _Step(network, config, batches_per_epoch, workers)
    try:
        history = History()
        stopper = _EarlyStopping(config.patience)
        if start is not None:
            _restore(start, network, step, rng, stopper, history)
        state = start or _capture(0, network, step, rng, stopper, history)
        # Every batch is gathered into this one array (the last, shorter batch into its front part),
        # so the loop does not allocate a fresh batch each step.
        batch_buffer = np.empty((min(config.batch_size, len(x_train)), *x_train.shape[1:]), dtype=x_train.dtype)
        epoch = state.epoch
        while epoch < config.epochs and not history.stopped_early:
            epoch += 1
            try:
                record = _epoch(
                    epoch, network, x_train, y_train, config, rng, step, batch_buffer, reporter, augment, state
                )
                record.val_accuracy = _validate(network, x_val, y_val, step.parallel)
                history.epochs.append(record)
                reporter.epoch_done(record, config.epochs)
                if stopper.should_stop(record, network_copy(network), history):
                    network.load_state(stopper.best_state)
                    history.stopped_early = True
                state = _capture(epoch, network, step, rng, stopper, history)
                if on_epoch_end is not None:
                    on_epoch_end(state)
            except KeyboardInterrupt:
                raise TrainingInterrupted(state) from None
        return history
    finally:
        step.close()  # its threads, if it has any


def _epoch(
    epoch: int,
    network: Network,
    x_train: np.ndarray,
    y_train: np.ndarray,
    config: TrainConfig,
    rng: np.random.Generator,
    step: _Step,
    batch_buffer: np.ndarray,
    reporter: Reporter,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None,
    last_good: TrainState,
) -> EpochRecord:
    """One pass over the shuffled training set; its record (without validation accuracy yet)."""
    n = len(x_train)
    batches_per_epoch = math.ceil(n / config.batch_size)
    reporter.epoch_started(epoch, config.epochs, batches_per_epoch)
    order = rng.permutation(n)
    step.new_epoch(rng)
    started = time.perf_counter()
    loss_sum, correct = 0.0, 0
    for batch in range(batches_per_epoch):
        index = order[batch * config.batch_size : (batch + 1) * config.batch_size]
        # mode="clip" skips np.take's bounds-checked copy (the indices are a permutation).
        x = np.take(x_train, index, axis=0, out=batch_buffer[: len(index)], mode="clip")
        labels = y_train[index]
        if augment is not None:
            x = augment(x, rng)
        loss, batch_correct = step(x, labels)
        if not math.isfinite(loss):
            network.load_state(last_good.weights)
            raise TrainingDiverged(
                f"Training diverged at epoch {epoch}, batch {batch + 1}: the loss became {loss}. "
                f"Lower the learning rate (now {config.lr:g}, e.g. try {config.lr / 10:g}); "
                f"the weights of the last good epoch ({epoch - 1}) were kept."
            )
        loss_sum += loss * len(index)
        correct += batch_correct
        reporter.batch_done(batch + 1, loss)
    seconds = time.perf_counter() - started
    return EpochRecord(epoch, seconds, loss_sum / n, correct / n, None, step.optimizer.lr)


def _validate(
    network: Network, x_val: np.ndarray | None, y_val: np.ndarray | None, parallel: DataParallel | None
) -> float | None:
    if x_val is None or y_val is None or len(x_val) == 0:
        return None
    if parallel is None:
        return accuracy_of(network, x_val, y_val)
    correct = parallel.map_shares(lambda a, b: count_correct(network, x_val[a:b], y_val[a:b]), len(x_val))
    return sum(correct) / len(x_val)


def _capture(
    epoch: int, network: Network, step: _Step, rng: np.random.Generator, stopper: _EarlyStopping, history: History
) -> TrainState:
    """A copy of everything the next epoch depends on (shares no array with the live run)."""
    return TrainState(
        epoch=epoch,
        steps=step.count,
        weights=network_copy(network),
        optimizer=step.optimizer.state(),
        rng=copy.deepcopy(dict(rng.bit_generator.state)),
        history=History(list(history.epochs), history.stopped_early, history.best_epoch),
        best_accuracy=stopper.best_accuracy,
        epochs_without_gain=stopper.epochs_without_gain,
        best_weights=stopper.best_state,  # a copy already, never written to
        mean=network.mean,
        std=network.std,
    )


def _restore(
    state: TrainState,
    network: Network,
    step: _Step,
    rng: np.random.Generator,
    stopper: _EarlyStopping,
    history: History,
) -> None:
    """Put ``state`` into the live run, after checking that its arrays fit."""
    _check_arrays("network", state.weights, network.state())
    _check_arrays("optimiser", state.optimizer, step.optimizer.state())
    if state.best_weights:
        _check_arrays("best network", state.best_weights, network.state())
    network.load_state(state.weights)
    step.optimizer.load_state(state.optimizer)
    step.count = state.steps
    rng.bit_generator.state = copy.deepcopy(state.rng)
    stopper.best_accuracy, stopper.epochs_without_gain = state.best_accuracy, state.epochs_without_gain
    stopper.best_state = state.best_weights
    history.epochs[:] = state.history.epochs
    history.stopped_early, history.best_epoch = state.history.stopped_early, state.history.best_epoch


def _check_arrays(what: str, saved: dict[str, np.ndarray], live: dict[str, np.ndarray]) -> None:
    """Refuse saved arrays whose names, shapes or dtypes differ from the live run's."""
    if set(saved) != set(live):
        missing, extra = sorted(set(live) - set(saved)), sorted(set(saved) - set(live))
        detail = f"lacks {', '.join(missing[:3])}" if missing else f"has unused arrays ({', '.join(extra[:3])})"
        raise CheckpointError(f"its {what} state {detail}: it belongs to another network or optimiser")
    for name, value in live.items():
        if saved[name].shape != value.shape or saved[name].dtype != value.dtype:
            raise CheckpointError(
                f"its {what} array {name} is {saved[name].dtype} {saved[name].shape}, but this run's is "
                f"{value.dtype} {value.shape}: it belongs to another network or optimiser"
            )


def network_copy(network: Network) -> dict[str, np.ndarray]:
    """A copy of every array of the network, to restore later with ``load_state``."""
    return {name: value.copy() for name, value in network.state().items()}


class _Step:
    """One optimisation step on a batch: forward, loss, backward, update at the scheduled rate."""

    def __init__(self, network: Network, config: TrainConfig, batches_per_epoch: int, workers: int = 1) -> None:
        self.network = network
        self.loss_fn = SoftmaxCrossEntropy(config.label_smoothing)
        pairs = [(value, grad) for _, value, grad in network.parameters()]
        self.optimizer = make_optimizer(
            config.optimizer, pairs, config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.schedule = make_schedule(
            config.schedule,
            config.lr,
            config.epochs * batches_per_epoch,
            steps_per_epoch=batches_per_epoch,
            warmup_steps=round(config.warmup_epochs * batches_per_epoch),
        )
        self.count = 0
        # Last: once built, its threads and barrier must be closed (train() does so in a finally).
        self.parallel = DataParallel(network, workers, config.label_smoothing) if workers > 1 else None

    def __call__(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """The batch's mean loss and number of correct answers (before the update); no update
        when the loss is not finite."""
        self.optimizer.lr = self.schedule(self.count)
        if self.parallel is not None:
            loss, correct = self.parallel.forward_backward(x, labels)
        else:
            loss, correct = self._forward_backward(x, labels)
        if not math.isfinite(loss):
            return loss, 0
        self.optimizer.step()
        self.count += 1
        return loss, correct

    def _forward_backward(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        # A diverging run overflows to inf/NaN; the caller turns that into a clear error, so NumPy's
        # overflow warnings would only add noise.
        with np.errstate(over="ignore", invalid="ignore"):
            logits = self.network.forward(x, training=True)
            loss = self.loss_fn.forward(logits, labels)
        if math.isfinite(loss):
            self.network.backward(self.loss_fn.backward())
        return loss, int(np.count_nonzero(logits.argmax(axis=1) == labels))

    def new_epoch(self, rng: np.random.Generator) -> None:
        """Before an epoch's first batch: the data-parallel replicas' dropout is seeded from ``rng``."""
        if self.parallel is not None:
            self.parallel.new_epoch(rng)

    def close(self) -> None:
        if self.parallel is not None:
            self.parallel.close()


class _EarlyStopping:
    """Ends a run after ``patience`` epochs without a better validation accuracy."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.best_accuracy, self.epochs_without_gain = -1.0, 0
        self.best_state: dict[str, np.ndarray] = {}

    def should_stop(self, record: EpochRecord, state: dict[str, np.ndarray], history: History) -> bool:
        if self.patience is None or record.val_accuracy is None:
            return False
        if record.val_accuracy > self.best_accuracy:
            self.best_accuracy, self.best_state, self.epochs_without_gain = record.val_accuracy, state, 0
            history.best_epoch = record.epoch
            return False
        self.epochs_without_gain += 1
        return self.epochs_without_gain >= self.patience
