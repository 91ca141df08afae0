"""The draw-a-digit page in a real browser: headless Chromium, driven by Playwright, draws digits.

Needs Debian's ``chromium`` package (or ``DIGITNET_CHROMIUM=/path/to/chrome``) and the ``playwright``
Python package; Playwright's own browser download is not used. Without them the tests are skipped,
except where the environment variable ``CI`` is set: there a missing browser is a failure, so a CI
run can never pass by silently skipping the only test of the page itself.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import serving

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
#: Screenshots are also copied here for a human to look at.
SCREENSHOT_DIR = Path(os.environ.get("DIGITNET_SCREENSHOTS", "/tmp/digitnet-screenshots"))

# Strokes in pad coordinates (0..1), each a polyline drawn with the mouse button held down.
STROKES = {
    1: [[(0.52, 0.15), (0.50, 0.85)]],
    0: [[(0.5 + 0.22 * np.cos(a), 0.5 + 0.33 * np.sin(a)) for a in np.linspace(-np.pi / 2, 1.55 * np.pi, 28)]],
    7: [[(0.28, 0.2), (0.72, 0.2), (0.42, 0.85)]],
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str):
    """Skip, or fail under CI, because the browser cannot run here."""
    if in_ci():
        pytest.fail(f"{reason}; CI is set, so the browser test must run, not be skipped.")
    pytest.skip(reason)


def chromium_path() -> str | None:
    candidates = [
        os.environ.get("DIGITNET_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install playwright)")
    path = chromium_path()
    if path is None:
        unavailable("Chromium is not installed (apt-get install chromium, or set DIGITNET_CHROMIUM)")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except Error as error:
            unavailable(f"Chromium at {path} did not start: {error}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server_url(browser, mnist_model_path):
    """The app around a real MNIST model, served as ``digitnet serve`` does, on a free loopback port.

    Same app (Host check included) and same uvicorn settings (the guarded protocol, its timeouts
    and connection limit), on uvicorn in a thread so the test can stop it.
    """
    try:
        import uvicorn  # noqa: F401  (only asked whether the web extra is installed)

        from digitnet.web import create_app
        from digitnet.web.server import host_policy
    except ImportError as error:
        unavailable(f"the web extra is not installed ({error}): pip install 'digitnet[web]'")
    from digitnet.nn import Network

    # Asked for only now, after `browser`: without a browser, skip before training the model.
    names, allow_ip_literals = host_policy("127.0.0.1")
    app = create_app(Network.load(mnist_model_path), allowed_hosts=names, allow_ip_literals=allow_ip_literals)
    with serving(app) as url:
        yield url


@pytest.fixture
def page(browser, server_url):
    """A fresh tab on the page; fails the test on any console error or request to another host."""
    context = browser.new_context(viewport={"width": 1100, "height": 850})
    tab = context.new_page()
    problems = []

    def on_console(message) -> None:
        # Chromium logs every 4xx answer as a console error; the page shows those to the user.
        if message.type == "error" and "responded with a status of 4" not in message.text:
            problems.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on(
        "request",
        lambda request: (
            problems.append(f"off-site request {request.url}")
            if not request.url.startswith((server_url, "data:"))
            else None
        ),
    )
    tab.goto(server_url)
    tab.locator("#model").filter(has_text="784-128-10").wait_for()  # the model info arrived
    yield tab
    context.close()
    assert not problems, problems


def draw(page, strokes, pause_ms: float = 0, steps: int = 8) -> None:
    """Draw polylines (pad coordinates 0..1) with the mouse, as a user would.

    Each segment is ``steps`` mouse moves; ``pause_ms`` waits after each segment.
    """
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=steps)
            if pause_ms:
                page.wait_for_timeout(pause_ms)
        page.mouse.up()


def draw_with_finger(page, strokes) -> None:
    """Draw polylines with touch events (a finger on a phone), through the DevTools protocol."""
    box = page.locator("#pad").bounding_box()
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        # Many small moves, as a finger sends them, so the stroke is a line and not a jump.
        path = [points[0]] + [
            (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
            for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True)
            for t in np.linspace(0.1, 1, 10)
        ]
        start = {"x": path[0][0], "y": path[0][1]}
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [start]})
        for x, y in path[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def answer(page) -> str:
    """The digit the page shows once every request for the current drawing has been answered."""
    page.locator('#result[data-state="idle"]').wait_for(timeout=10_000)
    return page.locator("#digit").text_content()


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    try:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOT_DIR / path.name)
    except OSError:
        pass  # the copy is a convenience; pytest's tmp dir has the original


def test_digits_drawn_with_the_mouse_are_read_correctly(page, tmp_path):
    for digit, strokes in STROKES.items():
        page.get_by_role("button", name="Clear").click()
        draw(page, strokes)
        assert answer(page) == str(digit)
        assert f"reads a {digit}" in page.locator("#announce").text_content()
        assert page.locator("#bars li.best .bar-label").text_content() == str(digit)
        assert page.locator("#quick").text_content() == str(digit)
        screenshot(page, tmp_path, f"drawn-{digit}")
        # The 28x28 preview shows what the network saw: ink, centred by mass as in MNIST.
        seen = (
            np.array(
                page.evaluate("""() => Array.from(
            document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)""")
            ).reshape(28, 28, 4)[..., 0]
            / 255
        )
        assert seen.max() > 0.9
        rows, cols = np.nonzero(seen > 0.1)
        assert abs(np.average(rows, weights=seen[rows, cols]) - 14) < 1.5
        assert abs(np.average(cols, weights=seen[rows, cols]) - 14) < 1.5


def test_the_prediction_updates_while_drawing_at_a_throttled_rate(page):
    sent = []
    page.on("request", lambda request: sent.append(time.monotonic()) if request.url.endswith("/api/predict") else None)
    started = time.monotonic()
    # One slow stroke of a 7, about a second and a half long.
    stroke = [(0.28 + 0.44 * t, 0.2) for t in np.linspace(0, 1, 25)] + [
        (0.72 - 0.3 * t, 0.2 + 0.65 * t) for t in np.linspace(0, 1, 25)[1:]
    ]
    draw(page, [stroke], pause_ms=30, steps=2)
    duration = time.monotonic() - started
    assert answer(page) == "7"
    assert len(sent) >= 3, "the answer should update during the stroke, not only after it"
    assert len(sent) <= duration / 0.1 + 2, f"{len(sent)} requests in {duration:.2f} s: not throttled"


def test_clear_by_keyboard_resets_the_answer_and_the_pad(page):
    draw(page, STROKES[1])
    assert answer(page) == "1"
    # Tab to the Clear button and press Enter: the controls work without a mouse.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "clear":
            break
    else:
        pytest.fail("the Clear button cannot be reached with the Tab key")
    page.keyboard.press("Enter")
    assert answer(page) == "?"
    assert "Cleared" in page.locator("#announce").text_content()
    ink = page.evaluate("""() => Array.from(document.getElementById('pad').getContext('2d')
                              .getImageData(0, 0, 280, 280).data).some((value, i) => i % 4 === 3 && value > 0)""")
    assert not ink


def test_an_uploaded_image_file_is_read(page, tmp_path):
    image = Image.new("L", (300, 200), 255)  # a photo-like picture: dark pen on white, off-centre
    ImageDraw.Draw(image).line([(190, 40), (260, 40), (215, 170)], fill=20, width=9)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    page.locator("#file").set_input_files(
        files=[{"name": "seven.png", "mimeType": "image/png", "buffer": buffer.getvalue()}]
    )
    page.locator("#announce").filter(has_text="seven.png").wait_for()
    assert answer(page) == "7"
    screenshot(page, tmp_path, "uploaded-7")


def test_a_non_image_upload_shows_the_servers_message(page):
    page.locator("#file").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"}]
    )
    page.locator("#announce").filter(has_text="not an image").wait_for()
    assert answer(page) == "!"


def test_the_page_fits_a_phone_screen_and_reads_a_digit_drawn_with_a_finger(browser, server_url, tmp_path):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=True, is_mobile=True
    )
    tab = context.new_page()
    try:
        tab.goto(server_url)
        assert tab.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        box = tab.locator("#pad").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844
        draw_with_finger(tab, STROKES[7])
        assert answer(tab) == "7"
        assert tab.evaluate("() => window.scrollY") == 0  # drawing did not scroll the page
        assert tab.locator("#quick").is_visible()  # the answer is visible above the pad
        screenshot(tab, tmp_path, "phone-7")
    finally:
        context.close()
