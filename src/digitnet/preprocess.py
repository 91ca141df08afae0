"""Turn any image of a digit into an MNIST-like 28x28 input.

MNIST digits were made in a particular way, and a network trained on them reads other digits well
only if they are made the same way. As the MNIST authors describe it, each digit was scaled
(anti-aliased, aspect ratio kept) to fit a 20x20 box and placed in a 28x28 image so that its
centre of mass lies at the centre; ink is high (1), background 0.

This module does that once, for everyone: ``digitnet predict`` reads image files with
:func:`preprocess_file` (or :func:`preprocess_for_model`, which also shapes the result as a
network's input), and the draw-a-digit page sends either a canvas (an array of ink
intensities, given to :func:`to_mnist`) or an uploaded file (read with :func:`load_image`).

The two steps are separate on purpose:

* :func:`load_image` knows about files: decoding, colour modes, transparency and which colour is
  the paper. Its result is an "ink map": a float array, 0 where there is no ink, up to 1.
* :func:`to_mnist` knows about MNIST: it turns any ink map into a 28x28 digit.
"""

from __future__ import annotations

import io
import math
import os
import struct
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitnet.errors import ImageError

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageSource",
    "load_image",
    "preprocess_file",
    "preprocess_for_model",
    "to_mnist",
]

#: Largest image (width x height) we agree to decode or process. A 40-megapixel photo is larger
#: than any phone camera's; beyond that a file is more likely a decompression bomb than a digit.
MAX_IMAGE_PIXELS = 40_000_000

#: Side of an MNIST image.
MNIST_SIZE = 28
#: Side of the box the digit's ink is scaled to fit (MNIST: 20x20 inside 28x28).
DIGIT_BOX = 20
#: Row and column (0-based pixel indices) where the centre of mass lands. In every one of the
#: 10,000 MNIST test digits the centre of mass rounds to pixel (14, 14): it lies in [13.5, 14.5].
MASS_CENTRE = 14

#: An ink map whose strongest pixel is below this holds no digit.
BLANK_THRESHOLD = 0.05
#: Pixels fainter than this fraction of the strongest do not count when cropping to the ink, so
#: JPEG ringing, noise and faint smudges do not widen the crop. MNIST digits are not affected:
#: their ink bounding box is the same at thresholds 0 and 0.1.
NOISE_FLOOR = 0.1
#: Contrast is stretched so that this percentile of the ink pixels becomes 1 (full white, as in
#: MNIST strokes). For 98.5% of MNIST digits it already is within 1%.
CONTRAST_PERCENTILE = 95

# Stroke-width normalisation (see _normalise_strokes). Widths are in pixels at the 20x20 scale,
# measured as 2 x ink mass / outline length. Over 3,000 MNIST test digits: 1st percentile 1.0,
# median 1.85, 99th percentile 3.5. Measured with an MLP trained on MNIST and test digits redrawn
# with chosen stroke widths: hairlines read best grown to MNIST's median; blobs read best worn
# down only to 2.6, because wearing a blob down further distorts its shape more than it helps.
_STROKE_WIDTH_RANGE = (0.875, 3.25)  # left alone inside this range
_STROKE_WIDTH_TARGET = 1.85  # hairlines are grown to this
_STROKE_THICK_TARGET = 2.6  # blobs are worn down to this
_STROKE_WORK_SCALE = 4  # measure and redraw at 80x80, so widths move in quarter pixels
_STROKE_MASK_LEVEL = 0.25  # ink this strong (relative to the strongest) belongs to a stroke
_STROKE_MAX_STEPS = 40  # one-pixel steps at 80x80: half the box, more than any stroke needs
_STROKE_MIN_COVERAGE = 0.97  # thinning stops before any part holding 3% of the ink would vanish

#: Anything :func:`load_image` accepts: a path, the bytes of a file, or a binary file object.
ImageSource = Union[str, "os.PathLike[str]", bytes, BinaryIO]

# Exceptions Pillow raises while decoding damaged or hostile files. Catching them turns a bad upload
# into a clear ImageError; anything else is a bug and propagates.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)


def load_image(path_or_file: ImageSource) -> np.ndarray:
    """Decode an image and return its ink map: where the digit was drawn, and how strongly.

    The paper (background) colour is the median colour of the image's outermost pixels. Each
    pixel's ink is its colour distance from the paper, so black-on-white, white-on-black, blue on
    yellow and grey pencil on grey paper all come out as high ink on a zero background. For a
    greyscale image this is simply: invert when the paper is light, and subtract the paper's grey.

    Transparent pixels are composited onto the paper. When the border itself is transparent (a
    drawing exported from a canvas), the paper is taken to be the colour that contrasts with the
    opaque strokes: white behind dark strokes, black behind light ones.

    Parameters
    ----------
    path_or_file : str, os.PathLike, bytes or binary file object
        The image: a path, the file's bytes, or an open binary file. Any format Pillow reads
        (PNG, JPEG, BMP, GIF, TIFF, WebP, ...) and any mode (1, L, LA, P, RGB, RGBA, CMYK, I;16,
        I, F). Multi-frame images use their first frame; EXIF rotation is applied.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (height, width) with values in [0, 1]: 0 for paper, high for ink.

    Raises
    ------
    ImageError
        If the file does not exist, is not an image, is damaged, or has more than
        :data:`MAX_IMAGE_PIXELS` pixels (checked from the header, before decoding).
    """
    name, fp = _open_source(path_or_file)
    try:
        # Image.open reads only the header, so the size check below runs before any decoding.
        image = Image.open(fp)
    except FileNotFoundError:
        raise ImageError(f"Image file {name} does not exist; check the path.") from None
    except IsADirectoryError:
        raise ImageError(
            f"{name} is a directory, not an image file; give the path of a PNG or JPEG file."
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name} is not an image that can be read (PNG, JPEG, BMP, GIF, TIFF or WebP); "
            "save the digit as a PNG or JPEG and try again."
        ) from None
    except Image.DecompressionBombError:
        # Pillow's own, larger limit fired first; report it the same way as ours.
        raise ImageError(_too_large_message(name)) from None
    except OSError as error:
        raise ImageError(
            f"Image file {name} cannot be read ({error.strerror or error}); "
            "check the path and its permissions."
        ) from None

    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageError(_too_large_message(name, width, height))
        if width == 0 or height == 0:
            raise ImageError(
                f"{name} is an empty ({width}x{height}) image; "
                "draw or photograph a digit and try again."
            )
        try:
            image.load()
            image = ImageOps.exif_transpose(image)  # phone photos are often stored sideways
            colour, alpha = _decode_pixels(image)
        except Image.DecompressionBombError:
            raise ImageError(_too_large_message(name, width, height)) from None
        except _DECODE_ERRORS as error:
            raise ImageError(
                f"{name} is damaged or truncated and could not be decoded ({error}); "
                "save the image again and retry."
            ) from None
    return _ink_map(colour, alpha)


def to_mnist(ink: np.ndarray) -> np.ndarray:
    """Make an MNIST-style 28x28 digit from an ink map, the way MNIST itself was made.

    1. Contrast: scale so the ink is 1 where strongest (its 95th percentile, so a single blot
       does not dim the rest).
    2. Crop to the bounding box of the ink, ignoring pixels under a tenth of the strongest.
    3. Stroke width: if the strokes, seen at the 20x20 scale, are hairlines (under 0.875 px)
       or blobs (over 3.25 px), redraw them MNIST-like (1.85 px or 2.6 px wide). MNIST's own
       digits are nearly all in that range and untouched.
    4. Scale, keeping the aspect ratio, so the longer side is 20 pixels: area averaging (PIL's BOX
       filter) when shrinking, bilinear when enlarging, both without ringing. Grey levels are
       kept.
    5. Paste into a black 28x28 image, shifted by whole pixels so that the centre of mass rounds to
       pixel (14, 14), as in every MNIST digit. Where that would push ink over the edge (very
       lopsided shapes) the shift stops at the edge: nothing is ever cut off.

    A real MNIST digit (pixels / 255) comes back essentially unchanged.

    Parameters
    ----------
    ink : numpy.ndarray
        Array of shape (height, width), values in [0, 1], ink high and background 0: a canvas
        drawing, or the result of :func:`load_image`.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (28, 28) with values in [0, 1].

    Raises
    ------
    ImageError
        If the array is not two-dimensional, is empty or larger than :data:`MAX_IMAGE_PIXELS`, holds
        values outside [0, 1] (NaN and infinity included), or holds no ink.
    """
    return _to_mnist(ink, "The drawing")


def preprocess_file(path: ImageSource) -> np.ndarray:
    """Read an image file and return the MNIST-like 28x28 digit in it.

    Parameters
    ----------
    path : str, os.PathLike, bytes or binary file object
        The image, as accepted by :func:`load_image`.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (28, 28) with values in [0, 1], white digit on black.

    Raises
    ------
    ImageError
        If the file cannot be read as an image, is too large, or shows no digit.
    """
    name, _ = _open_source(path)
    return _to_mnist(load_image(path), name)


def preprocess_for_model(path: ImageSource, input_shape: tuple[int, ...]) -> np.ndarray:
    """Read an image file and return the digit in it shaped as a network's single input.

    The digit is made exactly as :func:`preprocess_file` makes it. A model for another image size
    (say the 8x8 scikit-learn digits) gets that 28x28 digit shrunk by area averaging: close to,
    though not exactly, how its own training images were made.

    Parameters
    ----------
    path : str, os.PathLike, bytes or binary file object
        The image, as accepted by :func:`load_image`.
    input_shape : tuple of int
        The network's input shape without the batch axis: ``(channels, height, width)`` such as
        ``(1, 28, 28)``, or flat such as ``(784,)`` for a square image.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``input_shape`` with values in [0, 1]; every channel is the digit.

    Raises
    ------
    ImageError
        If the file cannot be read as an image, is too large, or shows no digit.
    """
    shape = tuple(int(size) for size in input_shape)
    if len(shape) >= 2:
        height, width = shape[-2:]
    else:
        height = width = math.isqrt(shape[0]) if shape else 0
    if height * width == 0 or math.prod(shape) % (height * width):
        raise ValueError(f"cannot shape a 2-D digit as a network input of shape {shape}")
    digit = preprocess_file(path)
    if (height, width) != digit.shape:
        image = Image.fromarray(digit).resize((width, height), Image.Resampling.BOX)
        digit = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    channels = math.prod(shape) // (height * width)
    return np.repeat(digit[np.newaxis], channels, axis=0).reshape(shape)


def _to_mnist(ink: np.ndarray, name: str) -> np.ndarray:
    """:func:`to_mnist`, naming the image as ``name`` in error messages."""
    ink = _validated_ink(ink)

    # 1. Contrast: a faint pencil digit and a bold marker digit should look the same.
    peak = float(ink.max())
    if peak < BLANK_THRESHOLD:
        raise ImageError(
            f"{name} is blank: no ink found (strongest pixel {peak:.3f}, need {BLANK_THRESHOLD}); "
            "draw or photograph a digit and try again."
        )
    strong = ink >= NOISE_FLOOR * peak
    # Scale by the strong ink's 95th percentile, not its maximum, so that one blot or hot pixel
    # does not leave the rest of the digit faint; the few brighter pixels are clipped to 1.
    level = np.float32(np.percentile(ink[strong], CONTRAST_PERCENTILE))
    ink = np.minimum(ink / level, 1.0)

    # 2. Crop to the ink. Faint pixels (JPEG ringing, noise) do not widen the crop; inside it all
    # grey levels are kept, so the centre of mass is the one MNIST computed.
    ink = _crop(ink, strong)

    # 3 and 4. Redraw hairlines and marker blobs with MNIST-like strokes; fit the 20x20 box.
    digit = _fit_box(_normalise_strokes(ink), DIGIT_BOX)

    # 5. Centre by mass.
    return _paste_centred(digit)


# --- decoding -------------------------------------------------------------------------------


def _open_source(source: ImageSource) -> tuple[str, str | os.PathLike[str] | BinaryIO]:
    """Return a printable name for ``source`` and something :func:`PIL.Image.open` accepts."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "The uploaded image", io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        return f"'{os.fspath(source)}'", source
    if hasattr(source, "read"):
        file_name = getattr(source, "name", None)
        return (f"'{file_name}'" if isinstance(file_name, str) else "The uploaded image"), source
    raise TypeError(
        f"load_image needs a path, bytes or a binary file object, not {type(source).__name__}"
    )


def _too_large_message(name: str, width: int | None = None, height: int | None = None) -> str:
    size = f" ({width}x{height} pixels)" if width is not None else ""
    return (
        f"{name} is too large{size}: the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels; "
        "scale the image down and try again."
    )


def _decode_pixels(image: Image.Image) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Return the colour channels (1 grey or 3 RGB) and the alpha channel (or None).

    Each is a contiguous float32 (H, W) array in [0, 1]; one array per channel keeps the later
    arithmetic fast and memory-light for photo-sized images.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        return [np.asarray(image, dtype=np.float32) / np.float32(65535)], None
    if mode in ("I", "F"):
        # 32-bit integer or float pixels have no fixed white level: stretch to [0, 1].
        grey = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = grey.min(), grey.max()
        grey = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
        return [grey.astype(np.float32)], None

    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        *colour, alpha = (_channel(band) for band in image.convert("RGBA").split())
        return colour, alpha
    if mode in ("1", "L") or (mode == "P" and _palette_is_grey(image)):
        return [_channel(image.convert("L"))], None
    return [_channel(band) for band in image.convert("RGB").split()], None


def _channel(band: Image.Image) -> np.ndarray:
    """An 8-bit Pillow band as a float32 array in [0, 1]."""
    return np.asarray(band, dtype=np.float32) / np.float32(255)


def _palette_is_grey(image: Image.Image) -> bool:
    """Whether every colour of a "P" image's palette is a shade of grey."""
    palette = image.getpalette() or []
    triples = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
    return bool((triples == triples[:, :1]).all())


def _border(array: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels of an (H, W) array, flattened."""
    if array.shape[0] <= 2 or array.shape[1] <= 2:
        return array.ravel()
    return np.concatenate([array[0], array[-1], array[1:-1, 0], array[1:-1, -1]])


def _ink_map(colour: list[np.ndarray], alpha: np.ndarray | None) -> np.ndarray:
    """Turn colour channels and optional alpha into ink: each pixel's distance from the paper."""
    if alpha is not None and alpha.min() < 1.0:
        border_alpha = _border(alpha)
        if np.median(border_alpha) >= 0.5:
            # Opaque paper with transparent holes: the holes are paper too.
            opaque = border_alpha >= 0.5
            paper = [float(np.median(_border(channel)[opaque])) for channel in colour]
        else:
            # Strokes on a transparent canvas: put them on a paper they contrast with.
            coverage = float(alpha.sum())
            lightness = sum(float(np.vdot(channel, alpha)) for channel in colour) / len(colour)
            dark_strokes = coverage == 0.0 or lightness / coverage < 0.5
            paper = [1.0 if dark_strokes else 0.0] * len(colour)
        for channel, paper_level in zip(colour, paper, strict=True):
            # channel = alpha * channel + (1 - alpha) * paper, in place
            channel -= paper_level
            channel *= alpha
            channel += paper_level
    else:
        paper = [float(np.median(_border(channel))) for channel in colour]

    # Root-mean-square channel difference: for a grey image this is |grey - paper|.
    ink = np.zeros_like(colour[0])
    for channel, paper_level in zip(colour, paper, strict=True):
        channel -= paper_level
        ink += channel * channel
    ink /= len(colour)
    np.sqrt(ink, out=ink)
    return np.clip(ink, 0.0, 1.0, out=ink)


# --- MNIST normalisation --------------------------------------------------------------------


def _validated_ink(ink: np.ndarray) -> np.ndarray:
    """Check an ink map and return it as a fresh float32 array; raise ImageError if unusable."""
    array = np.asarray(ink)
    if array.dtype.kind not in "buif":
        raise ImageError(f"The ink array has dtype {array.dtype}; give numbers between 0 and 1.")
    if array.ndim != 2:
        raise ImageError(
            f"The ink array has shape {array.shape}; "
            "give a 2-D (height, width) array of ink intensities."
        )
    if array.size == 0:
        raise ImageError(
            f"The ink array is empty (shape {array.shape}); draw a digit and try again."
        )
    if array.size > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"The ink array is too large ({array.shape[1]}x{array.shape[0]}): the limit is "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels; scale it down and try again."
        )
    array = array.astype(np.float32)  # always a copy: the caller's array is never modified
    if not np.isfinite(array).all():
        raise ImageError(
            "The ink array contains NaN or infinite values; give numbers between 0 and 1."
        )
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0 + 1e-6:
        raise ImageError(
            f"The ink array holds values from {low:g} to {high:g}; give values between 0 and 1 "
            "(divide 8-bit pixels by 255)."
        )
    return np.minimum(array, 1.0, out=array)


def _crop(ink: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Crop ``ink`` to the bounding box of the True pixels of ``keep`` (which has some)."""
    rows = np.flatnonzero(keep.any(axis=1))
    cols = np.flatnonzero(keep.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit_box(ink: np.ndarray, box: int) -> np.ndarray:
    """Scale ``ink`` so its longer side is ``box`` pixels, keeping aspect ratio and grey levels."""
    height, width = ink.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL: (width, height)
    # Shrinking: BOX averages the source pixels under each target pixel: MNIST's anti-aliasing.
    # Enlarging: bilinear interpolation (BOX would give blocky nearest-neighbour pixels).
    # Both are non-negative filters, so no ringing halos appear around strokes.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    image = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32))
    return np.clip(np.asarray(image.resize(size, resample), dtype=np.float32), 0.0, 1.0)


def _normalise_strokes(ink: np.ndarray) -> np.ndarray:
    """Return ``ink`` unchanged if its strokes are MNIST-like, else redrawn with MNIST-like ones.

    A pen digit photographed on paper has hairline strokes once shrunk to 20 pixels, a marker digit
    on a small canvas has blobs; an MNIST network reads both badly. The stroke width is measured
    at 4x the 20-pixel scale (as 2 x ink area / outline length, exact for a long stroke). Outside
    the range MNIST's own digits span, the stroke mask is grown or worn away one pixel at a time
    until its width is nearest the target (1.85 px for hairlines, 2.6 px for blobs). MNIST digits
    themselves are nearly all untouched.
    """
    work = _fit_box(ink, DIGIT_BOX * _STROKE_WORK_SCALE)
    mask = work >= _STROKE_MASK_LEVEL * work.max()
    width = 2.0 * float(work.sum()) / _outline_length(mask) / _STROKE_WORK_SCALE
    low, high = _STROKE_WIDTH_RANGE
    if low <= width <= high:
        return ink

    grow = width < low
    target = _STROKE_WIDTH_TARGET if grow else _STROKE_THICK_TARGET
    if grow:
        mask = np.pad(mask, _STROKE_MAX_STEPS)  # room for the strokes to grow outward
    original = mask
    for step in range(_STROKE_MAX_STEPS):
        candidate = _morph_step(mask, step, grow)
        if not grow and not _keeps_every_part(original, candidate, step + 1):
            break  # a thinner part of the digit would vanish: stop here
        new_width = _mask_width(candidate)
        if abs(new_width - target) >= abs(width - target):
            break  # the previous step was the closest to MNIST's width
        mask, width = candidate, new_width
    return _crop(mask.astype(np.float32), mask)


def _mask_width(mask: np.ndarray) -> float:
    """Mean stroke width of a boolean mask at the 20-pixel scale: 2 x area / outline length."""
    outline = _outline_length(mask)
    return 2.0 * np.count_nonzero(mask) / outline / _STROKE_WORK_SCALE if outline else 0.0


def _outline_length(mask: np.ndarray) -> int:
    """Number of pixel edges between ink and paper (the mask's outline, paper all around)."""
    padded = np.pad(mask, 1)
    return int(
        np.count_nonzero(padded[1:] != padded[:-1])
        + np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    )


def _keeps_every_part(original: np.ndarray, eroded: np.ndarray, steps: int) -> bool:
    """Whether ``eroded`` still has a core in every part of ``original``, not just the thick ones.

    Growing the eroded mask back by the same amount (a morphological opening) covers a uniformly
    thick digit almost entirely; a thin tail that erosion wiped out stays uncovered.
    """
    if not eroded.any():
        return False
    opened = eroded
    for step in range(steps):
        opened = _morph_step(opened, step, grow=True)
    covered = np.count_nonzero(opened & original)
    return covered >= _STROKE_MIN_COVERAGE * np.count_nonzero(original)


def _morph_step(mask: np.ndarray, step: int, grow: bool) -> np.ndarray:
    """Dilate (``grow``) or erode a boolean mask by one pixel.

    Even steps use a 3x3 cross, odd steps a 3x3 square: alternating them grows an octagon, much
    closer to a round brush than squares alone.
    """
    combine = np.logical_or if grow else np.logical_and
    height, width = mask.shape
    padded = np.pad(mask, 1)  # outside the image is paper
    result = mask.copy()
    for dy, dx in _CROSS if step % 2 == 0 else _SQUARE:
        combine(result, padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width], out=result)
    return result


_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))
_SQUARE = (*_CROSS, (-1, -1), (-1, 1), (1, -1), (1, 1))


def _paste_centred(digit: np.ndarray) -> np.ndarray:
    """Paste ``digit`` (at most 20x20) into a 28x28 black image, centred by mass."""
    height, width = digit.shape
    mass = digit.sum()
    centre_row = float((digit.sum(axis=1) * np.arange(height)).sum() / mass)
    centre_col = float((digit.sum(axis=0) * np.arange(width)).sum() / mass)
    # Whole-pixel shift (no resampling blur); stop at the edges so no ink is cut off.
    top = int(np.clip(MASS_CENTRE - np.floor(centre_row + 0.5), 0, MNIST_SIZE - height))
    left = int(np.clip(MASS_CENTRE - np.floor(centre_col + 0.5), 0, MNIST_SIZE - width))
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    out[top : top + height, left : left + width] = digit
    return out
