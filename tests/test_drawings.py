"""Digits drawn off-centre, small, large, thick or thin are read as well as MNIST's own.

A network trained on MNIST has only ever seen digits cropped, scaled into 20x20 and centred by mass
in 28x28. These tests send other kinds of drawings through the web API, which applies the same
preprocessing as ``digitnet predict``, to the real trained model (``mnist_model_path``), and check
that what the network reads does not depend on where or how big or bold the digit was drawn.
(Without the preprocessing, a plain resize to 28x28, most of them are misread.)
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'digitnet[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from digitnet.nn import Network  # noqa: E402
from digitnet.web import create_app  # noqa: E402

pytestmark = pytest.mark.slow  # trains the MNIST model fixture (once per session)

PAD = 280  # the page's drawing canvas
SEND = 56  # what the page sends: the canvas averaged over 5x5 blocks


@pytest.fixture(scope="module")
def client(mnist_model_path):
    with TestClient(create_app(Network.load(mnist_model_path))) as test_client:
        yield test_client


def _arc(cx, cy, rx, ry, start, stop, n=40):
    angles = np.radians(np.linspace(start, stop, n))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles), strict=True))


# Pen strokes in a unit box, as a person might draw each digit.
STROKES = {
    0: [_arc(0.5, 0.5, 0.28, 0.42, 0, 360)],
    1: [[(0.5, 0.08), (0.5, 0.92)]],
    2: [_arc(0.5, 0.3, 0.28, 0.22, 200, 420) + [(0.22, 0.9), (0.8, 0.9)]],
    3: [_arc(0.48, 0.29, 0.27, 0.21, 200, 450), _arc(0.48, 0.71, 0.3, 0.21, 270, 520)],
    4: [[(0.6, 0.08), (0.2, 0.62), (0.82, 0.62)], [(0.62, 0.35), (0.62, 0.92)]],
    7: [[(0.22, 0.12), (0.8, 0.12), (0.42, 0.92)]],
}

# How the digit is drawn on the 280x280 pad: pen width and the box (left, top, right, bottom) it fills.
STYLES = {
    "centred": (18, (0, 0, PAD, PAD)),
    "off-centre and small": (8, (170, 10, 260, 110)),
    "tiny in a corner": (5, (20, 200, 60, 260)),
    "thick marker": (45, (0, 0, PAD, PAD)),
    "thin pen": (3, (0, 0, PAD, PAD)),
    "bold and small, bottom right": (22, (150, 150, 270, 270)),
}


def drawing(digit: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """The digit drawn on the pad with round pen ends, as the page would send it (56x56 ink)."""
    image = Image.new("L", (PAD, PAD))
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = box
    for stroke in STROKES[digit]:
        points = [(left + x * (right - left), top + y * (bottom - top)) for x, y in stroke]
        pen.line(points, fill=255, width=width, joint="curve")
        for x, y in (points[0], points[-1]):
            pen.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=255)
    ink = np.asarray(image, dtype=np.float32) / 255
    return np.round(ink.reshape(SEND, PAD // SEND, SEND, PAD // SEND).mean(axis=(1, 3)), 2)


def read(client, **request) -> int:
    response = client.post("/api/predict", **request)
    assert response.status_code == 200, response.text
    return response.json()["digit"]


@pytest.mark.parametrize("digit", sorted(STROKES))
def test_a_drawn_digit_is_read_the_same_wherever_and_however_big_or_bold_it_is(client, digit):
    readings = {
        style: read(client, json={"pixels": drawing(digit, width, box).tolist()})
        for style, (width, box) in STYLES.items()
    }
    assert readings == {style: digit for style in STYLES}


def _redraw(digit: np.ndarray, scale: int, canvas: int, position: tuple[int, int], pen: int = 0) -> bytes:
    """An MNIST digit enlarged ``scale`` times, its strokes widened (pen > 0) or thinned (pen < 0)
    by a square brush, placed at ``position`` on a ``canvas``-sized page, saved as a dark-on-white PNG."""
    image = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    if pen:
        image = image.filter(ImageFilter.MaxFilter(pen) if pen > 0 else ImageFilter.MinFilter(-pen))
    page = Image.new("L", (canvas, canvas))
    page.paste(image, position)
    buffer = io.BytesIO()
    Image.fromarray(255 - np.asarray(page)).save(buffer, format="PNG")  # a scan: dark ink on white
    return buffer.getvalue()


def test_mnist_digits_redrawn_off_centre_small_large_thick_or_thin_are_read_as_well_as_the_originals(
    client, mnist, mnist_model_path
):
    count = 150
    rng = np.random.default_rng(5)
    index = rng.choice(len(mnist.test_labels), count, replace=False)
    digits, labels = mnist.test_images[index], mnist.test_labels[index]
    original = Network.load(mnist_model_path).predict(digits)
    original_accuracy = float(np.mean(original == labels))

    variants = {  # name -> (how to redraw one digit, accuracy points it may lose)
        "off-centre": (lambda d: _redraw(d, 2, 140, tuple(rng.integers([0, 80], [12, 84]))), 0.02),
        "small in a large page": (lambda d: _redraw(d, 1, 140, tuple(rng.integers(0, 112, 2))), 0.02),
        "large, filling the page": (lambda d: _redraw(d, 5, 140, (0, 0)), 0.02),
        "thick strokes": (lambda d: _redraw(d, 4, 140, (10, 10), pen=5), 0.04),
        "thin strokes": (lambda d: _redraw(d, 4, 140, (10, 10), pen=-5), 0.04),
    }
    report = {"MNIST as is": original_accuracy}
    for name, (redraw, allowed_loss) in variants.items():
        predicted = np.array([read(client, files={"image": ("digit.png", redraw(d), "image/png")}) for d in digits])
        accuracy = float(np.mean(predicted == labels))
        report[name] = accuracy
        assert accuracy >= original_accuracy - allowed_loss, (name, accuracy, original_accuracy, report)
    print("accuracy on", count, "test digits:", {name: f"{value:.1%}" for name, value in report.items()})


def _photograph(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """An MNIST digit written large on tinted paper and photographed: uneven light, a shadow across
    one corner, blue or black pen, sensor noise, a little blur, dust, JPEG."""
    side = int(rng.integers(90, 150))
    width, height = int(side * rng.uniform(1.8, 2.6)), int(side * rng.uniform(1.6, 2.2))
    left, top = int(rng.integers(10, width - side - 10)), int(rng.integers(10, height - side - 10))
    ink = np.zeros((height, width), np.float32)
    big = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    ink[top : top + side, left : left + side] = np.clip(np.asarray(big, np.float32) / 255, 0, 1)
    paper = np.array([(225, 222, 215), (235, 228, 200), (205, 208, 212)][rng.integers(3)], np.float32)
    pen = np.array([(30, 45, 150), (35, 35, 40)][rng.integers(2)], np.float32)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    light = (1 - 0.3 * x / width - 0.2 * y / height) * (1 - 0.3 / (1 + np.exp((x + y - 0.4 * (width + height)) / 10)))
    page = (paper * (1 - ink[..., None]) + pen * ink[..., None]) * light[..., None]
    image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
    pixels = np.asarray(image, np.float32) + rng.normal(0, 4, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=int(rng.integers(60, 86))
    )
    return buffer.getvalue()


def test_mnist_digits_photographed_on_paper_under_uneven_light_are_read_nearly_as_well_as_the_originals(
    client, mnist, mnist_model_path
):
    count = 120
    rng = np.random.default_rng(8)
    index = rng.choice(len(mnist.test_labels), count, replace=False)
    digits, labels = mnist.test_images[index], mnist.test_labels[index]
    original_accuracy = float(np.mean(Network.load(mnist_model_path).predict(digits) == labels))
    predicted = np.array(
        [read(client, files={"image": ("photo.jpg", _photograph(d, rng), "image/jpeg")}) for d in digits]
    )
    accuracy = float(np.mean(predicted == labels))
    print(f"accuracy on {count} test digits: as is {original_accuracy:.1%}, photographed {accuracy:.1%}")
    assert accuracy >= original_accuracy - 0.04
