"""One way to run an experiment: a configuration in, a trained network and its history out.

Every way digitnet trains (the ``digitnet train`` command, the notebook, the benchmarks, the
tests) calls :func:`run`, so a run is set up in exactly one place::

    from digitnet.experiment import ExperimentConfig, run

    result = run(ExperimentConfig(model="cnn", seed=1))
    result.network.save("cnn.npz")
    print(result.test_accuracy())

The order of random draws is part of the contract: one generator, seeded with ``config.seed``,
first splits off the validation images, then initialises the weights, then shuffles and distorts
the batches (when threads share each batch, one more draw per extra thread at the start of every
epoch seeds its dropout). The same configuration therefore gives the same network, bit for bit, whoever runs it
with the same number of threads (one and two threads round some products differently;
``threads="auto"`` records the number it chose in the model file's ``training.threads``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .augment import STRENGTHS, make_augmenter
from .conventions import rewrite
from .data import Dataset, load_dataset
from .metrics import accuracy
from .nn import Network
from .nn.architectures import ARCHITECTURES, build_network
from .recipes import resolve_recipe
from .threads import choose_threads, cpu_count, parse_threads, splits_batches
from .train import History, Reporter, TrainConfig, TrainState, pixel_statistics, split_validation, train


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that decides a training run.

    Parameters
    ----------
    dataset : str
        A catalogue name (``mnist``, ``fashion-mnist``, ``digits``), or the path of a folder of
        one's own images with one subfolder per class (:func:`digitnet.data.load_image_folder`).
    model : str
        An architecture name (``mlp``, ``cnn``, ``cnn-padded``).
    hidden : tuple of int
        Hidden layer sizes of the MLP, or the dense layers after the CNN's convolutions.
    augment : str or None
        ``"none"`` or a strength name (``light``, ``medium``, ``strong``); ``None`` takes the
        model's default (none for the MLP, light for the CNN).
    seed : int
        Seeds the one random generator of the run.
    val_size : int or None
        Training images held out for validation; ``None`` holds out one in twelve.
    dtype : str
        ``float32`` (fast) or ``float64`` (for gradient checks).
    threads : int, "auto" or None
        Threads training uses. ``"auto"`` (or ``None``) measures at the start whether more than one
        thread pays for this network (:mod:`digitnet.threads`); an integer fixes the number. A
        network with convolutions trains each share of every batch on its own thread with one BLAS
        thread (:mod:`digitnet.parallel`); an MLP gives its threads to BLAS.
    recipe : dict
        Overrides of the model's recipe, by :class:`~digitnet.train.TrainConfig` field name.
    """

    dataset: str = "mnist"
    model: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    augment: str | None = None
    seed: int = 0
    val_size: int | None = None
    dtype: str = "float32"
    threads: int | str | None = "auto"
    recipe: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in ARCHITECTURES:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.augment not in (None, "none", *STRENGTHS):
            raise ValueError(f"unknown augmentation {self.augment!r}; choose none or one of {', '.join(STRENGTHS)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"unknown dtype {self.dtype!r}; choose float32 or float64")
        if self.seed < 0:
            raise ValueError(f"the seed must be a non-negative integer, not {self.seed}")
        unknown = set(self.recipe) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ValueError(f"unknown recipe settings {sorted(unknown)}")
        object.__setattr__(self, "hidden", tuple(int(size) for size in self.hidden))
        object.__setattr__(self, "threads", parse_threads(self.threads) or "auto")

    @property
    def augment_strength(self) -> str | None:
        """The strength name in effect, ``None`` for no augmentation."""
        from .recipes import DEFAULT_AUGMENT

        name = DEFAULT_AUGMENT[self.model] if self.augment is None else self.augment
        return None if name in (None, "none") else name

    def train_config(self) -> TrainConfig:
        """The model's recipe for this augmentation, with this experiment's overrides."""
        return resolve_recipe(self.model, self.augment_strength, **self.recipe)


@dataclass
class Split:
    """The training set cut into training and validation parts, ready for the network."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass
class ExperimentResult:
    """A finished run: the trained network, its history and what produced them."""

    config: ExperimentConfig
    train_config: TrainConfig
    network: Network
    history: History
    data: Dataset
    state: TrainState | None = field(default=None, repr=False)
    _test_accuracy: float | None = field(default=None, repr=False)
    #: The threads training ran with (``auto`` resolved).
    threads_used: int | None = None

    def test_accuracy(self) -> float:
        """Accuracy on the official test set (computed once, recorded in the model's metadata).

        Nothing inside :func:`run` looks at the test set: choosing settings on it would make this
        figure meaningless.
        """
        if self._test_accuracy is None:
            threads = self.threads_used or cpu_count()
            with threadpool_limits(limits=threads):
                predicted = self.network.predict(self.data.test_images)
            self._test_accuracy = accuracy(self.data.test_labels, predicted)
            self.network.metadata.setdefault("metrics", {})["test_accuracy"] = self._test_accuracy
        return self._test_accuracy


def run(
    config: ExperimentConfig,
    data: Dataset | None = None,
    *,
    reporter: Reporter | None = None,
    start: TrainState | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
) -> ExperimentResult:
    """Train the network ``config`` describes and return it with its history.

    Parameters
    ----------
    config : ExperimentConfig
    data : Dataset, optional
        The dataset, if already loaded (it must be ``config.dataset``); loaded otherwise.
    reporter : Reporter, optional
        Receives progress events (the CLI draws a progress bar from them).
    start : TrainState, optional
        Continue a run from this state up to the recipe's epoch count: with the same ``config`` and
        data, the result is bit for bit that of a run never stopped (``digitnet train --resume``);
        on other data of the same shape and classes it trains on (``partial_fit``). The input
        normalisation stays the state's.
    on_epoch_end : callable, optional
        Called with the :class:`~digitnet.train.TrainState` after every epoch (checkpoints).

    Returns
    -------
    ExperimentResult
        With ``state``, the state after the last epoch (to continue from).

    Raises
    ------
    TrainingDiverged
        If the loss becomes NaN or infinite (the network keeps its last good weights).
    TrainingInterrupted
        On Ctrl+C; it carries the state after the last completed epoch.
    CheckpointError
        If ``start`` does not fit the network ``config`` describes.
    """
    data = data if data is not None else load_dataset(config.dataset)
    train_config = config.train_config()
    rng = np.random.default_rng(config.seed)
    train_index, val_index = split_validation(len(data.train_labels), validation_size(config, data), rng)
    data = with_conventions(config, data, train_index, rng)
    network = build_for(config, data, train_index, rng)
    if start is not None:
        network.mean, network.std = start.mean, start.std
    split = prepare_split(network, data, train_index, val_index)
    states: list[TrainState] = [start] if start is not None else []

    def epoch_done(state: TrainState) -> None:
        states[:] = [state]
        if on_epoch_end is not None:
            on_epoch_end(state)

    # Empty (black) and full-ink pixels in the network's normalised units: the area shifted into
    # view is empty, noise is measured in ink.
    augmenter = make_augmenter(
        config.augment_strength,
        background=(0 - network.mean) / network.std,
        full_ink=(1 - network.mean) / network.std,
    )
    threads = choose_threads(parse_threads(config.threads), network, train_config.batch_size, network.dtype)
    workers = threads if splits_batches(network) else 1  # threads that share each batch
    with threadpool_limits(limits=threads // workers):
        history = train(
            network,
            split.x_train,
            split.y_train,
            train_config,
            rng,
            x_val=split.x_val,
            y_val=split.y_val,
            reporter=reporter,
            augment=augmenter,
            start=start,
            on_epoch_end=epoch_done,
            workers=workers,
        )
    network.metadata.update(
        {
            "dataset": data.name,
            "model": config.model,
            "training": {
                **train_config.to_dict(),
                "hidden": list(config.hidden),
                "augment": config.augment_strength or "none",
                # the distortions themselves, interpolation included: names may be retuned
                "augment_strength": augmenter.strength.to_dict() if augmenter else None,
                "seed": config.seed,
                "val_size": len(val_index),
                "train_size": len(train_index),
                "dtype": config.dtype,
                "threads": threads,
            },
            "metrics": {"train_seconds": history.train_seconds},
            "history": history.to_list(),
        }
    )
    return ExperimentResult(
        config, train_config, network, history, data, states[0] if states else None, threads_used=threads
    )


def validation_size(config: ExperimentConfig, data: Dataset) -> int:
    """The number of held-out training images: the config's, or one in twelve (5,000 for MNIST)."""
    size = len(data.train_labels) // 12 if config.val_size is None else config.val_size
    if not 0 <= size < len(data.train_labels):
        raise ValueError(f"the validation size must be smaller than the {len(data.train_labels)} training images")
    return size


def with_conventions(
    config: ExperimentConfig, data: Dataset, train_index: np.ndarray, rng: np.random.Generator
) -> Dataset:
    """``data`` with a share of its training part's 1s and 7s rewritten in other writing conventions,
    when the augmentation asks for it (:mod:`digitnet.conventions`); the validation part and the
    test set are never touched. Draws from ``rng`` only when it rewrites."""
    strength = STRENGTHS.get(config.augment_strength or "")
    if strength is None or not strength.conventions:
        return data
    pixels = data.train_images[train_index]
    is_uint8 = pixels.dtype == np.uint8  # float datasets (the scikit-learn estimator's) hold [0, 1]
    ink = pixels if is_uint8 else np.round(np.asarray(pixels) * 255).astype(np.uint8)
    rewritten = rewrite(ink, data.train_labels[train_index], data.class_names, strength.conventions, rng)
    changed = (rewritten != ink).any(axis=(1, 2))  # only these are written back: no rounding elsewhere
    images = np.array(data.train_images)
    images[train_index[changed]] = rewritten[changed] if is_uint8 else rewritten[changed] / 255.0
    return dataclasses.replace(data, train_images=images)


def build_for(config: ExperimentConfig, data: Dataset, train_index: np.ndarray, rng: np.random.Generator) -> Network:
    """The untrained network, its input normalisation measured on the training part only."""
    mean, std = pixel_statistics(data.train_images[train_index])
    return build_network(
        config.model,
        hidden=config.hidden,
        input_shape=(1, *data.image_shape),
        num_classes=data.num_classes,
        rng=rng,
        dtype=np.dtype(config.dtype),
        mean=mean,
        std=std,
        class_names=data.class_names,
    )


def prepare_split(network: Network, data: Dataset, train_index: np.ndarray, val_index: np.ndarray) -> Split:
    """Normalised float copies of each part; indexing the uint8 images first means no float copy
    of the whole training set is ever made."""
    labels = data.train_labels.astype(np.int64)
    return Split(
        network.prepare(data.train_images[train_index]),
        labels[train_index],
        network.prepare(data.train_images[val_index]),
        labels[val_index],
    )
