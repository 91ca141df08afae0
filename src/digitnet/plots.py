"""Figures of a model and its data: predictions, mistakes, confusion, learning curves, weights,
robustness.

Every ``plot_*`` function takes plain arrays (so the notebook's hand-built network can use them as
well as a :class:`~digitnet.nn.Network`) and returns a :class:`matplotlib.figure.Figure`. Figures
are built without :mod:`matplotlib.pyplot`: no global figure registry, no GUI backend, nothing
shown on screen. In Jupyter a returned figure displays itself; elsewhere :func:`save_figure`
writes it as a PNG through the non-interactive Agg canvas.

:func:`save_model_plots` draws the figures of a saved model on its dataset's test set (``digitnet
show``); :func:`save_training_plots` is the part ``digitnet train --plots`` writes.

Colours are chosen to survive greyscale printing and colour blindness: sequential maps with
monotonic lightness (cividis, viridis) and, wherever something is highlighted, a second cue
besides colour (a thick dashed frame, a hatch, a marker or a word).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .errors import DigitnetError
from .metrics import confusion_matrix as count_confusion

__all__ = [
    "FIGURES",
    "NoHistoryError",
    "confident_mistakes",
    "plot_confusion_matrix",
    "plot_first_layer_weights",
    "plot_learning_curves",
    "plot_mistakes",
    "plot_probabilities",
    "plot_robustness",
    "robustness_figure",
    "plot_sample_predictions",
    "plot_weight_images",
    "require_history",
    "save_figure",
    "save_model_plots",
    "save_training_plots",
]

#: Resolution of written PNGs: a 8x6 inch figure becomes 960x720 pixels.
DPI = 120
#: Highlight colour for mistakes (Okabe-Ito vermilion: distinct for colour-blind readers too).
MISTAKE_COLOUR = "#d55e00"
#: Ink dark on light paper, as digits are usually written.
DIGIT_CMAP = "gray_r"

#: The figures ``digitnet show`` can draw, in the order it writes them, with their file names.
FIGURES: dict[str, str] = {
    "samples": "samples.png",
    "mistakes": "mistakes.png",
    "confusion": "confusion.png",
    "learning-curves": "learning-curves.png",
    "weights": "weights.png",
    "probabilities": "probabilities.png",
    "robustness": "robustness.png",
}
#: Figures drawn only when asked for by name: they take a while (``robustness``: a minute or so).
ON_REQUEST = ("robustness",)
#: What ``digitnet show`` draws when no figure is named.
DEFAULT_FIGURES = tuple(name for name in FIGURES if name not in ON_REQUEST)


class NoHistoryError(DigitnetError):
    """A model has no per-epoch training history to draw."""


# -- helpers ----------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    # The constrained layout engine keeps titles, labels and colour bars from overlapping.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    return list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]


def _as_images(images: np.ndarray) -> np.ndarray:
    """``(N, H, W)``, ``(N, 1, H, W)`` or square-flat ``(N, H*W)`` -> ``(N, H, W)`` for display."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        return images[:, 0]
    if images.ndim == 2:
        side = round(np.sqrt(images.shape[1]))
        if side * side != images.shape[1]:
            raise ValueError(f"cannot show flat images of {images.shape[1]} pixels as squares")
        return images.reshape(len(images), side, side)
    if images.ndim != 3:
        raise ValueError(f"expected images shaped (N, H, W), got {images.shape}")
    return images


def _digit_axes(ax: Any, image: np.ndarray) -> None:
    """Draw one digit without ticks; uint8 and [0, 1] images get the same grey scale."""
    vmax = 255 if image.dtype == np.uint8 else 1.0
    ax.imshow(image, cmap=DIGIT_CMAP, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _frame(ax: Any, *, mistake: bool) -> None:
    """A thick dashed vermilion frame marks a mistake; correct answers get a thin grey one."""
    for spine in ax.spines.values():
        if mistake:
            spine.set(color=MISTAKE_COLOUR, linewidth=3, linestyle=(0, (3, 1.5)))
        else:
            spine.set(color="0.75", linewidth=0.8)


def _grid(count: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, count))
    return -(-count // columns), columns


# -- figures ----------------------------------------------------------------------------------


def plot_sample_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    count: int = 24,
    columns: int = 8,
    title: str | None = None,
) -> Figure:
    """A grid of images with their true and predicted labels; mistakes stand out.

    Parameters
    ----------
    images : ndarray
        ``(N, H, W)`` uint8 or [0, 1] floats (``(N, 1, H, W)`` and flat squares work too).
    labels, predicted : ndarray
        True and predicted class indices ``(N,)``.
    class_names : sequence of str, optional
        Names of the classes, by index [default: the indices].
    count : int, optional
        How many of the first images to show.
    columns : int, optional
        Images per row.
    title : str, optional
        Figure title [default: how many of those shown are correct].

    Returns
    -------
    matplotlib.figure.Figure
        A correct prediction is titled with its label; a mistake is titled ``✗ 9 (true 4)`` in
        vermilion and framed with a thick dashed line, so it is visible in greyscale too.
    """
    images = _as_images(images)[:count]
    labels, predicted = np.asarray(labels)[:count], np.asarray(predicted)[:count]
    count = len(images)
    if count == 0:
        raise ValueError("no images to show")
    names = _names(class_names, int(max(labels.max(), predicted.max())) + 1)
    rows, columns = _grid(count, columns)
    figure = _new_figure(1.15 * columns, 1.35 * rows + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    for ax, image, label, guess in zip(axes.flat, images, labels, predicted):
        _digit_axes(ax, image)
        wrong = guess != label
        _frame(ax, mistake=wrong)
        if wrong:
            ax.set_title(f"✗ {names[guess]} (true {names[label]})", fontsize=9, color=MISTAKE_COLOUR, fontweight="bold")
        else:
            ax.set_title(names[guess], fontsize=10)
    correct = int((labels == predicted).sum())
    figure.suptitle(
        title or f"Sample predictions: {correct} of {count} correct (mistakes: ✗ and a dashed frame)", fontsize=11
    )
    return figure


def confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int = 12) -> np.ndarray:
    """Indices of the wrong predictions made with the highest confidence, most confident first.

    Parameters
    ----------
    labels : ndarray
        True class indices ``(N,)``.
    probabilities : ndarray
        Predicted class probabilities ``(N, K)``.
    count : int, optional
        At most this many indices are returned.
    """
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    confidence = probabilities[wrong, predicted[wrong]]
    # A stable sort keeps ties in dataset order, so the figure is reproducible.
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def plot_mistakes(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    count: int = 12,
    columns: int = 6,
) -> Figure:
    """The most confident wrong predictions, each with its top-3 class probabilities.

    Parameters
    ----------
    images : ndarray
        ``(N, H, W)`` images.
    labels : ndarray
        True class indices ``(N,)``.
    probabilities : ndarray
        Predicted probabilities ``(N, K)``.
    class_names : sequence of str, optional
    count, columns : int, optional
        How many mistakes to show, and per row.

    Returns
    -------
    matplotlib.figure.Figure
        Below each image, the three most probable classes; the true class is marked "← true".
    """
    images, labels, probabilities = _as_images(images), np.asarray(labels), np.asarray(probabilities)
    names = _names(class_names, probabilities.shape[1])
    chosen = confident_mistakes(labels, probabilities, count)
    total_wrong = int((probabilities.argmax(axis=1) != labels).sum())
    if len(chosen) == 0:
        figure = _new_figure(6, 2)
        figure.suptitle("Most confident mistakes", fontsize=11)
        figure.text(0.5, 0.45, f"No mistakes among {len(labels)} images.", ha="center", fontsize=11)
        return figure
    rows, columns = _grid(len(chosen), columns)
    figure = _new_figure(1.75 * columns, 2.45 * rows + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(chosen) :]:
        ax.set_axis_off()
    for ax, index in zip(axes.flat, chosen):
        p = probabilities[index]
        guess, label = int(p.argmax()), int(labels[index])
        _digit_axes(ax, images[index])
        _frame(ax, mistake=True)
        ax.set_title(f"#{index}: pred {names[guess]}, true {names[label]}", fontsize=9)
        top3 = np.argsort(-p, kind="stable")[:3]
        lines = [f"{names[k]}: {p[k]:6.1%}" + ("  ← true" if k == label else "") for k in top3]
        ax.set_xlabel("\n".join(lines), fontsize=8, family="monospace", loc="left")
    figure.suptitle(
        f"Most confident mistakes ({len(chosen)} of {total_wrong} wrong, top-3 probabilities below each)", fontsize=11
    )
    return figure


def plot_confusion_matrix(
    confusion: np.ndarray, class_names: Sequence[str] | None = None, *, title: str | None = None
) -> Figure:
    """A heatmap of the confusion matrix with the count written in every non-empty cell.

    Parameters
    ----------
    confusion : ndarray
        ``C[i, j]`` counts examples of true class ``i`` predicted as class ``j``
        (as :func:`digitnet.metrics.confusion_matrix` returns it).
    class_names : sequence of str, optional
    title : str, optional
        [default: the accuracy it implies]

    Returns
    -------
    matplotlib.figure.Figure
        Colours follow a logarithmic scale: the diagonal holds hundreds or thousands, the
        mistakes a handful, and on a linear scale every mistake would look the same. Empty cells
        are left white.
    """
    confusion = np.asarray(confusion)
    k = confusion.shape[0]
    names = _names(class_names, k)
    total, correct = int(confusion.sum()), int(np.trace(confusion))
    side = max(4.5, 0.55 * k + 1.8)
    figure = _new_figure(side + 1.0, side)
    ax = figure.subplots()
    masked = np.ma.masked_equal(confusion, 0)
    norm = LogNorm(vmin=1, vmax=max(2, int(confusion.max())))
    image = ax.imshow(masked, cmap="cividis", norm=norm, interpolation="nearest")
    colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("count (log scale)")
    fontsize = 9 if k <= 10 else 7
    for i in range(k):
        for j in range(k):
            value = int(confusion[i, j])
            if value == 0:
                continue
            # White text on the dark (low) end of cividis, black on the light end.
            red, green, blue, _ = image.cmap(norm(value))
            light = 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="black" if light else "white",
                fontweight="bold" if i == j else "normal",
            )
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    if max(len(name) for name in names) > 2:
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        title or f"Confusion matrix: {correct:,} of {total:,} correct ({correct / max(1, total):.2%})", fontsize=11
    )
    return figure


def _history_records(history: Any) -> list[dict[str, Any]]:
    """A model's metadata, a :class:`~digitnet.train.History` or a list of epoch dicts -> dicts."""
    if hasattr(history, "metadata"):  # a Network
        history = history.metadata.get("history")
    if hasattr(history, "to_list"):  # a train.History
        history = history.to_list()
    return list(history or [])


def require_history(history: Any, source: str = "this model") -> list[dict[str, Any]]:
    """The epoch records of ``history`` (as :func:`plot_learning_curves` takes it).

    Raises
    ------
    NoHistoryError
        If there are none, with a sentence naming ``source``.
    """
    records = _history_records(history)
    if not records:
        raise NoHistoryError(
            f"{source} has no training history (it was saved without one); "
            "the learning-curve plot needs a model written by `digitnet train`."
        )
    return records


def plot_learning_curves(history: Any, *, title: str | None = None, source: str = "this model") -> Figure:
    """Loss and accuracy per epoch, from a training history.

    Parameters
    ----------
    history : Network, History or list of dict
        A model whose ``metadata["history"]`` was written by ``digitnet train``, the
        :class:`~digitnet.train.History` that :func:`~digitnet.train.train` returns, or its
        ``to_list()``: dicts with ``epoch``, ``loss``, ``train_accuracy`` and ``val_accuracy``
        (``None`` when there was no validation set).
    title : str, optional
    source : str, optional
        Names the model in the error message (for example its file name).

    Raises
    ------
    NoHistoryError
        When there are no epochs to draw.

    Notes
    -----
    Training accuracy is measured on each batch while the epoch runs (before the weights' last
    updates), validation accuracy after the epoch; early in training the two therefore differ
    even without overfitting.
    """
    records = require_history(history, source)
    epochs = [record["epoch"] for record in records]
    figure = _new_figure(9, 3.6)
    loss_ax, accuracy_ax = figure.subplots(1, 2)
    loss_ax.plot(epochs, [record["loss"] for record in records], marker="o", color="#0072b2")
    loss_ax.set_title("Training loss (cross-entropy)", fontsize=10)
    loss_ax.set_ylabel("mean loss per example")
    train_accuracy = [100 * record["train_accuracy"] for record in records]
    accuracy_ax.plot(epochs, train_accuracy, marker="o", color="#0072b2", label="training (during epoch)")
    val = [(e, 100 * r["val_accuracy"]) for e, r in zip(epochs, records) if r.get("val_accuracy") is not None]
    if val:
        accuracy_ax.plot(*zip(*val), marker="s", linestyle="--", color="#e69f00", label="validation")
    accuracy_ax.set_title("Accuracy", fontsize=10)
    accuracy_ax.set_ylabel("accuracy (%)")
    accuracy_ax.legend(loc="lower right")
    for ax in (loss_ax, accuracy_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    figure.suptitle(title or "Learning curves", fontsize=11)
    return figure


def plot_weight_images(
    weights: np.ndarray, *, count: int = 64, columns: int = 8, title: str = "First-layer weights", unit: str = "unit"
) -> Figure:
    """Weight arrays drawn as images, one per unit, on one shared symmetric colour scale.

    Parameters
    ----------
    weights : ndarray
        ``(units, H, W)``: each unit's weights laid out like its input.
    count, columns : int, optional
        How many units to draw (the first ones), and per row.
    title, unit : str, optional
        Figure title, and what each image is called in the captions.

    Returns
    -------
    matplotlib.figure.Figure
        The colour scale is centred on zero (the middle colour means "ignores this pixel") and
        runs from the most negative to the most positive weight shown (clipped at the 99.5th
        percentile of their size, so a few outliers do not wash out the rest).
    """
    weights = np.asarray(weights, dtype=np.float64)[:count]
    count = len(weights)
    limit = float(np.quantile(np.abs(weights), 0.995)) or 1.0
    rows, columns = _grid(count, columns)
    figure = _new_figure(0.95 * columns + 1.4, 1.0 * rows + 0.6)
    axes = figure.subplots(rows, columns, squeeze=False)
    image = None
    image = None
    for number, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if number >= count:
            ax.set_axis_off()
            continue
        image = ax.imshow(weights[number], cmap="cividis", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(str(number), fontsize=7, pad=2)
    assert image is not None  # count >= 1: at least one image was drawn
    colorbar = figure.colorbar(image, ax=axes, shrink=0.8, aspect=30)
    colorbar.set_label("weight (dark: negative, light: positive)")
    figure.suptitle(f"{title}: what each of the first {count} {unit}s responds to", fontsize=11)
    return figure


def plot_first_layer_weights(network: Any, *, count: int = 64, columns: int = 8) -> Figure:
    """The weights of a network's first layer with parameters, as images.

    For a dense layer reading the pixels (the default MLP's 784 x 128 ``W``), column ``j`` of ``W``
    is reshaped to 28 x 28: bright pixels push hidden unit ``j`` up, dark ones push it down. For a
    convolution (``W`` shaped ``(out_channels, in_channels, kh, kw)``) each filter is drawn (averaged
    over input channels).

    Parameters
    ----------
    network : Network
    count, columns : int, optional

    Raises
    ------
    DigitnetError
        If the first parameterised layer is of another kind, with a sentence saying so.
    """
    for layer in network.layers:
        if layer.params:
            break
    else:
        raise DigitnetError("this model has no layer with weights, so there are no weights to draw.")
    weights = np.asarray(layer.params.get("W"))
    channels, *image_shape = network.input_shape
    kind = type(layer).__name__
    if weights.ndim == 2 and weights.shape[0] == int(np.prod(network.input_shape)) and channels == 1:
        return plot_weight_images(
            weights.T.reshape(-1, *image_shape),
            count=count,
            columns=columns,
            title=f"First-layer weights ({kind} {weights.shape[0]}→{weights.shape[1]})",
            unit="hidden unit",
        )
    if weights.ndim == 4:
        return plot_weight_images(
            weights.mean(axis=1),
            count=count,
            columns=columns,
            title=f"First-layer filters ({kind}, {weights.shape[2]}x{weights.shape[3]})",
            unit="filter",
        )
    raise DigitnetError(
        f"the first layer with weights is a {kind} with weights shaped {weights.shape}; "
        "weights can be drawn as images only for a Dense layer reading the pixels or a "
        "convolution."
    )


def plot_probabilities(
    probabilities: np.ndarray,
    image: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    *,
    true_label: int | None = None,
    title: str | None = None,
    image_title: str = "input",
) -> Figure:
    """One image beside the network's probability for every class.

    Parameters
    ----------
    probabilities : ndarray
        ``(K,)`` probabilities for one image.
    image : ndarray, optional
        The image itself (``(H, W)``, uint8 or [0, 1]); omitted, only the bars are drawn.
    class_names : sequence of str, optional
    true_label : int, optional
        When known, the true class is named in the title and marked under its bar.
    title : str, optional
        [default: the prediction and its probability]
    image_title : str, optional
        Caption of the image.

    Returns
    -------
    matplotlib.figure.Figure
        The predicted class's bar is dark and hatched, the others light, each labelled with its
        percentage when it is at least 0.1%.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    names = _names(class_names, len(p))
    guess = int(p.argmax())
    figure = _new_figure(7.5 if image is not None else 5.5, 3.2)
    if image is not None:
        image_ax, bar_ax = figure.subplots(1, 2, width_ratios=[1, 2.2])
        _digit_axes(image_ax, _as_images(np.asarray(image)[np.newaxis])[0])
        image_ax.set_title(image_title, fontsize=10)
    else:
        bar_ax = figure.subplots()
    colours = ["#9ecae1"] * len(p)
    colours[guess] = "#08306b"
    bars = bar_ax.bar(range(len(p)), p, color=colours, edgecolor="black", linewidth=0.6)
    bars[guess].set_hatch("//")
    for k, value in enumerate(p):
        if value >= 0.001:
            bar_ax.text(k, value + 0.02, f"{value:.1%}", ha="center", va="bottom", fontsize=7)
    tick_labels = [name + ("\n(true)" if k == true_label else "") for k, name in enumerate(names)]
    bar_ax.set_xticks(range(len(p)), tick_labels, fontsize=9)
    bar_ax.set_ylim(0, 1.12)
    bar_ax.set_ylabel("probability")
    bar_ax.set_xlabel("class")
    bar_ax.grid(axis="y", alpha=0.3)
    if title is None:
        title = f"Prediction: {names[guess]} ({p[guess]:.1%})"
        if true_label is not None:
            title += " ✓ correct" if guess == true_label else f" ✗ wrong, true {names[true_label]}"
    figure.suptitle(title, fontsize=11)
    return figure


# -- writing ----------------------------------------------------------------------------------


_MARKERS = ("o", "s", "^", "D", "v", "P")
_LINESTYLES = ("-", "--", ":", "-.")


def plot_robustness(curves: Mapping[str, Mapping[str, Sequence[float]]], example: np.ndarray | None = None) -> Figure:
    """Accuracy against the severity of each perturbation of :data:`digitnet.robustness.PERTURBATIONS`.

    Parameters
    ----------
    curves : mapping
        Model name -> perturbation name -> accuracy (0..1) at each severity, as
        :func:`digitnet.robustness.robustness_curves` returns them; one line per model, told apart
        by marker and line style as well as colour.
    example : numpy.ndarray, optional
        One test digit, shown under each panel at every severity.
    """
    from .robustness import PERTURBATIONS, perturbed

    figure = _new_figure(13.0, 8.5 if example is not None else 7.0)
    rows = 2 * (1 + (example is not None))
    ratios = [4, 1, 4, 1] if example is not None else [1, 1]
    grid = figure.add_gridspec(rows, 3, height_ratios=ratios)
    for k, (name, family) in enumerate(PERTURBATIONS.items()):
        row = (k // 3) * (rows // 2)
        ax = figure.add_subplot(grid[row, k % 3])
        for m, (model, by_family) in enumerate(curves.items()):
            ax.plot(
                family.severities,
                100 * np.asarray(by_family[name]),
                marker=_MARKERS[m % len(_MARKERS)],
                linestyle=_LINESTYLES[m % len(_LINESTYLES)],
                label=model,
            )
        ax.set_title(family.title)
        ax.set_xlabel(family.unit)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        if k % 3 == 0:
            ax.set_ylabel("test accuracy (%)")
        if example is not None:
            strip = grid[row + 1, k % 3].subgridspec(1, len(family.severities))
            for j, severity in enumerate(family.severities):
                _digit_axes(figure.add_subplot(strip[0, j]), perturbed(example[np.newaxis], name, severity)[0])
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 4), frameon=False)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` as a PNG (folders are created), through the Agg canvas.

    Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)  # attach a non-interactive canvas; never opens a window
    figure.savefig(path, format="png", dpi=DPI, facecolor="white")
    return path


def _stderr_note(message: str) -> None:
    print(message, file=sys.stderr)


def save_model_plots(
    network: Any,
    data: Any,
    out_dir: str | Path,
    what: Iterable[str] = DEFAULT_FIGURES,
    *,
    index: int = 0,
    note: Callable[[str], None] | None = _stderr_note,
    source: str = "the model",
) -> list[Path]:
    """Draw the chosen figures of ``network`` on the test set of ``data`` and write them as PNGs.

    Parameters
    ----------
    network : Network
    data : Dataset
        Its test images and labels are used.
    out_dir : path-like
        Created if needed; files are named as in :data:`FIGURES`.
    what : iterable of str, optional
        Keys of :data:`FIGURES` [default: :data:`DEFAULT_FIGURES`].
    index : int, optional
        Which test image the ``probabilities`` figure shows.
    note : callable or None, optional
        Called with a sentence when the learning curve is skipped because the model has no
        history; ``None`` raises :class:`NoHistoryError` instead.
    source : str, optional
        Names the model in messages.

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of :data:`FIGURES`.
    """
    wanted = set(what)
    unknown = wanted - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figures {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    out_dir = Path(out_dir)
    images, labels = data.test_images, np.asarray(data.test_labels, dtype=np.int64)
    needs_predictions = wanted & {"samples", "mistakes", "confusion", "probabilities"}
    # Computed once, only for the figures that need them.
    probabilities = network.predict_proba(images) if needs_predictions else np.empty((0, 0))
    names = network.class_names
    drawers: Mapping[str, Callable[[], Figure]] = {
        "samples": lambda: plot_sample_predictions(images, labels, probabilities.argmax(axis=1), names),
        "mistakes": lambda: plot_mistakes(images, labels, probabilities, names),
        "confusion": lambda: plot_confusion_matrix(
            count_confusion(labels, probabilities.argmax(axis=1), len(names)), names
        ),
        "learning-curves": lambda: plot_learning_curves(network, source=source),
        "weights": lambda: plot_first_layer_weights(network),
        "probabilities": lambda: plot_probabilities(
            probabilities[index], images[index], names, true_label=int(labels[index])
        ),
        "robustness": lambda: robustness_figure({source: network}, data),
    }
    if "probabilities" in wanted and not -len(images) <= index < len(images):
        raise DigitnetError(
            f"there is no test image {index}: the test set has {len(images)} (indices 0 to {len(images) - 1})."
        )
    written = []
    for name, file_name in FIGURES.items():
        if name not in wanted:
            continue
        try:
            figure = drawers[name]()
        except NoHistoryError as error:
            if note is None:
                raise
            note(f"Skipped the learning curve: {error}")
            continue
        written.append(save_figure(figure, out_dir / file_name))
    return written


def robustness_figure(networks: Mapping[str, Any], data: Any, count: int | None = None) -> Figure:
    """The robustness figure of one or several models, on the first ``count`` test digits of
    ``data`` (:data:`digitnet.robustness.DEFAULT_COUNT` by default)."""
    from .robustness import DEFAULT_COUNT, robustness_curves

    count = DEFAULT_COUNT if count is None else count
    images, labels = data.test_images[:count], data.test_labels[:count]
    curves = {name: robustness_curves(network, images, labels) for name, network in networks.items()}
    return plot_robustness(curves, example=images[0])


def save_training_plots(
    network: Any, data: Any, out_dir: str | Path, note: Callable[[str], None] | None = _stderr_note
) -> list[Path]:
    """The figures ``digitnet train --plots DIR`` writes: learning curves and sample predictions.

    A model without history gets a printed note instead of a learning curve. Returns the paths
    written.
    """
    return save_model_plots(network, data, out_dir, ("learning-curves", "samples"), note=note)
