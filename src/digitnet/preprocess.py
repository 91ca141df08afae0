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

* :func:`load_image` knows about files and pages: decoding, colour modes, transparency, which
  colour is the paper and how the light falls on it, and which marks on the page are the digit
  (not dust, specks, the page's edge or a shadow). Its result is an "ink map": a float array, 0
  where there is no ink, up to 1.
* :func:`to_mnist` knows about MNIST: it turns any ink map into a 28x28 digit, and refuses one
  that holds several marks side by side.

Both raise :class:`~digitnet.errors.ImageError`, with one sentence saying what is wrong and what to
do, rather than guess: for a blank or noisy page, a photo of text, several digits side by side, or
a digit cut off by the image's edge.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

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

#: Images whose longer side is above this are reduced by a whole factor so that it is at most
#: this; JPEGs are decoded at 1/2, 1/4 or 1/8 scale, keeping at least half of it, which is several
#: times faster than decoding them whole. A digit that fills a tenth of a photo is then still 50
#: to 100 pixels tall: plenty for a 20x20 box.
WORK_SIDE = 1000

# --- the paper and its lighting (see _ink_contrast) ---
_SMALL_SIDE = 64  # the background is estimated on a copy at most this large
_MEDIUM_SIDE = 256  # the ink's side, colour and place are first found on a copy at most this large
_BACKGROUND_WINDOW = 0.5  # window of the first grey closing/opening: this much of the shorter side
_NARROW_WINDOW = 4.0  # window of the second: this many stroke widths (no wider than the first)
_DARK_SHARE = 0.7  # the digit's ink is at least this dark relative to the darkest mark's
_LOCAL_SIDE = 16  # the ink's side is also judged against a neighbourhood this fraction of the image
_WEAK_SKEW = 0.25  # a channel whose ink is this much less clear than the clearest follows it
_PAPER_FLOOR = 0.1  # contrast is relative to the paper's level, never to less than this
_PAPER_SHARE = 0.5  # the second pass takes as paper what is under this share of the ink's level
_REFINE_SIGMA = 1 / 32  # ... smoothed over this fraction of the image's longer side
_REFINE_FALLBACK = 1e-3  # ... falling back to the first pass where paper is this scarce

# --- telling ink from paper (see _page_ink) ---
_NOISE_SIGMAS = 3.0  # ink weaker than this many noise deviations is paper
_LOW_FLOOR = 0.01  # ... and so is any ink weaker than this (clean images have no noise)
_SOFT_FLOOR = 0.1  # ... and ink under this share of Otsu's threshold (soft edges start there)
_MARK_SHARE = 0.5  # marks are outlined at this share of Otsu's threshold
_SOFT_REACH = (2, 12)  # their soft edges are kept this far (pixels, half a stroke's width)
_MIN_SNR = 8.0  # a digit's strokes are at least this many noise deviations above the paper
_HUG_FRACTION = 0.4  # a mark along this much of a side of the image, solid ...
_SOLID_FILL = 0.8  # ... (filling this much of its bounding box) ...
_LINE_ASPECT = 4.0  # ... or this long and thin, is the page's edge, the desk or a shadow ...
_LINE_LENGTH = 0.6  # ... and so is a long thin mark across this much of the image (a ruled line)
_LINE_LONGER = 1.5  # ... and this many times as long as any other mark (a 1 is no longer than a 7)
_TOUCH = 0.1  # ... unless it comes this close to the digit (a fraction of the image's size)
_SPECK_MASS = 0.1  # marks under this fraction of the digit's ink ...
_NEAR = 0.15  # ... farther from it than this fraction of its size are specks
_TEXT_MARKS = 5  # this many large marks spread over the page are text, not a digit
_MIN_DIGIT_SIDE = 0.03  # a digit is at least this fraction of the image's longer side
_MIN_DIGIT_PIXELS = 12  # ... and has at least this many strong pixels
_MAX_COVER = 0.5  # ... and covers at most this fraction of the image unless its strokes are
_TEXTURE_WIDTH = 0.05  # ... at least this wide for its size (noise is a web of thin threads)
_CUT_CONTACT = 0.7  # a stroke this wide (in stroke widths) along an edge runs out of the image
_CUT_EXTENT = 0.8  # ... unless the digit fills this fraction of the image across that edge
_CUT_CENTRE = 0.35  # ... or its centre of mass is farther than this fraction from that edge

# --- one digit, not several (see _check_one_mark) ---
_MARK_LEVEL = 0.3  # ink this strong (of the stretched ink) draws a mark's outline
_MARK_MIN_MASS = 0.03  # marks lighter than this fraction of the ink are ignored
_MARK_GAP = 0.1  # columns of ink farther apart than this fraction of the height are separate
_MARK_MASS = 0.2  # a separate mark holds at least this fraction of the ink ...
_MARK_HEIGHT = 0.5  # ... and is at least this fraction of the ink's height

# Stroke-width normalisation (see _normalise_strokes). A stroke's width is measured at 4x the
# 20x20 scale with the Euclidean distance transform (see _stroke_width), in pixels of the 20x20
# box. Over 3,000 MNIST test digits: 1st percentile 1.9, 2.5th 2.05, median 3.07, 96th 4.64,
# 99th 5.66. Measured with an MLP trained on MNIST and 600 test digits redrawn 5x larger with
# thinner or thicker strokes, blobs read best worn down to about MNIST's median (thick strokes:
# 93% against 92% when worn down only to its 85th percentile).
_STROKE_WIDTH_RANGE = (2.05, 4.6)  # left alone inside this range (2.5th to 96th percentile)
_STROKE_WIDTH_TARGET = 3.0  # hairlines are grown to this
_STROKE_THICK_TARGET = 3.1  # blobs are worn down to this
_STROKE_WORK_SCALE = 4  # measure and redraw at 80x80, so widths move in quarter pixels
_STROKE_MASK_LEVEL = 0.25  # ink this strong (relative to the strongest) belongs to a stroke
_STROKE_MIN_COVERAGE = 0.97  # thinning stops before any part holding 3% of the ink would vanish

#: Anything :func:`load_image` accepts: a path, the bytes of a file, or a binary file object.
ImageSource = Union[str, "os.PathLike[str]", bytes, BinaryIO]

# Exceptions Pillow raises while decoding damaged or hostile files. Catching them turns a bad upload
# into a clear ImageError; anything else is a bug and propagates.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)

_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def load_image(path_or_file: ImageSource) -> np.ndarray:
    """Decode an image and return its ink map: where the digit was drawn, and how strongly.

    1. Decode: any mode, transparency composited onto the paper, EXIF rotation applied. Images
       larger than :data:`WORK_SIDE` on their longer side are reduced by a whole factor (JPEGs while
       decoding).
    2. Which way the ink goes, per colour channel: darker or lighter than the paper. Ink is the
       minority of the page and lies far to one side of the paper, so the skewness of the pixels
       about the paper's level (fitted to the image's border, light and vignette included) and
       about their neighbourhood tells (:func:`_ink_sides`).
    3. Paper and light: the paper's level is estimated at every pixel, so uneven light, shadows,
       vignettes and grey or coloured paper all become an even background. First a grey closing
       (dark ink; an opening for light ink) of a 64-pixel copy with a window half its shorter side,
       wider than any stroke; then, once the strokes' width is known, a closing a few strokes
       wide (a shadow wider than that is paper), held down to the paper actually seen around each
       pixel (:func:`_ink_contrast`). Each channel's ink is its contrast with the paper, relative
       to the paper's level (so that light cancels out); the channels are combined along the
       colour the ink takes, so blue pen on cream paper, red on blue, pencil on grey and white
       chalk on black all become high ink on a zero background.
    4. Threshold (:func:`_page_ink`): the paper's noise is measured on the pixels on the paper's
       side of its level; ink fainter than 3 noise deviations is paper. Marks are outlined at half
       a threshold chosen by Otsu's method and must reach it; their soft edges (grey levels down
       to the noise) are kept, so anti-aliased strokes stay soft as in MNIST.
    5. Marks (:func:`_digit_marks`): connected marks are found (8-connectivity). Solid or long
       thin marks along the image's border (the page's edge, the desk, a shadow) and ruled lines
       across the page are dropped; small marks far from the digit are dust and specks; marks
       near it are kept: they are its broken strokes. A page with no digit-like mark (noise, specks,
       many marks like text) and a digit running off one edge (:func:`_check_whole`) are refused.

    Parameters
    ----------
    path_or_file : str, os.PathLike, bytes or binary file object
        The image: a path, the file's bytes, or an open binary file. Any format Pillow reads
        (PNG, JPEG, BMP, GIF, TIFF, WebP, ...) and any mode (1, L, LA, P, RGB, RGBA, CMYK, I;16,
        I, F). Multi-frame images use their first frame; EXIF rotation is applied.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (height, width) (the image's size, or reduced to at most
        :data:`WORK_SIDE` on the longer side) with values in [0, 1]: 0 for paper, high for ink.

    Raises
    ------
    ImageError
        If the file does not exist, is not an image, is damaged, or has more than
        :data:`MAX_IMAGE_PIXELS` pixels (checked from the header, before decoding); if it is blank or
        holds no digit-like mark (only noise or specks, or many marks like text); or if the digit
        runs off the image's edge.
    """
    name, fp = _open_source(path_or_file)
    try:
        # Image.open reads only the header, so the size check below runs before any decoding.
        image = Image.open(fp)
    except FileNotFoundError:
        raise ImageError(f"Image file {name} does not exist; check the path.") from None
    except IsADirectoryError:
        raise ImageError(f"{name} is a directory, not an image file; give the path of a PNG or JPEG file.") from None
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
            f"Image file {name} cannot be read ({error.strerror or error}); check the path and its permissions."
        ) from None

    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageError(_too_large_message(name, width, height))
        if width == 0 or height == 0:
            raise ImageError(f"{name} is an empty ({width}x{height}) image; draw or photograph a digit and try again.")
        try:
            if image.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT, keeping at least half of
                # WORK_SIDE: a 12-megapixel photo decodes in a fraction of the time.
                scale = 8
                while scale > 1 and max(width, height) // scale < WORK_SIDE // 2:
                    scale //= 2
                if scale > 1:
                    image.draft(None, (width // scale, height // scale))
            image.load()
            upright = ImageOps.exif_transpose(image)  # phone photos are often stored sideways
            colour, alpha = _decode_pixels(upright)
        except Image.DecompressionBombError:
            raise ImageError(_too_large_message(name, width, height)) from None
        except _DECODE_ERRORS as error:
            raise ImageError(
                f"{name} is damaged or truncated and could not be decoded ({error}); save the image again and retry."
            ) from None
    return _page_ink(_ink_contrast(colour, alpha), name)


def to_mnist(ink: np.ndarray) -> np.ndarray:
    """Make an MNIST-style 28x28 digit from an ink map, the way MNIST itself was made.

    1. Crop to the bounding box of the ink, ignoring pixels under a tenth of the strongest, and
       scale so the ink is 1 where strongest (its 95th percentile, so a single blot does not dim
       the rest).
    2. One digit: if the ink holds separate marks side by side (two digits, a number), refuse.
    3. Stroke width: if the strokes, seen at the 20x20 scale, are hairlines or blobs (outside
       the range MNIST's own digits span), redraw them MNIST-like. MNIST's own digits are nearly
       all in that range and untouched.
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
        values outside [0, 1] (NaN and infinity included), holds no ink, or holds several separate
        marks side by side.
    """
    return _to_mnist(ink, "The drawing")


def preprocess_file(path: ImageSource) -> np.ndarray:
    """Read an image file and return the MNIST-like 28x28 digit in it.

    This is :func:`load_image` followed by :func:`to_mnist`, exactly as the web page does it.

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
        If the file cannot be read as an image, is too large, or does not show one whole digit.
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
        If the file cannot be read as an image, is too large, or does not show one whole digit.
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
        raise _blank(name, peak)
    strong = ink >= NOISE_FLOOR * peak
    # Crop to the ink first: faint pixels (JPEG ringing, noise) do not widen the crop; inside it
    # all grey levels are kept, so the centre of mass is the one MNIST computed.
    ink = _crop(ink, strong)
    # Scale by the strong ink's 95th percentile, not its maximum, so that one blot or hot pixel
    # does not leave the rest of the digit faint; the few brighter pixels are clipped to 1.
    level = np.float32(_percentile(ink[ink >= NOISE_FLOOR * peak], CONTRAST_PERCENTILE))
    ink = np.minimum(ink / level, 1.0)

    # 2. One digit, not a number.
    _check_one_mark(ink, name)

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
    raise TypeError(f"load_image needs a path, bytes or a binary file object, not {type(source).__name__}")


def _too_large_message(name: str, width: int | None = None, height: int | None = None) -> str:
    size = f" ({width}x{height} pixels)" if width is not None else ""
    return (
        f"{name} is too large{size}: the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels; "
        "scale the image down and try again."
    )


def _reduction(width: int, height: int) -> int:
    """The whole factor that brings the longer side to at most :data:`WORK_SIDE`."""
    return max(1, -(-max(width, height) // WORK_SIDE))


def _reduced(image: Image.Image) -> Image.Image:
    """``image`` reduced by area averaging to at most :data:`WORK_SIDE` on its longer side."""
    factor = _reduction(*image.size)
    return image.reduce(factor) if factor > 1 else image


def _decode_pixels(image: Image.Image) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Return the colour channels (1 grey or 3 RGB) and the alpha channel (or None).

    Each is a contiguous float32 (H, W) array in [0, 1]; one array per channel keeps the later
    arithmetic fast and memory-light for photo-sized images. Large images are reduced first.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        grey = _reduced(image.convert("I"))
        return [np.asarray(grey, dtype=np.float32) / np.float32(65535)], None
    if mode in ("I", "F"):
        # 32-bit integer or float pixels have no fixed white level: stretch to [0, 1].
        values = np.nan_to_num(np.asarray(_reduced(image), dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = values.min(), values.max()
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
        return [values.astype(np.float32)], None

    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        *colour, alpha = (_channel(band) for band in _reduced(image.convert("RGBA")).split())
        return colour, alpha
    if mode in ("1", "L") or (mode == "P" and _palette_is_grey(image)):
        return [_channel(_reduced(image.convert("L")))], None
    return [_channel(band) for band in _reduced(image.convert("RGB")).split()], None


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


def _composite(colour: list[np.ndarray], alpha: np.ndarray | None) -> None:
    """Put transparent pixels (in place) on the paper they stand for."""
    if alpha is None or alpha.min() >= 1.0:
        return
    border_alpha = _border(alpha)
    if _median(border_alpha) >= 0.5:
        # Opaque paper with transparent holes: the holes are paper too.
        opaque = border_alpha >= 0.5
        paper = [float(_median(_border(channel)[opaque])) for channel in colour]
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


# --- paper, light and ink -------------------------------------------------------------------


def _ink_contrast(colour: list[np.ndarray], alpha: np.ndarray | None) -> np.ndarray:
    """Each pixel's contrast with the paper behind it, along the ink's colour: paper 0, ink > 0.

    Two passes. First, on a copy at most 256 pixels large: which way each channel's ink goes
    (:func:`_ink_sides`), the paper's level from a grey closing or opening of a 64-pixel copy
    with a wide window (:func:`_envelope`), the ink's colour (:func:`_ink_direction`), where the
    ink is and how wide its strokes are (:func:`_ink_width`). Then the paper's level again, more
    closely: a closing or opening with a window a few strokes wide (so that a shadow or a smudge
    wider than that is paper), and no higher than the paper seen around each pixel
    (:func:`_refined_paper`); and each pixel's contrast with it, at full size.
    """
    _composite(colour, alpha)
    medium = [_shrink(channel, _MEDIUM_SIDE) for channel in colour]
    smalls = [_shrink(channel, _SMALL_SIDE) for channel in medium]
    lights = [_light_fit(small) for small in smalls]
    darks = _ink_sides(medium, lights)
    wide = max(1, round(_BACKGROUND_WINDOW * min(smalls[0].shape)))
    papers = [_envelope(small, dark, wide, light) for small, dark, light in zip(smalls, darks, lights, strict=True)]
    contrasts = _contrasts(medium, papers, darks)
    direction = _ink_direction(contrasts)
    first = _along(contrasts, direction)

    level, sigma, strong_level = _levels(first)
    if strong_level > level:
        stroke = _ink_width(first - np.float32(level), strong_level - level)
        if stroke is not None:
            scale = smalls[0].shape[1] / medium[0].shape[1]
            window = int(np.clip(round(_NARROW_WINDOW * stroke * scale), 3, wide))
            if window < wide:
                narrow = [
                    _envelope(small, dark, window, light)
                    for small, dark, light in zip(smalls, darks, lights, strict=True)
                ]
                if not all(np.array_equal(old, new) for old, new in zip(papers, narrow, strict=True)):
                    # (On even paper both windows often give the same paper: nothing changes.)
                    papers = narrow
                    first = _along(_contrasts(medium, papers, darks), direction)
                    level, sigma, strong_level = _levels(first)
        # The paper so far: the blocks of the small copy that hold no pixel above half the ink's
        # threshold.
        inked = first > level + max(_NOISE_SIGMAS * sigma, _PAPER_SHARE * (strong_level - level))
        small_size = smalls[0].shape[::-1]
        on_paper = _resize(inked.astype(np.float32), small_size, Image.Resampling.BOX) == 0
        papers = [
            _refined_paper(small, on_paper.astype(np.float32), paper, dark)
            for small, paper, dark in zip(smalls, papers, darks, strict=True)
        ]
    return _along(_contrasts(colour, papers, darks), direction)


def _ink_width(contrast: np.ndarray, strong_level: float) -> float | None:
    """The stroke width (pixels) of the main ink on a first-pass contrast map, if it has any.

    The marks (outlined at half the ink's threshold) that are digit-sized; of those whose ink is
    nearly as dark as the darkest's, the one with the most ink: that is the digit, not a shadow.
    """
    marked = contrast >= _MARK_SHARE * strong_level
    labels, count = ndimage.label(marked, structure=_EIGHT_NEIGHBOURS)
    if count == 0:
        return None
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1)
    mass = np.bincount(flat, weights=contrast.ravel(), minlength=count + 1)
    strong = np.bincount(flat[(contrast >= strong_level).ravel()], minlength=count + 1)
    boxes = ndimage.find_objects(labels)
    smallest = max(3, _MIN_DIGIT_SIDE * max(contrast.shape))
    marks = [
        mark
        for mark in range(1, count + 1)
        if strong[mark] >= _MIN_DIGIT_PIXELS
        and max(extent.stop - extent.start for extent in boxes[mark - 1]) >= smallest
    ]
    if not marks:
        return None
    darkness = {mark: mass[mark] / area[mark] for mark in marks}
    darkest = max(darkness.values())
    main = max((mark for mark in marks if darkness[mark] >= _DARK_SHARE * darkest), key=lambda mark: mass[mark])
    return _bar_width(labels[boxes[main - 1]] == main)


def _shrink(channel: np.ndarray, side: int) -> np.ndarray:
    """A copy of ``channel`` at most ``side`` pixels on its longer side, by area averaging."""
    height, width = channel.shape
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return channel if size == (width, height) else _resize(channel, size, Image.Resampling.BOX)


def _contrasts(colour: list[np.ndarray], papers: list[np.ndarray], darks: list[bool]) -> list[np.ndarray]:
    """Each channel's contrast with its paper (enlarged to the channel's size): ink positive."""
    shape = colour[0].shape
    contrasts = []
    for channel, paper, dark in zip(colour, papers, darks, strict=True):
        if paper.shape != shape:
            paper = _resize(paper, shape[::-1], Image.Resampling.BILINEAR)
        else:
            paper = paper.copy()
        if dark:  # the fraction of the paper's light the ink takes away: lighting cancels out
            contrast = paper - channel
            contrast /= np.maximum(paper, np.float32(_PAPER_FLOOR), out=paper)
        else:
            contrast = channel - paper
            np.subtract(1, paper, out=paper)
            contrast /= np.maximum(paper, np.float32(_PAPER_FLOOR), out=paper)
        contrasts.append(contrast)
    return contrasts


def _ink_direction(contrasts: list[np.ndarray]) -> np.ndarray:
    """The ink's colour: weights of the channels' contrasts, summing to 1.

    The principal axis of the contrast vectors, weighted by their squared length so that ink, not
    paper noise, decides it. Every channel's contrast is already signed so that ink is positive
    (darker or lighter than the paper, whichever its ink is). Ink of the same contrast in every
    channel scores that contrast.
    """
    if len(contrasts) == 1:
        return np.ones(1)
    weight = sum(c * c for c in contrasts)
    moments = np.empty((len(contrasts), len(contrasts)))
    for i, first in enumerate(contrasts):
        weighted = first * weight
        for j in range(i, len(contrasts)):
            moments[i, j] = moments[j, i] = float(np.vdot(weighted, contrasts[j]))
    direction = np.linalg.eigh(moments)[1][:, -1]
    if direction.sum() < 0:
        direction = -direction
    total = float(direction.sum())
    if total < 1e-6:  # no ink in any channel: plain average
        return np.full(len(contrasts), 1 / len(contrasts))
    return direction / total


def _along(contrasts: list[np.ndarray], direction: np.ndarray) -> np.ndarray:
    """The contrasts combined with the weights ``direction``."""
    if len(contrasts) == 1:
        return contrasts[0]
    ink = contrasts[0] * np.float32(direction[0])
    for share, contrast in zip(direction[1:], contrasts[1:], strict=True):
        ink += np.float32(share) * contrast
    return ink


def _envelope(small: np.ndarray, dark_ink: bool, window: int, light: tuple[np.ndarray, float, float]) -> np.ndarray:
    """The paper's level on a small copy: a grey closing (dark ink) or opening (light ink).

    The closing (maximum then minimum filter) removes every dark feature narrower than its
    window and keeps everything else: linear gradients, vignettes (bright in the middle) and
    shadows wider than the window are kept exactly. It never lies below the image.
    """
    # Beyond its edges the page is continued with the light fitted to its border: light falling
    # off towards a corner goes on falling, and a stroke running along the edge is not continued
    # (it stays a narrow feature, which the closing removes).
    padded = _light_surface(light, small.shape, window)
    padded[window:-window, window:-window] = small
    if dark_ink:
        paper = ndimage.grey_closing(padded, size=(window, window), mode="nearest")
    else:
        paper = ndimage.grey_opening(padded, size=(window, window), mode="nearest")
    return np.ascontiguousarray(paper[window:-window, window:-window])


def _refined_paper(small: np.ndarray, on_paper: np.ndarray, envelope: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The paper's level from the paper around each pixel (normalised Gaussian smoothing).

    Where the first pass saw paper, this follows the paper closely (at the scale of a few pixels
    of the small copy): the rim of a shadow, light falling off towards the edges. Under the ink it
    is filled in from the paper around it; far inside large inked areas, where there is no paper
    near, it falls back to the envelope. It never goes past the envelope, which the image never
    passes (a closing lies above the image, an opening below), so that a dark band along the
    border (the desk beyond the page) stays paper rather than being half blended into it.
    """
    sigma = _REFINE_SIGMA * max(small.shape)
    weight = ndimage.gaussian_filter(on_paper, sigma, mode="nearest")
    total = ndimage.gaussian_filter(small * on_paper, sigma, mode="nearest")
    fallback = np.float32(_REFINE_FALLBACK)
    refined = (total + fallback * envelope) / (weight + fallback)
    return np.minimum(refined, envelope) if dark_ink else np.maximum(refined, envelope)


def _levels(contrast: np.ndarray) -> tuple[float, float, float]:
    """The paper's level, its noise (standard deviation) and Otsu's threshold for the ink.

    Measured on a sample of at most about 65,000 pixels (every n-th row and column).
    """
    contrast = _sample(contrast)
    level = _paper_level(contrast)
    below = contrast[contrast < level]
    sigma = 1.4826 * float(_median(level - below)) if below.size else 0.0
    candidates = contrast[contrast > level + max(_NOISE_SIGMAS * sigma, _LOW_FLOOR)]
    if candidates.size == 0:
        return level, sigma, level
    return level, sigma, _otsu(candidates)


def _sample(array: np.ndarray, size: int = 65_536) -> np.ndarray:
    """Every n-th row and column of ``array``, n chosen to leave at most about ``size`` pixels."""
    step = max(1, math.ceil(math.sqrt(array.size / size)))
    return array[::step, ::step]


def _ink_sides(mediums: list[np.ndarray], lights: list) -> list[bool]:
    """For each channel, whether its ink is darker than the paper (else lighter).

    Two views of the same fact, that ink is the minority of the page and lies far to one side of
    the paper, each measured as a skewness (third moment over the cubed standard deviation):

    * globally (:func:`_global_skew`): the pixels about the paper's most common level, once the
      light's large-scale variation is taken out; this reads dense ink (a bold digit filling a
      tight crop) right;
    * locally (:func:`_local_skew`): the pixels about their neighbourhood's mean (1/16 of the
      image); this reads thin ink on a page with shadows right.

    Their sum has the ink's sign. A channel in which the ink hardly differs from the paper (blue
    ink in the blue channel) follows the channel in which it differs most.
    """
    scores = [_global_skew(medium, light) + _local_skew(medium) for medium, light in zip(mediums, lights, strict=True)]
    strongest = max(scores, key=abs)
    return [(score if abs(score) >= _WEAK_SKEW * abs(strongest) else strongest) <= 0.0 for score in scores]


def _skewness(deviation: np.ndarray) -> float:
    """Third moment over the cubed standard deviation (both about 0), clipped to [-4, 4]."""
    deviation = deviation.astype(np.float64)
    square = deviation * deviation
    spread = float(square.mean())
    if spread < 1e-12:
        return 0.0
    return float(np.clip(float((square * deviation).mean()) / spread**1.5, -4.0, 4.0))


def _local_skew(channel: np.ndarray) -> float:
    """Skewness of ``channel`` about the mean of its neighbourhood (1/16 of the image)."""
    coarse = _shrink(channel, _LOCAL_SIDE)
    if coarse.shape == channel.shape:
        return 0.0
    return _skewness(channel - _resize(coarse, channel.shape[::-1], Image.Resampling.BILINEAR))


def _global_skew(channel: np.ndarray, light: tuple[np.ndarray, float, float]) -> float:
    """Skewness of ``channel`` about the paper's level fitted to its border (:func:`_light_fit`).

    Measured about the paper (not about the mean), it has the ink's sign even where the ink
    covers half of the image.
    """
    sample = _sample(channel)
    return _skewness(sample - _light_surface(light, sample.shape, 0))


def _light_fit(small: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The light on the paper: a quadratic surface (gradient, vignette) fitted to the border.

    The border is paper but for the odd stroke: the fit is robust, starting from the border's
    median and refitted three times to the pixels within three deviations of the fit; an even
    border (a scan, a generated image) is its level. Returns the six coefficients (in coordinates
    from -1 to 1 across the image) and the lowest and highest level the surface takes on the border.
    """
    rows, cols = small.shape
    if min(rows, cols) < 3:
        level = float(_median(small))
        return np.array([level, 0, 0, 0, 0, 0]), level, level
    on_border, design = _border_design(rows, cols)
    values = small[on_border].astype(np.float64)
    if values.min() == values.max():
        # Even paper (a scan, a generated image): the fit is that level. Fitting it would give the
        # same up to rounding, far below float32's precision, in which the surface is used.
        level = float(values[0])
        return np.array([level, 0, 0, 0, 0, 0]), level, level
    c = np.array([_median(values), 0, 0, 0, 0, 0])
    for _ in range(3):
        misfit = np.abs(design @ c - values)
        use = misfit <= max(3 * 1.4826 * float(_median(misfit)), 0.01)
        c = np.linalg.lstsq(design[use], values[use], rcond=None)[0]
    fitted = design @ c
    return c, float(fitted.min()), float(fitted.max())


@functools.lru_cache(maxsize=16)
def _border_design(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The border of a ``rows`` x ``cols`` image (a mask) and the quadratic fit's design matrix on it."""
    y, x = np.mgrid[0:rows, 0:cols]
    on_border = np.zeros((rows, cols), dtype=bool)
    on_border[[0, -1], :] = True
    on_border[:, [0, -1]] = True
    y = y[on_border] / (rows - 1) * 2.0 - 1.0
    x = x[on_border] / (cols - 1) * 2.0 - 1.0
    design = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)
    on_border.flags.writeable = False
    design.flags.writeable = False
    return on_border, design


def _light_surface(light: tuple[np.ndarray, float, float], shape: tuple[int, int], margin: int) -> np.ndarray:
    """The fitted light on a ``shape`` grid spanning the image, extended by ``margin`` cells.

    Beyond the image it is held within the levels it takes on the border, so that a quadratic
    never runs away.
    """
    c, low, high = light
    rows, cols = shape
    if not c[1:].any():  # even light: the surface is its level (exactly what the formula gives)
        return np.full((rows + 2 * margin, cols + 2 * margin), c[0], dtype=np.float32)
    y = (np.arange(-margin, rows + margin) / max(rows - 1, 1) * 2.0 - 1.0)[:, np.newaxis]
    x = (np.arange(-margin, cols + margin) / max(cols - 1, 1) * 2.0 - 1.0)[np.newaxis, :]
    surface = c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * y * y + c[5] * x * y
    if margin:
        surface = np.clip(surface, low, high)
    return surface.astype(np.float32)


def _resize(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize a float32 (H, W) array to ``size`` = (width, height) with Pillow."""
    if size == array.shape[::-1]:
        return np.array(array, dtype=np.float32)  # what Pillow gives for its own size: a copy
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32))
    return np.array(image.resize(size, resample), dtype=np.float32)  # a writable copy


def _page_ink(contrast: np.ndarray, name: str) -> np.ndarray:
    """Threshold a contrast map, keep the digit's marks, refuse pages without one whole digit."""
    # The paper's contrast is 0 give or take its noise (and a small bias of the background estimate
    # on a noisy image): its level is the most common one, its noise is measured on the pixels
    # below it, which are paper alone since ink only adds contrast.
    level, sigma, strong_level = _levels(contrast)
    contrast = contrast - np.float32(level)
    strong_level -= level
    floor = max(_NOISE_SIGMAS * sigma, _LOW_FLOOR)  # the paper's noise reaches this far
    low = max(floor, _SOFT_FLOOR * strong_level)  # fainter than this is not ink
    peak = float(contrast.max())
    if peak < BLANK_THRESHOLD:
        raise _blank(name, max(peak, 0.0))
    if strong_level <= low:
        raise _no_digit(name, "only noise")
    sample = _sample(contrast)
    strength = float(_median(sample[sample >= strong_level]))
    if strength < _MIN_SNR * sigma:
        raise _no_digit(name, "only noise")

    # Marks are drawn at half the ink's threshold, so that the faint rim of a shadow or a lighting
    # residue does not join them; their soft edges (down to ``low``) are kept.
    marked = contrast >= _MARK_SHARE * strong_level
    strong = contrast >= strong_level
    labels, count = ndimage.label(marked, structure=_EIGHT_NEIGHBOURS)
    flat = labels.ravel()
    mass = np.bincount(flat, weights=contrast.ravel(), minlength=count + 1)  # label 0: the rest
    strong_pixels = np.bincount(flat[strong.ravel()], minlength=count + 1)
    marks = np.flatnonzero(strong_pixels[1:]) + 1  # label numbers of marks with strong ink
    boxes = ndimage.find_objects(labels)
    keep = _digit_marks(labels, marks, mass, boxes, name)

    # The ink map: the kept marks and their soft edges, worked out around them only.
    height, width = contrast.shape
    margin = _SOFT_REACH[1]
    region = (
        slice(
            max(min(boxes[k - 1][0].start for k in keep) - margin, 0),
            min(max(boxes[k - 1][0].stop for k in keep) + margin, height),
        ),
        slice(
            max(min(boxes[k - 1][1].start for k in keep) - margin, 0),
            min(max(boxes[k - 1][1].stop for k in keep) + margin, width),
        ),
    )
    is_kept = np.zeros(count + 1, dtype=bool)
    is_kept[keep] = True
    kept = is_kept[labels[region]]
    digit = np.zeros(contrast.shape, dtype=bool)
    digit[region] = kept
    _check_whole(digit, name)
    inside = contrast[region]
    level = float(inside[kept].max())
    # Soft edges (blur, anti-aliasing) reach about half a stroke's width beyond the marks. Their
    # grey levels are kept, less the paper's noise.
    reach = int(np.clip(round(_bar_width(kept) / 2), *_SOFT_REACH))
    near = ndimage.maximum_filter(kept, size=2 * reach + 1) & (inside > low)
    ink = np.zeros(contrast.shape, dtype=np.float32)
    scale = np.float32(1 / max(level - floor, 1e-6))
    ink[region] = np.where(near, (inside - np.float32(floor)) * scale, 0)
    return np.clip(ink, 0.0, 1.0, out=ink)


def _paper_level(contrast: np.ndarray) -> float:
    """The paper's contrast level: the most common level among the weakest pixels.

    Searched below the median (the paper is usually most of the page) and in the lowest quarter
    of the range (where it is, even when a bold digit covers more than half of a tight crop).
    """
    ordered = np.sort(contrast, axis=None)
    low, median, high = _percentiles(ordered, (0.5, 50, 99.5))
    top = min(float(median), float(low + 0.25 * (high - low)))
    if top - low < 1e-6:
        return float(top)
    counts, edges = _histogram(ordered, 64, float(low), top)
    peak = int(np.argmax(counts))
    return float((edges[peak] + edges[peak + 1]) / 2)


def _digit_marks(labels: np.ndarray, marks: np.ndarray, mass: np.ndarray, boxes: list, name: str) -> list[int]:
    """The label numbers of the marks that make the digit (see :func:`load_image`)."""
    height, width = labels.shape
    if marks.size == 0:
        raise _no_digit(name, "no mark")
    if marks.size > 50 * _TEXT_MARKS:
        raise _no_digit(name, f"{marks.size} separate marks, like noise or text")

    # The page's edge, the desk beyond it and broad shadows lie along a good part of the image's
    # border, and are solid (they fill most of their bounding box) or long and thin; ruled lines
    # and the page's edge run across most of the image. A digit can touch the border too (a tight
    # crop) but is neither.
    area = np.bincount(labels.ravel(), minlength=mass.size)
    hugging = np.zeros(mass.size, dtype=bool)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        hugging |= np.bincount(side, minlength=mass.size) >= _HUG_FRACTION * side.size

    def size_of(mark: int) -> int:
        return max(extent.stop - extent.start for extent in boxes[mark - 1])

    def is_line(mark: int) -> bool:
        rows, cols = (extent.stop - extent.start for extent in boxes[mark - 1])
        return max(rows, cols) >= _LINE_ASPECT * min(rows, cols)

    # Marks other than lines set the scale a digit has on this page.
    scale = max((size_of(mark) for mark in marks if not is_line(mark)), default=0)

    def clutter(mark: int) -> bool:
        rows, cols = (extent.stop - extent.start for extent in boxes[mark - 1])
        line = is_line(mark)
        if (
            line
            and (rows >= _LINE_LENGTH * height or cols >= _LINE_LENGTH * width)
            and size_of(mark) >= _LINE_LONGER * scale
        ):
            return True  # a ruled line, or the page's edge, across the image and the digit
        return bool(hugging[mark]) and (area[mark] >= _SOLID_FILL * rows * cols or line)

    smallest = max(3, _MIN_DIGIT_SIDE * max(height, width))
    candidates = [mark for mark in marks if not clutter(mark) and size_of(mark) >= 2 * smallest] or list(marks)
    main = max(candidates, key=lambda mark: mass[mark])
    box = boxes[main - 1]
    size = size_of(main)
    if size < smallest:
        raise _no_digit(name, "only specks")
    if area[main] > _MAX_COVER * height * width and (_bar_width(labels[box] == main) < _TEXTURE_WIDTH * size):
        # Covering half the image in threads, not in strokes (a bold digit filling a tight crop).
        raise _no_digit(name, "marks all over it, like noise or a texture")
    if len(candidates) < marks.size:
        # Border clutter that comes close to the digit is part of it (a digit in a tight crop,
        # split in two by the threshold), not the page's edge.
        reach = max(2, round(_TOUCH * max(height, width)))
        region = tuple(slice(max(extent.start - reach, 0), extent.stop + reach) for extent in box)
        around = ndimage.maximum_filter(labels[region] == main, size=2 * reach + 1)
        touching = set(np.unique(labels[region][around]).tolist())
        candidates += [mark for mark in marks if mark in touching and mark not in candidates]

    keep, large = [], []
    for mark in candidates:
        other = boxes[mark - 1]
        if mark == main or mass[mark] >= _SPECK_MASS * mass[main]:
            keep.append(mark)
            large.append(other)
        elif _box_gap(box, other) <= _NEAR * size:
            keep.append(mark)  # a small piece of the digit (a broken stroke)
    if len(large) >= _TEXT_MARKS:
        spread = (
            max(b[0].stop for b in large) - min(b[0].start for b in large),
            max(b[1].stop for b in large) - min(b[1].start for b in large),
        )
        if spread[0] * spread[1] > 4 * size * size:
            raise _no_digit(name, f"{len(large)} separate marks, like text")
    return keep


def _box_gap(first: tuple[slice, slice], second: tuple[slice, slice]) -> int:
    """Pixels between two bounding boxes (0 when they overlap), the larger of the two axes."""
    rows = max(first[0].start - second[0].stop, second[0].start - first[0].stop, 0)
    cols = max(first[1].start - second[1].stop, second[1].start - first[1].stop, 0)
    return max(rows, cols)


def _check_whole(digit: np.ndarray, name: str) -> None:
    """Refuse a digit with a stroke running out of the image across one edge.

    A stroke runs out across an edge when it meets it over most of a stroke's width. That alone is
    not enough: MNIST's own digits, centred by mass, sometimes reach an edge, and a tightly
    cropped scan or a canvas drawn edge to edge touches them all. So the digit must also not touch
    two opposite edges, not fill the image across that edge, and lie mostly near it (its centre of
    mass within 35% of the image from it), as a digit cut off by a photo's frame does.
    """
    height, width = digit.shape
    top, bottom, left, right = (bool(side.any()) for side in (digit[0], digit[-1], digit[:, 0], digit[:, -1]))
    if not (top or bottom or left or right):
        return  # the usual case: the digit is clear of every edge
    if (top and bottom) or (left and right):
        return  # a tight crop, from edge to edge
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    stroke = max(1.0, _bar_width(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]))
    mass_row, mass_col = ndimage.center_of_mass(digit)
    edges = (  # the edge's pixels, the opposite edge's, the digit's extent, its centre's distance
        (digit[0], digit[-1], (rows[-1] - rows[0] + 1) / height, (mass_row + 0.5) / height),
        (digit[-1], digit[0], (rows[-1] - rows[0] + 1) / height, 1 - (mass_row + 0.5) / height),
        (digit[:, 0], digit[:, -1], (cols[-1] - cols[0] + 1) / width, (mass_col + 0.5) / width),
        (digit[:, -1], digit[:, 0], (cols[-1] - cols[0] + 1) / width, 1 - (mass_col + 0.5) / width),
    )
    contact = max(2.0, _CUT_CONTACT * stroke)
    for edge, opposite, extent, centre in edges:
        if (
            np.count_nonzero(edge) >= contact
            and np.count_nonzero(opposite) < contact
            and extent < _CUT_EXTENT
            and centre < _CUT_CENTRE
        ):
            raise ImageError(
                f"{name} shows a digit cut off by the edge of the image; photograph or crop it "
                "with some paper all around the digit and try again."
            )


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the level that best splits ``values`` into two classes."""
    ordered = np.sort(values, axis=None)
    low, high = float(ordered[0]), float(ordered[-1])
    if high - low < 1e-6:
        return low
    counts, edges = _histogram(ordered, bins, low, high)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1].astype(np.float64)
    above = counts.sum() - below
    below_sum = np.cumsum(counts * centres)[:-1]
    valid = (below > 0) & (above > 0)
    mean_below = np.divide(below_sum, below, out=np.zeros_like(below), where=valid)
    mean_above = np.divide(float((counts * centres).sum()) - below_sum, above, out=np.zeros_like(above), where=valid)
    between = np.where(valid, below * above * (mean_below - mean_above) ** 2, -1.0)
    return float(edges[int(np.argmax(between)) + 1])


def _blank(name: str, peak: float) -> ImageError:
    return ImageError(
        f"{name} is blank: no ink found (strongest pixel {peak:.3f}, need {BLANK_THRESHOLD}); "
        "draw or photograph a digit and try again."
    )


def _no_digit(name: str, found: str) -> ImageError:
    return ImageError(
        f"{name} holds no digit-like mark ({found}); write one digit, dark on light or light on dark, and try again."
    )


# --- statistics of small arrays ------------------------------------------------------------
# NumPy's median, percentile and histogram spend most of their time, on the few thousand pixels
# of a small image, in argument handling rather than arithmetic: preparing a folder of 28x28 PNGs
# called them a dozen times per image. These give the very same numbers (same indices, the same
# interpolation in the same precision, the same bin edges and bin membership) from one sort;
# tests/test_preprocess_same_numbers.py checks them against NumPy's.


def _median(values: np.ndarray) -> np.floating:
    """``np.median(values)`` of a float array (the mean of the middle two, in its precision)."""
    ordered = np.sort(values, axis=None)
    count = ordered.size
    if count == 0:
        return np.float64(np.nan)
    middle = count // 2
    if count % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _percentiles(ordered: np.ndarray, percents: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, list(percents))`` (linear method) from the values sorted ascending."""
    count = ordered.size
    result = []
    for percent in percents:
        position = (count - 1) * (percent / 100)
        below = math.floor(position)
        if position >= count - 1:
            result.append(float(ordered[-1]))
            continue
        step = float(ordered[below + 1] - ordered[below])  # in the values' precision, as NumPy takes it
        first, second = float(ordered[below]), float(ordered[below + 1])
        gamma = position - below
        result.append(second - step * (1 - gamma) if gamma >= 0.5 else first + step * gamma)
    return result


def _percentile(values: np.ndarray, percent: float) -> np.floating:
    """``np.percentile(values, percent)`` (linear method, one percent) of a float array, in its precision."""
    ordered = np.sort(values, axis=None)
    count = ordered.size
    position = (count - 1) * (percent / 100)
    below = math.floor(position)
    if position >= count - 1:
        return ordered[-1]
    first, second = ordered[below], ordered[below + 1]
    gamma = position - below
    kind = ordered.dtype.type
    step = second - first
    return second - step * kind(1 - gamma) if gamma >= 0.5 else first + step * kind(gamma)


def _histogram(ordered: np.ndarray, bins: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram(values, bins, range=(low, high))`` from float32 values sorted ascending.

    The edges are NumPy's (evenly spaced from ``low`` to ``high`` in float32); a value counts in
    the bin whose edges enclose it, the last bin including its upper edge, values outside left out.
    """
    edges = np.linspace(low, high, bins + 1, dtype=ordered.dtype)
    exact = ordered.astype(np.float64)  # every comparison below is exact
    bounds = np.searchsorted(exact, edges.astype(np.float64), side="left")
    bounds[-1] = np.searchsorted(exact, float(edges[-1]), side="right")
    return np.diff(bounds), edges


# --- MNIST normalisation --------------------------------------------------------------------


def _validated_ink(ink: np.ndarray) -> np.ndarray:
    """Check an ink map and return it as a fresh float32 array; raise ImageError if unusable."""
    array = np.asarray(ink)
    if array.dtype.kind not in "buif":
        raise ImageError(f"The ink array has dtype {array.dtype}; give numbers between 0 and 1.")
    if array.ndim != 2:
        raise ImageError(f"The ink array has shape {array.shape}; give a 2-D (height, width) array of ink intensities.")
    if array.size == 0:
        raise ImageError(f"The ink array is empty (shape {array.shape}); draw a digit and try again.")
    if array.size > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"The ink array is too large ({array.shape[1]}x{array.shape[0]}): the limit is "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels; scale it down and try again."
        )
    array = array.astype(np.float32)  # always a copy: the caller's array is never modified
    if not np.isfinite(array).all():
        raise ImageError("The ink array contains NaN or infinite values; give numbers between 0 and 1.")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0 + 1e-6:
        raise ImageError(
            f"The ink array holds values from {low:g} to {high:g}; give values between 0 and 1 "
            "(divide 8-bit pixels by 255)."
        )
    return np.minimum(array, 1.0, out=array)


def _check_one_mark(ink: np.ndarray, name: str) -> None:
    """Refuse ink that holds several separate marks side by side (a number, not a digit).

    The marks' columns are projected onto the horizontal axis; runs of columns closer than a
    tenth of the ink's height belong together (the pieces of a broken digit overlap or nearly
    touch). Two or more runs that each hold 20% of the ink and half its height are separate marks.
    """
    labels, count = ndimage.label(ink >= _MARK_LEVEL, structure=_EIGHT_NEIGHBOURS)
    if count < 2:
        return
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)[1:]
    total = float(mass.sum())
    boxes = ndimage.find_objects(labels)
    marks = sorted(
        (box[1].start, box[1].stop, box[0].start, box[0].stop, weight)
        for box, weight in zip(boxes, mass, strict=True)
        if weight >= _MARK_MIN_MASS * total
    )
    if len(marks) < 2:
        return
    top = min(mark[2] for mark in marks)
    height = max(mark[3] for mark in marks) - top
    gap = _MARK_GAP * height
    runs: list[list[float]] = []  # [first column, last column, top, bottom, mass]
    for left, right, upper, lower, weight in marks:
        if runs and left <= runs[-1][1] + gap:
            run = runs[-1]
            run[1], run[2], run[3] = max(run[1], right), min(run[2], upper), max(run[3], lower)
            run[4] += weight
        else:
            runs.append([left, right, upper, lower, weight])
    separate = [run for run in runs if run[4] >= _MARK_MASS * total and run[3] - run[2] >= _MARK_HEIGHT * height]
    if len(separate) >= 2:
        advice = "erase all but one digit" if name == "The drawing" else "crop it to one digit"
        raise ImageError(f"{name} seems to hold {len(separate)} separate marks side by side; {advice} and try again.")


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
    return np.clip(_resize(ink, size, resample), 0.0, 1.0)


def _normalise_strokes(ink: np.ndarray) -> np.ndarray:
    """Return ``ink`` unchanged if its strokes are MNIST-like, else redrawn with MNIST-like ones.

    A pen digit photographed on paper has hairline strokes once shrunk to 20 pixels, a marker digit
    on a small canvas has blobs; an MNIST network reads both badly. The stroke width is measured
    at 4x the 20-pixel scale with the Euclidean distance transform (:func:`_stroke_width`).
    Outside the range MNIST's own digits span, the stroke mask is grown (dilated by a disc) or worn
    down (eroded by a disc) by the radius that brings its width nearest the target; wearing down
    stops short of wiping out any thinner part of the digit (a tail, a crossbar). MNIST digits
    themselves are nearly all untouched.
    """
    work = _fit_box(ink, DIGIT_BOX * _STROKE_WORK_SCALE)
    mask = work >= _STROKE_MASK_LEVEL * work.max()
    if not mask.any():
        return ink
    padded = _padded(mask)
    depth = ndimage.distance_transform_edt(padded)  # distance of stroke pixels to the paper
    width = _ridge_width(depth) / _STROKE_WORK_SCALE
    low, high = _STROKE_WIDTH_RANGE
    if low <= width <= high:
        return ink

    grow = width < low
    target = _STROKE_WIDTH_TARGET if grow else _STROKE_THICK_TARGET
    radii = np.arange(1.0, DIGIT_BOX * _STROKE_WORK_SCALE / 2, 0.5)  # in work pixels
    best = mask
    if grow:
        reach = int(radii[-1]) + 1
        # Distance from each pixel to the nearest stroke pixel (room left all around to grow).
        distance = ndimage.distance_transform_edt(~np.pad(mask, reach))
        for radius in radii:
            candidate = distance <= radius
            new_width = _stroke_width(candidate)
            if abs(new_width - target) < abs(width - target):
                best, width = candidate, new_width
            if new_width >= target:
                break  # wider still would only be farther from MNIST's width
    else:
        need = _STROKE_MIN_COVERAGE * np.count_nonzero(padded)
        for radius in radii:
            candidate = depth > radius
            if not candidate.any():
                break
            # Growing the core back by the same radius (a morphological opening) covers a
            # uniformly thick digit almost entirely; a thin tail that vanished stays uncovered.
            opened = ndimage.distance_transform_edt(~candidate) <= radius
            if np.count_nonzero(opened & padded) < need:
                break  # a thinner part of the digit would vanish: stop here
            # (the candidate lies inside ``padded``'s ring of paper, so it needs no padding of its own)
            new_width = _ridge_width(ndimage.distance_transform_edt(candidate)) / _STROKE_WORK_SCALE
            if abs(new_width - target) < abs(width - target):
                best, width = candidate, new_width
            if new_width <= target:
                break
    if not best.any():
        return ink
    return _crop(best.astype(np.float32), best)


def _stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width of a boolean mask in pixels of the 20x20 box (mask at 4x that scale)."""
    return _bar_width(mask) / _STROKE_WORK_SCALE


def _bar_width(mask: np.ndarray) -> float:
    """Typical stroke width of a boolean mask, in its pixels.

    The distance of each stroke pixel to the paper (Euclidean distance transform) peaks along the
    middle of each stroke at half its width; twice the mean of those ridge values, less one, is
    the width of a straight bar.
    """
    if not mask.any():
        return 0.0
    return _ridge_width(ndimage.distance_transform_edt(_padded(mask)))


def _ridge_width(distance: np.ndarray) -> float:
    """:func:`_bar_width` from the distance transform of a mask with a ring of paper around it."""
    # The ridge: stroke pixels at least as far from the paper as their eight neighbours (the ring
    # of paper around the mask is never on it, so its pixels need no window of their own).
    inner = distance[1:-1, 1:-1]
    across = np.maximum(np.maximum(distance[:-2], distance[1:-1]), distance[2:])
    around = np.maximum(np.maximum(across[:, :-2], across[:, 1:-1]), across[:, 2:])
    ridge = (inner > 0) & (inner >= around)
    return 2.0 * float(inner[ridge].mean()) - 1.0


def _padded(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """``np.pad(mask, width)`` (with False), made directly."""
    out = np.zeros((mask.shape[0] + 2 * width, mask.shape[1] + 2 * width), dtype=mask.dtype)
    out[width:-width, width:-width] = mask
    return out


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
