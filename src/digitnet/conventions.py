"""Digits written the way many writers outside MNIST write them.

MNIST's writers (American census employees and students) wrote a 1 as a single stroke, or with a
short flag. Much of the world writes a 1 with a long flag that reaches down its left side, often
with a foot, and crosses its 7s. A network that never saw a long-flagged 1 reads it as a 4 (the
flag and the stem make a triangle): that was the reader's commonest mistake on scikit-learn's
digits by 43 other writers. Augmenting pixels cannot invent a stroke, so :func:`rewrite` redraws a
share of the training 1s and 7s in those conventions, once, before training; the random
distortions then vary them like any other digit.

Each added stroke is drawn anti-aliased (on a 4x finer canvas, then area-averaged), as wide as
the digit's own strokes and as dark as its ink, and the result is cropped, fitted and centred
again exactly as MNIST's digits were (:func:`digitnet.preprocess.to_mnist`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .errors import ImageError
from .preprocess import to_mnist

#: Ink level (of 255) that counts as part of a stroke when measuring a digit.
_INK = 96
#: Finer canvas the added strokes are drawn on, for anti-aliased edges.
_FINE = 4


def rewrite(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    share: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A copy of ``images`` in which about ``share`` of the 1s and of the 7s are rewritten: each
    chosen 1 gets a long flag (and, one time in three, a foot), each chosen 7 a bar across its stem.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 array ``(N, 28, 28)``, ink high on a black background, MNIST-style.
    labels : numpy.ndarray
        ``(N,)`` label values, indexes into ``class_names``.
    class_names : tuple of str
        Label names. Datasets without classes named ``"1"`` or ``"7"``, or whose images are not
        28x28 MNIST-style digits, come back unchanged.
    share : float
        Probability, per image of those classes, that it is rewritten.
    rng : numpy.random.Generator
        The run's generator (draws are made only for the 1s and 7s, in index order).

    Returns
    -------
    numpy.ndarray
        A new uint8 array of the same shape.
    """
    out = np.array(images, dtype=np.uint8, copy=True)
    if out.shape[1:] != (28, 28):
        return out
    redraw: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {"1": flagged_one, "7": crossed_seven}
    for name, draw in redraw.items():
        if name not in class_names:
            continue
        members = np.flatnonzero(labels == class_names.index(name))
        for index in members[rng.random(len(members)) < share]:
            out[index] = draw(out[index], rng)
    return out


def flagged_one(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (a 1) with a flag from the top of its stem down its left side, 30-55 % of its
    height long, 25-50 degrees from the stem (at most 60 from the vertical), and one time in three
    a foot across its base."""
    stem = _Stem.measure(image)
    if stem is None:
        return image
    flag_x, flag_y = flag_direction(stem.direction, rng.uniform(25.0, 50.0))
    length = rng.uniform(0.3, 0.55) * stem.height
    top = stem.top
    strokes = [(top, (top[0] + length * flag_x, top[1] + length * flag_y))]
    if rng.random() < 1 / 3:
        half = rng.uniform(0.15, 0.3) * stem.height
        base = stem.bottom
        strokes.append(((base[0] - half, base[1]), (base[0] + half, base[1])))
    return _with_strokes(image, strokes, stem.width)


def flag_direction(stem_down: tuple[float, float], turn: float) -> tuple[float, float]:
    """The unit direction of a 1's flag: the stem's downward direction ``(x, y)`` (x grows
    rightwards, y downwards) turned ``turn`` degrees towards the left, but never flatter than 60
    degrees from straight down: a flat flag on a slanted stem would make a 7."""
    stem_angle = np.arctan2(-stem_down[0], stem_down[1])  # > 0 when the stem runs down to the left
    angle = min(stem_angle + np.radians(turn), np.radians(60.0))
    return -float(np.sin(angle)), float(np.cos(angle))


def crossed_seven(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (a 7) with a short bar across its stem, a little below half its height."""
    ink = image >= _INK
    rows = np.flatnonzero(ink.any(axis=1))
    if len(rows) < 6:
        return image
    y = rows[0] + rng.uniform(0.45, 0.65) * (rows[-1] - rows[0])
    columns = np.flatnonzero(ink[int(round(y))])
    if len(columns) == 0:
        return image
    x = columns.mean()
    half = rng.uniform(0.15, 0.3) * (rows[-1] - rows[0])
    tilt = rng.uniform(-0.1, 0.1) * half
    return _with_strokes(image, [((x - half, y + tilt), (x + half, y - tilt))], _stroke_width(ink))


class _Stem:
    """A 1's stem, measured from its ink: a straight line fitted through it (x as a function of y)."""

    def __init__(self, ink: np.ndarray) -> None:
        ys, xs = np.nonzero(ink)
        slope, intercept = np.polyfit(ys, xs, 1)
        self.top = (slope * ys.min() + intercept, float(ys.min()))
        self.bottom = (slope * ys.max() + intercept, float(ys.max()))
        self.height = float(ys.max() - ys.min() + 1)
        norm = np.hypot(slope, 1.0)
        self.direction = (slope / norm, 1.0 / norm)
        self.width = _stroke_width(ink)

    @classmethod
    def measure(cls, image: np.ndarray) -> _Stem | None:
        """The stem of ``image``, or ``None`` when there is too little ink to measure one."""
        ink = image >= _INK
        rows = np.flatnonzero(ink.any(axis=1))
        return cls(ink) if len(rows) >= 6 and ink.sum() >= 10 else None


def _stroke_width(ink: np.ndarray) -> float:
    """The width of a digit's strokes in pixels: twice the depth of ink at its thickest parts."""
    depth = ndimage.distance_transform_edt(ink)
    return float(np.clip(2.0 * np.percentile(depth[ink], 90) - 1.0, 1.5, 5.0))


def _with_strokes(image: np.ndarray, strokes: list, width: float) -> np.ndarray:
    """``image`` with round-capped straight ``strokes`` ((x, y) pairs, in pixels) drawn in its own
    ink, then cropped, fitted and centred again as MNIST's digits are."""
    height, width_px = image.shape
    canvas = Image.new("L", (width_px * _FINE, height * _FINE), 0)
    draw = ImageDraw.Draw(canvas)
    pen = max(1, int(round(width * _FINE)))
    for start, end in strokes:
        points = [tuple(_FINE * (c + 0.5) for c in point) for point in (start, end)]
        draw.line(points, fill=255, width=pen)
        for x, y in points:  # round caps
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    added = np.asarray(canvas.resize((width_px, height), Image.Resampling.BOX), dtype=np.float32) / 255.0
    ink_level = float(np.percentile(image[image >= _INK], 90)) / 255.0
    combined = np.maximum(image.astype(np.float32) / 255.0, added * ink_level)
    try:
        refitted = to_mnist(combined)
    except ImageError:  # a stroke that made the digit look like two marks: keep the original
        return image
    return np.round(refitted * 255.0).astype(np.uint8)
