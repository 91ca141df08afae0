"""Properties of the preprocessing for any image at all: random sizes, modes and contents.

Whatever the file holds, reading it gives either a 28x28 float32 digit with values in [0, 1] or an
:class:`~digitnet.errors.ImageError` with a message, never another exception (and never NaN).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from digitnet.errors import ImageError  # noqa: E402
from digitnet.preprocess import load_image, preprocess_file, to_mnist  # noqa: E402

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
FORMATS = {
    "1": "PNG",
    "L": "PNG",
    "LA": "PNG",
    "P": "PNG",
    "RGB": "PNG",
    "RGBA": "PNG",
    "CMYK": "TIFF",
    "I;16": "TIFF",
    "I": "TIFF",
    "F": "TIFF",
}

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@st.composite
def images(draw) -> Image.Image:
    """A random image: any mode and size, filled with noise, flat colour or random strokes."""
    mode = draw(st.sampled_from(MODES))
    width = draw(st.integers(1, 160))
    height = draw(st.integers(1, 160))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    content = draw(st.sampled_from(["noise", "flat", "strokes", "sparse"]))
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    if content == "noise":
        rgb[:] = rng.integers(0, 256, rgb.shape)
    elif content == "flat":
        rgb[:] = rng.integers(0, 256, 3)
    elif content == "sparse":
        rgb[:] = rng.integers(0, 256, 3)
        mask = rng.random((height, width)) < draw(st.floats(0.0, 0.2))
        rgb[mask] = rng.integers(0, 256, 3)
    else:
        rgb[:] = rng.integers(0, 256, 3)
    image = Image.fromarray(rgb, "RGB")
    if content == "strokes":
        pen = ImageDraw.Draw(image)
        for _ in range(draw(st.integers(1, 6))):
            points = [
                (float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(draw(st.integers(2, 5)))
            ]
            pen.line(
                points,
                fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
                width=draw(st.integers(1, max(1, min(width, height) // 4))),
            )
    if mode == "I;16":
        return Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    if mode == "F":
        values = np.asarray(image.convert("L"), dtype=np.float32)
        if draw(st.booleans()):  # odd float pixels: huge, negative, NaN, infinite
            values = values * draw(st.sampled_from([1e30, -1.0, 1e-30]))
            values[rng.random(values.shape) < 0.05] = draw(st.sampled_from([np.nan, np.inf]))
        return Image.fromarray(values, "F")
    if mode == "RGBA":
        image = image.convert("RGBA")
        alpha = rng.integers(0, 256, (height, width)).astype(np.uint8)
        if draw(st.booleans()):
            alpha[:] = draw(st.sampled_from([0, 255]))
        image.putalpha(Image.fromarray(alpha))
        return image
    return image.convert(mode)


def encoded(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=FORMATS[image.mode])
    return buffer.getvalue()


def assert_digit(digit: np.ndarray) -> None:
    assert digit.shape == (28, 28)
    assert digit.dtype == np.float32
    assert np.isfinite(digit).all()
    assert digit.min() >= 0.0 and digit.max() <= 1.0


@SETTINGS
@given(images())
def test_any_image_file_gives_a_28x28_digit_in_0_1_or_an_image_error(image):
    data = encoded(image)
    try:
        digit = preprocess_file(data)
    except ImageError as error:
        assert str(error)  # a message to show, never an empty one
        return
    assert_digit(digit)


@SETTINGS
@given(images())
def test_load_image_gives_an_ink_map_in_0_1_or_an_image_error(image):
    try:
        ink = load_image(encoded(image))
    except ImageError:
        return
    assert ink.ndim == 2 and ink.dtype == np.float32
    assert np.isfinite(ink).all() and ink.min() >= 0.0 and ink.max() <= 1.0


@SETTINGS
@given(
    st.integers(1, 120),
    st.integers(1, 120),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uniform", "sparse", "binary", "tiny"]),
)
def test_any_ink_array_gives_a_28x28_digit_in_0_1_or_an_image_error(height, width, seed, kind):
    rng = np.random.default_rng(seed)
    ink = rng.random((height, width))
    if kind == "sparse":
        ink = np.where(rng.random((height, width)) < 0.05, ink, 0.0)
    elif kind == "binary":
        ink = (ink < 0.3).astype(np.float64)
    elif kind == "tiny":
        ink = ink * 1e-3
    try:
        digit = to_mnist(ink)
    except ImageError as error:
        assert str(error)
        return
    assert_digit(digit)


@SETTINGS
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_digit_or_an_image_error(data):
    try:
        digit = preprocess_file(data)
    except ImageError:
        return
    assert_digit(digit)
