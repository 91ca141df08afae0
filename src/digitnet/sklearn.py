"""digitnet's own network as a scikit-learn classifier: pipelines, grid search, cross-validation.

::

    from sklearn.model_selection import GridSearchCV
    from digitnet.sklearn import DigitnetClassifier

    search = GridSearchCV(DigitnetClassifier(epochs=10), {"lr": [1e-3, 3e-3]}, cv=3)
    search.fit(X, y)                    # X: (n, 784) or (n, 28, 28) pixels in [0, 1]

Every fit goes through :func:`digitnet.experiment.run`, like ``digitnet train``: the estimator only
turns arrays into a :class:`~digitnet.data.Dataset` and its parameters into an
:class:`~digitnet.experiment.ExperimentConfig`. Needs the ``sklearn`` extra
(``pip install 'digitnet[sklearn]'``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("digitnet.sklearn needs scikit-learn: pip install 'digitnet[sklearn]'") from error

from .data import Dataset
from .experiment import ExperimentConfig, ExperimentResult, run
from .train import History, TrainState

__all__ = ["DigitnetClassifier"]

#: Labels are stored as uint8 in a Dataset.
MAX_CLASSES = 256
#: The CNN pools twice by 2: smaller images have nothing left to pool.
MIN_CNN_SIDE = 4


class DigitnetClassifier(ClassifierMixin, BaseEstimator):
    """A digitnet network (MLP or CNN) trained by :func:`digitnet.experiment.run`.

    Inputs are images with pixel values on the [0, 1] scale (MNIST's 0..255 divided by 255, ink
    bright on a dark background), given as ``(n, height, width)`` arrays or as ``n`` rows of
    ``height * width`` values; rows of a square number of values (784 for 28x28) are read as square
    images. The network standardises its input with the mean and standard deviation of the training
    pixels, so other finite feature scales train too (the MLP takes any number of features), but only
    [0, 1] images match ``digitnet predict`` and the reader model.

    Parameters
    ----------
    model : {"mlp", "cnn", "cnn-padded"}, default="mlp"
        The multilayer perceptron, or one of the small convolutional networks (which need images of
        at least 4x4 pixels).
    hidden : tuple of int, default=(128,)
        Hidden layer sizes of the MLP, or the dense layers after the CNN's convolutions.
    epochs, batch_size, optimizer, lr, schedule, weight_decay : optional
        Training settings (``digitnet train``'s options of the same names); ``None`` takes the
        model's tuned recipe (:mod:`digitnet.recipes`): 8 epochs of Adam at 0.003 with a cosine
        schedule in batches of 128 for the MLP.
    augment : str, default="none"
        ``"none"``, or random distortions of every training batch (``"light"``, ``"medium"``,
        ``"strong"``); only meaningful for digit images.
    validation_fraction : float, default=0.0
        Share of the training rows held out to measure validation accuracy after each epoch (in
        ``history_``) and to stop early with ``patience``.
    patience : int, optional
        Stop after this many epochs without a better validation accuracy, keeping the best weights.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network.
    random_state : int, RandomState instance or None, default=None
        An int is the run's seed (``random_state=4`` trains what ``digitnet train --seed 4`` does on
        the same data); ``None`` draws a seed from NumPy's global generator.
    threads : int, optional
        BLAS threads; ``None`` measures at the start of each fit whether more than one pays
        (``digitnet train --threads auto``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``fit`` (any sortable values), in the order of ``predict_proba``'s columns.
    network_ : digitnet.nn.Network
        The trained network (``network_.save("model.npz")`` makes a model ``digitnet predict`` reads).
    history_ : digitnet.train.History
        Per-epoch loss, accuracy and learning rate.
    train_state_ : digitnet.train.TrainState
        Where training stopped; ``partial_fit`` continues from it.
    image_shape_ : tuple of int
        ``(height, width)`` of the images the network reads.
    n_features_in_ : int
        Values per image.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = DigitnetClassifier(hidden=(32,), epochs=20, random_state=0).fit(X / 16, y)
    >>> clf.score(X / 16, y) > 0.9
    True
    """

    def __init__(
        self,
        model: str = "mlp",
        hidden: tuple[int, ...] = (128,),
        epochs: int | None = None,
        batch_size: int | None = None,
        optimizer: str | None = None,
        lr: float | None = None,
        schedule: str | None = None,
        weight_decay: float | None = None,
        augment: str = "none",
        validation_fraction: float = 0.0,
        patience: int | None = None,
        dtype: str = "float32",
        random_state: Any = None,
        threads: int | None = None,
    ) -> None:
        self.model = model
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.weight_decay = weight_decay
        self.augment = augment
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.dtype = dtype
        self.random_state = random_state
        self.threads = threads

    # -- training -------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> DigitnetClassifier:
        """Train a new network on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels) or (n_samples, height, width)
            Pixel values on the [0, 1] scale.
        y : array-like of shape (n_samples,)
            Class labels of any sortable type.

        Returns
        -------
        self : DigitnetClassifier
        """
        images, y = self._check_training_data(X, y, reset=True)
        self.classes_ = np.unique(y)
        result = run(self._config(len(images)), self._dataset(images, y))
        return self._keep(result)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> DigitnetClassifier:
        """Train one more epoch on ``X``, ``y``, continuing from where the last call stopped.

        The optimiser's moments, the random generator, the input normalisation (measured on the
        first call's ``X``) and the history carry over; the learning rate stays at ``lr`` (no
        schedule), as training has no known end, and no rows are held out for validation. Two
        calls on the same data train exactly what ``fit`` with ``epochs=2, schedule="constant"``
        trains.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels) or (n_samples, height, width)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), optional
            Every label the classifier will see; required on the first call, ignored afterwards.

        Returns
        -------
        self : DigitnetClassifier
        """
        first = not hasattr(self, "train_state_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        images, y = self._check_training_data(X, y, reset=first)
        if first:
            self.classes_ = np.unique(classes)
        if unknown := sorted(set(np.unique(y).tolist()) - set(self.classes_.tolist())):
            raise ValueError(f"y holds labels {unknown[:5]} that are not among the classes {self.classes_.tolist()}")
        start = None if first else self.train_state_
        if start is not None and start.history.stopped_early:  # a fit that stopped early may go on
            start = replace(start, history=replace(start.history, stopped_early=False))
        epochs = (0 if start is None else start.epoch) + 1
        config = self._config(len(images), epochs=epochs, schedule="constant", val_size=0)
        return self._keep(run(config, self._dataset(images, y), start=start))

    # -- using ------------------------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels) or (n_samples, height, width)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        flat = validate_data(self, self._flatten(X), dtype=(np.float64, np.float32), reset=False)
        return self.network_.predict_proba(flat).astype(np.float64)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Natural logarithms of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each image (an entry of ``classes_``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels) or (n_samples, height, width)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    # -- between scikit-learn and digitnet ------------------------------------------------------

    @staticmethod
    def _flatten(X: Any) -> Any:
        """(n, height, width) arrays -> (n, height * width); anything else as it is (validated later)."""
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 3:
            return np.asarray(X).reshape(shape[0], -1)
        return X

    def _check_training_data(self, X: Any, y: Any, *, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """Validated images ``(n, height, width)`` and labels; sets ``image_shape_`` when ``reset``."""
        shape = getattr(X, "shape", None)
        flat, y = validate_data(self, self._flatten(X), y, dtype=(np.float64, np.float32), reset=reset)
        check_classification_targets(y)
        if reset:
            self.image_shape_ = self._image_shape(shape, flat.shape[1])
        return flat.reshape(len(flat), *self.image_shape_), y

    def _image_shape(self, shape: tuple[int, ...] | None, features: int) -> tuple[int, int]:
        side = math.isqrt(features)
        if shape is not None and len(shape) == 3:
            image_shape = (int(shape[1]), int(shape[2]))
        elif side * side == features:
            image_shape = (side, side)
        else:
            image_shape = (1, features)
        if self.model in ("cnn", "cnn-padded") and min(image_shape) < MIN_CNN_SIDE:
            raise ValueError(
                f"model={self.model!r} reads images of at least {MIN_CNN_SIDE}x{MIN_CNN_SIDE} pixels, given as "
                f"(n, height, width) arrays or as rows of a square number of pixels (784 for 28x28); these are "
                f"{image_shape[0]}x{image_shape[1]}: use model='mlp' for other data"
            )
        return image_shape

    def _dataset(self, images: np.ndarray, y: np.ndarray) -> Dataset:
        if len(self.classes_) > MAX_CLASSES:
            raise ValueError(f"DigitnetClassifier handles at most {MAX_CLASSES} classes, not {len(self.classes_)}")
        labels = np.searchsorted(self.classes_, y).astype(np.uint8)
        return Dataset(
            name="arrays",
            class_names=tuple(str(label) for label in self.classes_),
            train_images=images,
            train_labels=labels,
            test_images=images[:0],
            test_labels=labels[:0],
        )

    def _config(self, n_samples: int, **overrides: Any) -> ExperimentConfig:
        """The experiment these parameters describe (``overrides``: recipe fields, or ``val_size``)."""
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), not {self.validation_fraction}")
        recipe = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "schedule": self.schedule,
            "weight_decay": self.weight_decay,
            "patience": self.patience,
        }
        val_size = overrides.pop("val_size", int(self.validation_fraction * n_samples))
        recipe.update(overrides)
        return ExperimentConfig(
            dataset="arrays",
            model=self.model,
            hidden=tuple(self.hidden),
            augment=self.augment,
            seed=self._seed(),
            val_size=val_size,
            dtype=self.dtype,
            threads=self.threads,
            recipe={key: value for key, value in recipe.items() if value is not None},
        )

    def _seed(self) -> int:
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _keep(self, result: ExperimentResult) -> DigitnetClassifier:
        self.network_ = result.network
        self.history_: History = result.history
        self.train_state_: TrainState | None = result.state
        return self
