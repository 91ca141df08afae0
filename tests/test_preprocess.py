"""Tests for digitnet.preprocess: any image in, an MNIST-like 28x28 digit out.

The digits are drawn here with PIL.ImageDraw, and photographed pages (paper, light, shadows, pens,
dust, noise, JPEG) are made here too, so most tests need no files outside the repository; the
false-refusal checks also read MNIST (the ``mnist`` fixture) and scikit-learn's digits.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile, ImageFilter, ImageFont

from digitnet.errors import ImageError
from digitnet.preprocess import (
    MAX_IMAGE_PIXELS,
    load_image,
    preprocess_file,
    preprocess_for_model,
    to_mnist,
)

# A "7" and a "4" as polylines in unit coordinates (x right, y down) of the digit's own box.
SEVEN = [[(0.15, 0.1), (0.85, 0.1), (0.4, 0.95)]]
FOUR = [[(0.6, 0.95), (0.6, 0.05), (0.1, 0.65), (0.85, 0.65)]]


def draw(
    strokes: list[list[tuple[float, float]]] = SEVEN,
    canvas: tuple[int, int] = (200, 200),
    box: tuple[int, int, int] = (50, 20, 160),
    width_ratio: float = 0.1,
    mode: str = "L",
    paper: object = 0,
    ink: object = 255,
) -> Image.Image:
    """Draw a digit into a canvas (width, height): its box has top-left (x, y) and side ``box[2]``.

    ``width_ratio`` is the stroke width as a fraction of the box side (MNIST: about 0.1).
    """
    image = Image.new(mode, canvas, paper)
    pen = ImageDraw.Draw(image)
    x0, y0, side = box
    width = max(1, round(width_ratio * side))
    for stroke in strokes:
        points = [(x0 + x * side, y0 + y * side) for x, y in stroke]
        pen.line(points, fill=ink, width=width, joint="curve")
    return image


def ink_of(image: Image.Image) -> np.ndarray:
    """White-on-black ink in [0, 1] from an "L" image, as the web canvas would send it."""
    return np.asarray(image, dtype=np.float32) / 255


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    """(row, column) of the centre of mass, in pixel indices."""
    index = np.arange(digit.shape[0])
    mass = digit.sum()
    return float(digit.sum(axis=1) @ index / mass), float(digit.sum(axis=0) @ index / mass)


def bounding_box(digit: np.ndarray) -> tuple[int, int]:
    """(height, width) of the box holding every pixel with ink."""
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The seven, drawn large and centred, white on black, through to_mnist."""
    return to_mnist(ink_of(draw()))


# --- the MNIST format ------------------------------------------------------------------------


def test_to_mnist_returns_a_28x28_float32_array_with_values_from_0_to_1(reference):
    assert reference.shape == (28, 28)
    assert reference.dtype == np.float32
    assert reference.min() == 0.0
    assert reference.max() == pytest.approx(1.0)


@pytest.mark.parametrize("strokes", [SEVEN, FOUR], ids=["seven", "four"])
@pytest.mark.parametrize(
    "box",
    [(50, 20, 160), (5, 120, 40), (300, 10, 90)],
    ids=["large", "small", "off-centre"],
)
def test_the_centre_of_mass_lies_within_half_a_pixel_of_pixel_14_14_as_in_mnist(strokes, box):
    digit = to_mnist(ink_of(draw(strokes, canvas=(400, 200), box=box)))
    row, col = centre_of_mass(digit)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((100, 200), (20, 10)),
        ((200, 100), (10, 20)),
        ((300, 300), (20, 20)),
        ((6, 10), (20, 12)),
    ],
    ids=["tall", "wide", "square", "tiny"],
)
def test_the_ink_is_scaled_to_fit_20x20_keeping_its_aspect_ratio(size, expected):
    # A rectangular frame: its bounding box is exact, its strokes are MNIST-wide (a tenth).
    width, height = size
    thickness = max(1, max(size) // 10)
    ink = np.zeros((height + 50, width + 70), dtype=np.float32)
    ink[30 : 30 + height, 40 : 40 + width] = 1.0
    ink[
        30 + thickness : 30 + height - thickness,
        40 + thickness : 40 + width - thickness,
    ] = 0.0
    assert bounding_box(to_mnist(ink)) == expected


def test_a_lopsided_shape_is_neither_cut_off_by_centring_nor_loses_its_thin_part():
    ink = np.zeros((100, 100), dtype=np.float32)
    ink[0:40, 0:100] = 1.0  # heavy bar on top: centring its mass would push it past the bottom
    ink[40:100, 48:52] = 1.0  # thin stem: thinning the heavy bar must not wear it away
    digit = to_mnist(ink)
    assert bounding_box(digit) == (20, 20)
    assert digit[-1].max() > 0  # pushed down as far as it goes, and no further


def test_a_small_off_centre_drawing_and_a_large_centred_one_give_the_same_digit(
    reference,
):
    small = to_mnist(ink_of(draw(canvas=(300, 300), box=(210, 230, 45))))
    assert correlation(small, reference) > 0.9


def test_a_digit_already_made_like_mnist_comes_back_unchanged(reference):
    # MNIST digits fit 20x20 and are centred by mass, so to_mnist must leave them as they are.
    for digit in (reference, to_mnist(ink_of(draw(FOUR)))):
        again = to_mnist(digit)
        assert correlation(again, digit) > 0.99
        assert np.abs(again - digit).max() < 0.05


def test_faint_ink_is_stretched_to_full_strength(reference):
    faint = to_mnist(ink_of(draw()) * 0.3)
    assert faint.max() == pytest.approx(1.0)
    assert np.abs(faint - reference).max() < 1e-5


def test_one_extra_dark_pixel_does_not_make_the_rest_of_the_digit_faint(reference):
    ink = ink_of(draw()) * 0.5
    ink[28, 100] = 1.0  # a blot on the top bar of the seven
    digit = to_mnist(ink)
    assert digit.max() == pytest.approx(1.0)
    assert np.abs(digit - reference).mean() < 0.01


def test_a_faint_speck_far_from_the_digit_does_not_shrink_it(reference):
    ink = ink_of(draw())
    ink[195, 2] = 0.05  # JPEG ringing or dust: below the noise floor
    assert np.abs(to_mnist(ink) - reference).max() < 1e-5


# --- stroke width ------------------------------------------------------------------------------


def stroke_width(digit: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 x area / outline length of the ink above one half."""
    mask = np.pad(digit > 0.5, 1)
    outline = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    return 2 * mask.sum() / outline


@pytest.mark.parametrize("width_ratio", [0.005, 0.3], ids=["hairline", "marker"])
def test_hairline_and_marker_strokes_come_out_about_as_wide_as_mnist_strokes(width_ratio, reference):
    # MNIST strokes are 1.3 to 3.1 pixels wide (5th to 95th percentile of stroke_width); much
    # thinner or thicker ones are misread by a network trained on MNIST, so to_mnist redraws them.
    # Left alone, these would come out about 0.7 and 6 pixels wide.
    digit = to_mnist(ink_of(draw(canvas=(1200, 1200), box=(100, 100, 1000), width_ratio=width_ratio)))
    assert 1.3 < stroke_width(digit) < 3.3
    assert correlation(digit, reference) > 0.75  # left alone: 0.70 and 0.62


def test_thinning_a_marker_digit_does_not_wear_away_its_thinner_strokes():
    def european_seven(crossbar: bool) -> np.ndarray:
        image = draw(canvas=(400, 400), box=(60, 60, 280), width_ratio=0.35)
        if crossbar:
            ImageDraw.Draw(image).line([(120, 200), (300, 200)], fill=255, width=14)
        return to_mnist(ink_of(image))

    assert np.abs(european_seven(True) - european_seven(False)).sum() > 5


def test_strokes_of_ordinary_width_keep_their_grey_levels(reference):
    # An ordinary drawing is only cropped, scaled and moved: redrawing would make it binary.
    assert 1.3 < stroke_width(reference) < 3.3
    assert np.count_nonzero((reference > 0.05) & (reference < 0.95)) > 10


# --- reading image files -----------------------------------------------------------------------


def test_dark_ink_on_light_paper_reads_like_light_ink_on_dark_paper(tmp_path, reference):
    path = save(draw(paper=255, ink=0), tmp_path / "black-on-white.png")
    assert np.abs(preprocess_file(path) - reference).max() < 1e-5


def test_coloured_ink_on_coloured_paper_is_read_as_ink(tmp_path, reference):
    path = save(
        draw(mode="RGB", paper=(250, 230, 80), ink=(30, 60, 200)),
        tmp_path / "blue-on-yellow.png",
    )
    assert correlation(preprocess_file(path), reference) > 0.99


def test_ink_as_bright_as_the_paper_but_of_another_colour_is_read_as_ink(tmp_path, reference):
    # Red pen on blue-grey paper: both have the same grey level (luma 94 and 91 of 255).
    path = save(
        draw(mode="RGB", paper=(60, 100, 130), ink=(220, 40, 40)),
        tmp_path / "red-on-blue.png",
    )
    assert correlation(preprocess_file(path), reference) > 0.99


def test_grey_paper_becomes_a_black_background(tmp_path, reference):
    # A photo of paper: the paper is grey, not white, and must not count as ink.
    path = save(draw(paper=150, ink=40), tmp_path / "grey-paper.png")
    ink = load_image(path)
    assert ink[0, 0] == pytest.approx(0.0)
    assert np.abs(preprocess_file(path) - reference).max() < 1e-5


@pytest.mark.parametrize(
    "stroke",
    [(0, 0, 0, 255), (255, 255, 255, 255), (200, 30, 30, 255)],
    ids=["black", "white", "red"],
)
def test_a_canvas_png_with_a_transparent_background_is_read_like_a_drawing_on_paper(tmp_path, reference, stroke):
    # HTML canvases export transparent (0, 0, 0, 0) pixels around the strokes.
    path = save(draw(mode="RGBA", paper=(0, 0, 0, 0), ink=stroke), tmp_path / "canvas.png")
    assert correlation(preprocess_file(path), reference) > 0.99


def test_transparent_holes_in_opaque_paper_count_as_paper(tmp_path, reference):
    image = draw(mode="RGBA", paper=(255, 255, 255, 255), ink=(0, 0, 0, 255))
    ImageDraw.Draw(image).rectangle((0, 190, 30, 199), fill=(0, 0, 0, 0))  # a transparent corner
    path = save(image, tmp_path / "holes.png")
    assert correlation(preprocess_file(path), reference) > 0.99


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_common_pixel_mode_gives_the_same_digit(tmp_path, reference, mode):
    image = draw(paper=255, ink=0)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    else:
        image = image.convert(mode)
    suffix = ".tif" if mode in ("CMYK", "I;16", "I", "F") else ".png"
    path = save(image, tmp_path / f"digit{suffix}")
    assert Image.open(path).mode == mode
    assert correlation(preprocess_file(path), reference) > 0.99


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".gif", ".webp"])
def test_jpeg_bmp_gif_and_webp_files_give_the_same_digit_as_png(tmp_path, reference, suffix):
    if suffix == ".webp" and not Image.registered_extensions().get(".webp"):
        pytest.skip("this Pillow was built without WebP")
    path = save(
        draw(mode="RGB", paper=(255, 255, 255), ink=(0, 0, 0)),
        tmp_path / f"digit{suffix}",
    )
    assert correlation(preprocess_file(path), reference) > 0.98


def test_a_sideways_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path, reference):
    stored = draw(paper=255, ink=0).transpose(Image.Transpose.ROTATE_90)  # camera stored it sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(stored, tmp_path / "photo.jpg", exif=exif, quality=95)
    assert correlation(preprocess_file(path), reference) > 0.98


def test_load_image_accepts_a_path_bytes_or_an_open_file(tmp_path):
    path = save(draw(paper=255, ink=0), tmp_path / "digit.png")
    from_path = load_image(path)
    with open(path, "rb") as file:
        from_file = load_image(file)
    from_bytes = load_image(path.read_bytes())
    assert from_path.dtype == np.float32 and from_path.shape == (200, 200)
    assert from_path.min() >= 0.0 and from_path.max() <= 1.0
    assert np.array_equal(from_path, from_file) and np.array_equal(from_path, from_bytes)


def test_preprocess_file_is_load_image_then_to_mnist(tmp_path):
    path = save(draw(FOUR, paper=255, ink=0), tmp_path / "four.png")
    assert np.array_equal(preprocess_file(path), to_mnist(load_image(path)))


@pytest.mark.parametrize("shape", [(1, 28, 28), (784,), (3, 28, 28)])
def test_preprocess_for_model_shapes_the_digit_as_the_network_input(tmp_path, shape):
    path = save(draw(FOUR, paper=255, ink=0), tmp_path / "four.png")
    x = preprocess_for_model(path, shape)
    assert x.shape == shape and x.dtype == np.float32
    for channel in x.reshape(-1, 28, 28):
        assert np.array_equal(channel, preprocess_file(path))


@pytest.mark.parametrize("shape", [(1, 14, 14), (196,)])
def test_preprocess_for_model_shrinks_the_digit_by_area_averaging_for_a_smaller_model(tmp_path, shape):
    path = save(draw(FOUR, paper=255, ink=0), tmp_path / "four.png")
    x = preprocess_for_model(path, shape)
    assert x.shape == shape and x.dtype == np.float32
    expected = preprocess_file(path).reshape(14, 2, 14, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(x.reshape(14, 14), expected, atol=1e-6)


# --- errors a user can cause -------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (64, 64), 255),
        Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
        Image.new("RGB", (64, 64), (90, 20, 200)),
    ],
    ids=["white", "transparent", "purple"],
)
def test_a_blank_image_file_is_an_image_error_naming_the_file(tmp_path, image):
    path = save(image, tmp_path / "empty-canvas.png")
    with pytest.raises(ImageError, match=r"empty-canvas\.png.* blank: no ink"):
        preprocess_file(path)


@pytest.mark.parametrize("ink", [np.zeros((280, 280)), np.full((50, 50), 0.01)], ids=["zeros", "faint-noise"])
def test_a_blank_drawing_is_an_image_error(ink):
    with pytest.raises(ImageError, match="blank: no ink"):
        to_mnist(ink)


def test_a_file_that_is_not_an_image_is_an_image_error_naming_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a picture of a digit\n")
    with pytest.raises(ImageError, match=r"notes\.txt.*PNG or JPEG"):
        load_image(path)


def test_a_missing_file_is_an_image_error_naming_the_file(tmp_path):
    with pytest.raises(ImageError, match=r"nowhere\.png.*does not exist"):
        preprocess_file(tmp_path / "nowhere.png")


def test_a_truncated_image_file_is_an_image_error_naming_the_file(tmp_path):
    whole = save(draw(mode="RGB"), tmp_path / "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError, match=r"cut\.png.*damaged or truncated"):
        load_image(path)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(8000, 6000), (100_000, 100_000)], ids=["48MP", "10GP"])
def test_a_huge_image_is_refused_from_its_header_without_decoding_it(tmp_path, monkeypatch, width, height):
    assert width * height > MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(width, height))

    def no_decoding(self):
        raise AssertionError("load_image decoded a huge image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match=r"bomb\.png.*too large"):
        load_image(path)


@pytest.mark.parametrize(
    ("ink", "message"),
    [
        (np.full((10, 10), np.nan), "NaN or infinite"),
        (np.where(np.eye(10) > 0, np.inf, 0.0), "NaN or infinite"),
        (np.full((10, 10), -0.5), "between 0 and 1"),
        (np.full((10, 10), 255.0), "divide 8-bit pixels by 255"),
        (np.zeros((10, 10, 3)), "2-D"),
        (np.zeros(100), "2-D"),
        (np.zeros((0, 10)), "empty"),
        (np.array([["a", "b"]]), "dtype"),
        (np.broadcast_to(np.float32(0.5), (8000, 6000)), "too large"),
    ],
    ids=[
        "nan",
        "inf",
        "negative",
        "above-one",
        "rgb",
        "flat",
        "empty",
        "strings",
        "huge",
    ],
)
def test_an_unusable_ink_array_is_an_image_error_not_a_crash(ink, message):
    with pytest.raises(ImageError, match=message):
        to_mnist(ink)


def test_to_mnist_leaves_its_input_unchanged():
    ink = ink_of(draw()) * 0.5
    before = ink.copy()
    to_mnist(ink)
    assert np.array_equal(ink, before)


def test_to_mnist_accepts_integer_and_boolean_arrays(reference):
    binary = ink_of(draw()) > 0.5
    assert correlation(to_mnist(binary), reference) > 0.99
    assert correlation(to_mnist(binary.astype(np.uint8)), reference) > 0.99


# --- digits on real pages: paper, light, pens, dust, JPEG --------------------------------------


def pen_ink(strokes=SEVEN, side: int = 160, width_ratio: float = 0.12) -> np.ndarray:
    """A digit as anti-aliased ink in [0, 1] (drawn 4x larger and shrunk), ``side`` pixels square."""
    big = draw(strokes, canvas=(4 * side, 4 * side), box=(side // 2, side // 2, 3 * side), width_ratio=width_ratio)
    return np.asarray(big.resize((side, side), Image.Resampling.BOX), dtype=np.float32) / 255


def photo(
    ink: np.ndarray,
    size: tuple[int, int] = (480, 360),
    at: tuple[int, int] = (150, 90),
    paper=(205, 200, 190),
    pen=(40, 50, 150),
    light: float = 0.4,
    shadow: float = 0.0,
    specks: int = 0,
    noise: float = 0.0,
    blur: float = 0.0,
    quality: int | None = None,
    seed: int = 0,
) -> bytes:
    """``ink`` written with ``pen`` on a page of ``paper`` and photographed: the file's bytes.

    ``light``: how much darker the far corner is than the near one (a gradient); ``shadow``: how
    much light a shadow across the top left takes away; ``specks``: dark dots of dust away from
    the digit; then blur, sensor noise (standard deviation in grey levels) and JPEG ``quality``.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    page_ink = np.zeros((height, width), dtype=np.float32)
    left, top = at
    rows, cols = min(ink.shape[0], height - top), min(ink.shape[1], width - left)
    page_ink[top : top + rows, left : left + cols] = ink[:rows, :cols]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    lighting = 1 - light * (0.6 * x / width + 0.4 * y / height)
    if shadow:
        lighting *= 1 - shadow / (1 + np.exp((x + y - 0.35 * (width + height)) / 12))
    colour = np.asarray(paper, np.float32) * (1 - page_ink[..., None])
    colour += np.asarray(pen, np.float32) * page_ink[..., None]
    image = Image.fromarray(np.clip(colour * lighting[..., None], 0, 255).astype(np.uint8))
    dust = ImageDraw.Draw(image)
    placed = 0
    while placed < specks:
        sx, sy = int(rng.integers(width)), int(rng.integers(height))
        if left - 20 < sx < left + cols + 20 and top - 20 < sy < top + rows + 20:
            continue
        radius = float(rng.uniform(1, 2.5))
        dust.ellipse([sx - radius, sy - radius, sx + radius, sy + radius], fill=(60, 60, 60))
        placed += 1
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    if noise:
        pixels = np.asarray(image, np.float32) + rng.normal(0, noise, (height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if quality else "PNG", **({"quality": quality} if quality else {}))
    return buffer.getvalue()


def aligned_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation of ``a`` with ``b`` shifted by at most one pixel each way.

    Centring by mass moves a digit by whole pixels: a hair's difference in the ink can move it
    one pixel, which for thin strokes alone would halve a plain correlation.
    """
    return max(correlation(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@pytest.fixture(scope="module")
def clean_seven() -> np.ndarray:
    """The pen-drawn seven as the digit it should come out as: its ink straight through to_mnist."""
    return to_mnist(pen_ink())


@pytest.mark.parametrize(
    "page",
    [
        {"paper": (150, 150, 150), "pen": (30, 30, 30), "light": 0.5},
        {"light": 0.45, "shadow": 0.45},
        {"paper": (235, 225, 195), "pen": (30, 45, 160), "noise": 4, "blur": 0.8, "quality": 70},
        {"light": 0.4, "shadow": 0.4, "specks": 15, "noise": 4, "blur": 0.8, "quality": 70},
        {"paper": (235, 235, 230), "pen": (150, 150, 150), "light": 0.3, "noise": 3, "quality": 80},
        {"paper": (45, 55, 50), "pen": (235, 235, 225), "light": 0.4, "noise": 3, "quality": 85},
    ],
    ids=[
        "grey-paper-uneven-light",
        "shadow",
        "blue-pen-on-cream-jpeg",
        "shadow-specks-noise-jpeg",
        "faint-pencil",
        "chalk-on-a-dark-board",
    ],
)
def test_a_photographed_digit_comes_out_like_the_clean_digit(clean_seven, page):
    digit = preprocess_file(photo(pen_ink(), **page))
    assert aligned_correlation(digit, clean_seven) > 0.9


def test_the_old_way_kept_the_lit_grey_page_as_a_box_around_a_faint_digit(clean_seven):
    # Regression guard: the page's paper and light must not show up as ink at all.
    ink = load_image(photo(pen_ink(), light=0.45, shadow=0.45))
    assert np.count_nonzero(ink[:60]) == 0 and np.count_nonzero(ink[:, :100]) == 0
    assert ink[90:250, 150:310].max() == pytest.approx(1.0)


def test_the_paper_becomes_zero_and_the_strokes_keep_soft_anti_aliased_edges():
    ink = load_image(photo(pen_ink(), noise=3, quality=85))
    digit = ink[90:250, 150:310]
    assert np.count_nonzero(ink) == np.count_nonzero(digit)  # nothing outside the digit
    soft = np.count_nonzero((digit > 0.1) & (digit < 0.9))
    assert soft > 0.2 * np.count_nonzero(digit > 0.5)


def test_specks_of_dust_away_from_the_digit_are_dropped():
    clean = load_image(photo(pen_ink()))
    dusty = load_image(photo(pen_ink(), specks=25, seed=3))
    assert np.count_nonzero(dusty) == np.count_nonzero(clean)
    assert np.abs(dusty - clean).max() < 0.05


def test_a_broken_stroke_is_kept_with_the_digit():
    ink = pen_ink(FOUR)
    ink[60:70, :] = 0  # a gap across the 4: its top part is a separate mark
    digit = preprocess_file(photo(ink))
    assert aligned_correlation(digit, to_mnist(ink)) > 0.95


def test_the_desk_beyond_the_edge_of_the_page_is_not_taken_for_ink(clean_seven):
    image = Image.open(io.BytesIO(photo(pen_ink(), light=0.3))).convert("RGB")
    ImageDraw.Draw(image).polygon([(0, 0), (60, 0), (40, 360), (0, 360)], fill=(70, 55, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    assert aligned_correlation(preprocess_file(buffer.getvalue()), clean_seven) > 0.9


def test_a_ruled_line_across_the_page_is_not_taken_for_part_of_the_digit(clean_seven):
    image = Image.open(io.BytesIO(photo(pen_ink(), light=0.3))).convert("RGB")
    ImageDraw.Draw(image).line([(0, 300), (480, 300)], fill=(120, 140, 190), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert aligned_correlation(preprocess_file(buffer.getvalue()), clean_seven) > 0.9


def test_a_12_megapixel_photo_is_decoded_reduced_and_read_whole(tmp_path, clean_seven):
    ink = pen_ink(side=1200)
    path = tmp_path / "phone.jpg"
    path.write_bytes(photo(ink, size=(4000, 3000), at=(1400, 900), light=0.4, noise=3, quality=90))
    ink_map = load_image(path)
    assert max(ink_map.shape) <= 1000 and ink_map.shape[1] * 3 == ink_map.shape[0] * 4
    assert aligned_correlation(preprocess_file(path), clean_seven) > 0.9


# --- refusals: no digit, several digits, a digit cut off ---------------------------------------


NO_DIGIT = r"holds no digit-like mark .*; write one digit, dark on light or light on dark"


def noise_page(kind: str) -> bytes:
    rng = np.random.default_rng(7)
    if kind == "uniform":
        pixels = rng.integers(0, 256, (300, 400), dtype=np.uint8)
    else:  # dust: a clean page with hundreds of dark dots
        pixels = np.full((300, 400), 240, dtype=np.uint8)
        pixels[rng.random((300, 400)) < 0.02] = 40
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def text_page() -> bytes:
    image = Image.new("L", (600, 400), 235)
    pen = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=44)
    except TypeError:  # Pillow before 10.1: a fixed small font
        pytest.skip("this Pillow has no scalable default font")
    for row, line in enumerate(["The quick brown", "fox jumps over", "the lazy dog."]):
        pen.text((20, 20 + 110 * row), line, fill=30, font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda: photo(np.zeros((10, 10), np.float32), light=0.4, shadow=0.4, noise=4, quality=75),
        lambda: noise_page("uniform"),
        lambda: noise_page("dust"),
        text_page,
    ],
    ids=["blank-page-photo", "noise", "dust", "text"],
)
def test_a_page_without_a_digit_is_refused_as_holding_no_digit_like_mark(make):
    with pytest.raises(ImageError, match=NO_DIGIT):
        preprocess_file(make())


def test_two_digits_side_by_side_are_refused_with_advice_to_crop_to_one():
    two = np.zeros((160, 330), np.float32)
    two[:, :160] = pen_ink(SEVEN)
    two[:, 170:] = pen_ink(FOUR)
    with pytest.raises(
        ImageError,
        match=r"seems to hold 2 separate marks side by side; crop it "
        r"to one digit",
    ):
        preprocess_file(photo(two, size=(520, 360), at=(90, 90)))


def test_two_digits_drawn_side_by_side_on_the_canvas_are_refused():
    canvas = np.zeros((56, 56), np.float32)
    canvas[10:46, 12:16] = 1.0  # 1
    canvas[10:46, 38:42] = 1.0  # 1
    with pytest.raises(
        ImageError, match="The drawing seems to hold 2 separate marks side by side; erase all but one digit"
    ):
        to_mnist(canvas)


@pytest.mark.parametrize("at", [(380, 60), (120, 250)], ids=["right-edge", "bottom-edge"])
def test_a_digit_cut_off_by_the_edge_of_the_photo_is_refused(at):
    with pytest.raises(
        ImageError, match="cut off by the edge of the image; photograph or crop it with some paper all around the digit"
    ):
        preprocess_file(photo(pen_ink(), size=(480, 360), at=at))


# --- but no ordinary digit is ever refused -----------------------------------------------------


def test_a_tightly_cropped_digit_touching_the_edges_is_not_refused(clean_seven):
    ink = pen_ink()
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.5), np.flatnonzero(ink.max(axis=0) > 0.5)
    tight = ink[rows[0] + 3 : rows[-1] - 2, cols[0] + 3 : cols[-1] - 2]  # strokes cut by all edges
    digit = preprocess_file(photo(tight, size=tight.shape[::-1], at=(0, 0), light=0))
    assert aligned_correlation(digit, clean_seven) > 0.8


@pytest.mark.parametrize("strokes", [SEVEN, FOUR, [[(0.5, 0.05), (0.5, 0.95)]]], ids=["seven", "four", "one"])
@pytest.mark.parametrize("width_ratio", [0.03, 0.1, 0.3], ids=["thin", "pen", "marker"])
@pytest.mark.parametrize(
    "box", [(0, 0, 56), (30, 2, 24), (4, 30, 20)], ids=["filling", "top-right", "small-bottom-left"]
)
def test_canvas_drawings_are_never_refused(strokes, width_ratio, box):
    canvas = draw(strokes, canvas=(56, 56), box=box, width_ratio=width_ratio)
    to_mnist(ink_of(canvas))  # white strokes on black, as the page sends them
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    preprocess_file(buffer.getvalue())  # and as an uploaded PNG


def test_mnist_test_digits_saved_as_png_are_never_refused_and_nearly_all_come_back_unchanged(mnist):
    # The few hairlines and bold blobs among them (MNIST's thinnest 2.5% and widest 4% of
    # strokes) are redrawn with MNIST-like strokes, so they change; the rest stay as they were.
    rng = np.random.default_rng(11)
    similarity = []
    for index in rng.choice(len(mnist.test_images), 150, replace=False):
        digit = mnist.test_images[index]
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        similarity.append(aligned_correlation(preprocess_file(buffer.getvalue()), digit / 255))
    assert min(similarity) > 0.8
    assert np.mean(np.array(similarity) > 0.95) >= 0.9


def test_mnist_test_digits_enlarged_as_dark_on_light_scans_are_never_refused(mnist):
    rng = np.random.default_rng(12)
    for index in rng.choice(len(mnist.test_images), 60, replace=False):
        scan = Image.fromarray(255 - mnist.test_images[index]).resize((140, 140), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        scan.save(buffer, format="PNG")
        preprocess_file(buffer.getvalue())


@pytest.mark.slow
def test_all_10000_mnist_test_digits_as_png_give_no_false_refusal(mnist):
    refused = []
    for index, digit in enumerate(mnist.test_images):
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        try:
            preprocess_file(buffer.getvalue())
        except ImageError as error:
            refused.append((index, str(error)))
    assert refused == []


def sklearn_scan(values: np.ndarray) -> bytes:
    """An 8x8 scikit-learn digit (0..16) as a 64x64 scan, dark ink on white (bicubic)."""
    big = Image.fromarray((values * (255 / 16)).astype(np.float32)).resize((64, 64), Image.Resampling.BICUBIC)
    grey = np.round(255 - np.clip(np.asarray(big), 0, 255)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    return buffer.getvalue()


def test_scikit_learn_digits_by_other_writers_are_never_refused():
    datasets = pytest.importorskip("sklearn.datasets")
    images = datasets.load_digits().images
    for index in np.random.default_rng(13).choice(len(images), 150, replace=False):
        preprocess_file(sklearn_scan(images[index]))


@pytest.mark.slow
def test_all_1797_scikit_learn_digits_give_no_false_refusal():
    datasets = pytest.importorskip("sklearn.datasets")
    refused = []
    for index, values in enumerate(datasets.load_digits().images):
        try:
            preprocess_file(sklearn_scan(values))
        except ImageError as error:
            refused.append((index, str(error)))
    assert refused == []
