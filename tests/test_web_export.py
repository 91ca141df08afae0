"""``digitnet export --format web``: the static page that reads digits in the browser, without a server.

The export needs onnxruntime-web, which the first export installs with npm into digitnet's cache; the
session fixture below does that once. Without npm (and no cached copy) the tests that need it are
skipped, except under CI, where that is a failure, as for the browser tests (tests/test_web_browser.py,
whose Chromium helpers are reused here).
"""

from __future__ import annotations

import functools
import json
import os
import stat
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import test_web_browser as served_page
from click.testing import CliRunner
from test_web_browser import STROKES, draw, draw_with_finger, screenshot, unavailable

from digitnet.cli import main
from digitnet.data.cache import sha256_of_file
from digitnet.nn import build_mlp
from digitnet.nn.ensemble import Ensemble
from digitnet.reader import READER_SHA256
from digitnet.web_export import ORT_WEB_FILES, ORT_WEB_VERSION, WebExportError, onnxruntime_web

EXPORTED_FILES = {"index.html", "app.js", "pad.js", "style.css", "model.onnx", "model.json", *ORT_WEB_FILES}
TOLERANCE = 1e-5
#: Headless Chromium, launched as for the served page (skipped, or failed under CI, where it cannot run).
browser = served_page.browser


@pytest.fixture(scope="session")
def ort_web():
    """onnxruntime-web in the user cache: installed with npm at most once per session (once at all)."""
    try:
        return onnxruntime_web()
    except WebExportError as error:
        unavailable(str(error))


@pytest.fixture
def model_file(tmp_path, rng):
    path = tmp_path / "mlp.npz"
    build_mlp((16,), rng=rng, mean=0.13, std=0.31).save(path)
    return path


def export(*args: str):
    return CliRunner().invoke(main, ["export", *args, "--format", "web"])


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of a write, beside its destination."""
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".part"))


@pytest.mark.parametrize("destination", ["missing", "empty"])
def test_the_cli_writes_the_page_model_and_onnxruntime_web_into_the_folder(
    destination, ort_web, model_file, tmp_path, rng
):
    out = tmp_path / "site"
    if destination == "empty":
        out.mkdir()
    result = export(str(model_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "python -m http.server" in result.stderr
    assert {path.name for path in out.iterdir()} == EXPORTED_FILES
    info = json.loads((out / "model.json").read_text())
    assert info["format"] == "digitnet-web"
    assert info["model"] == "mlp.npz" and info["model_sha256"] == sha256_of_file(model_file)
    assert info["class_names"] == [str(digit) for digit in range(10)]
    assert info["input"] == {"name": "pixels", "height": 28, "width": 28}
    assert info["output"] == "probabilities" and info["onnxruntime_web"] == ORT_WEB_VERSION
    for name, sha in ORT_WEB_FILES.items():
        assert sha256_of_file(out / name) == sha
    pixels = rng.random((4, 28, 28), dtype=np.float32)
    got = ort.InferenceSession(out / "model.onnx").run(None, {"pixels": pixels})[0]
    from digitnet.nn import Network

    np.testing.assert_allclose(got, Network.load(model_file).predict_proba(pixels), rtol=0, atol=TOLERANCE)
    assert leftovers(tmp_path) == []


def test_the_pages_content_security_policy_allows_its_inline_script_and_nothing_from_elsewhere():
    import base64
    import hashlib
    import re
    from importlib import resources

    html = (resources.files("digitnet") / "web" / "standalone" / "index.html").read_text(encoding="utf-8")
    found = re.search(r'http-equiv="Content-Security-Policy"\s+content="([^"]+)"', html)
    assert found, "the page has no Content-Security-Policy"
    policy = found.group(1)
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(inline) == 1  # the file:// notice; its hash must be in the policy, or it never runs
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"].split() == ["'self'", "'wasm-unsafe-eval'", f"'sha256-{digest}'"]


def test_without_a_model_the_shipped_reader_is_exported(ort_web, tmp_path):
    out = tmp_path / "site"
    result = export("--out", str(out))
    assert result.exit_code == 0, result.output
    info = json.loads((out / "model.json").read_text())
    assert info["model"] == "reader.npz" and info["model_sha256"] == READER_SHA256


def test_exporting_again_replaces_an_earlier_export(ort_web, model_file, tmp_path, rng):
    out = tmp_path / "site"
    assert export(str(model_file), "--out", str(out)).exit_code == 0
    first_graph = (out / "model.onnx").read_bytes()
    other = tmp_path / "other.npz"
    build_mlp((8,), rng=rng).save(other)
    result = export(str(other), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "model.onnx").read_bytes() != first_graph
    assert json.loads((out / "model.json").read_text())["model_sha256"] == sha256_of_file(other)
    assert {path.name for path in out.iterdir()} == EXPORTED_FILES
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("folder", ["photos", "an export with a file of mine added"])
def test_a_folder_holding_other_files_is_refused_and_left_alone(folder, ort_web, model_file, tmp_path):
    out = tmp_path / "site"
    if folder == "photos":
        out.mkdir()
    else:
        assert export(str(model_file), "--out", str(out)).exit_code == 0
    (out / "holiday.jpg").write_bytes(b"mine")
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    result = export(str(model_file), "--out", str(out))
    assert result.exit_code == 2  # refused as a bad --out, before the model is read
    assert "holds files that are not from a digitnet web export" in result.stderr
    assert "Traceback" not in result.output
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_a_file_as_the_destination_is_refused_and_left_alone(model_file, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    result = export(str(model_file), "--out", str(out))
    assert result.exit_code == 2
    assert "is not a folder" in result.stderr and "Traceback" not in result.output
    assert out.read_text() == "mine" and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["the current folder", "a symbolic link", "a missing parent folder"])
def test_destinations_that_cannot_be_replaced_whole_are_refused_before_the_model_is_read(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    if case == "a symbolic link":
        (tmp_path / "link").symlink_to(tmp_path / "real")
    out, expected = {
        "the current folder": (".", "is the current folder or a root"),
        "a symbolic link": ("link", "is a symbolic link"),
        "a missing parent folder": ("nowhere/site", "does not exist or is not a folder"),
    }[case]
    result = export(str(tmp_path / "no-such-model.npz"), "--out", out)  # the model is never opened
    assert result.exit_code == 2
    assert expected in result.stderr and "Traceback" not in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["real", *(["link"] if "link" in out else [])])


def test_a_cache_that_cannot_be_written_is_one_sentence(model_file, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    fake_npm(tmp_path / "bin", "exit 0\n", monkeypatch)
    result = export(str(model_file), "--out", str(tmp_path / "site"))
    assert result.exit_code == 1
    assert one_error_line(result) and "Cannot write to digitnet's cache folder" in result.stderr
    assert not (tmp_path / "site").exists()


def test_a_failed_rename_puts_the_earlier_export_back(ort_web, model_file, tmp_path, rng, monkeypatch):
    import digitnet.web_export as web_export

    out = tmp_path / "site"
    assert export(str(model_file), "--out", str(out)).exit_code == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    real_replace = os.replace

    failed = []

    def replace(source, destination):  # the new page's rename onto --out fails once (a busy mount, say)
        if Path(destination) == out and not failed:
            failed.append(source)
            raise OSError(16, "Device or resource busy")
        return real_replace(source, destination)

    monkeypatch.setattr(web_export.os, "replace", replace)
    other = tmp_path / "other.npz"
    build_mlp((8,), rng=rng).save(other)
    result = export(str(other), "--out", str(out))
    assert result.exit_code == 1
    assert one_error_line(result) and "Cannot put the web page in place" in result.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_an_ensemble_file_is_refused_with_one_sentence(tmp_path, rng):
    path = tmp_path / "ensemble.npz"
    Ensemble([build_mlp((8,), rng=rng), build_mlp((8,), rng=rng)]).save(path)
    out = tmp_path / "site"
    result = export(str(path), "--out", str(out))
    assert result.exit_code == 1
    assert one_error_line(result) and "ensemble file" in result.stderr
    assert "export each member" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def one_error_line(result) -> bool:
    """Whether stderr holds one line besides the note that npm is fetching onnxruntime-web."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Fetching onnxruntime-web")]
    return len(lines) == 1 and lines[0].startswith("Error: ")


def fake_npm(folder: Path, script: str, monkeypatch) -> None:
    """Put a program called npm, running ``script`` (sh), first on PATH."""
    folder.mkdir()
    npm = folder / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(cache))
    return cache


def test_without_npm_the_export_says_what_to_install_and_writes_nothing(empty_cache, model_file, tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    out = tmp_path / "site"
    result = export(str(model_file), "--out", str(out))
    assert result.exit_code == 1
    assert one_error_line(result)
    assert "npm is not installed" in result.stderr and "apt-get install npm" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_failing_npm_install_is_one_sentence_and_leaves_nothing(empty_cache, model_file, tmp_path, monkeypatch):
    fake_npm(tmp_path / "bin", 'echo "npm error code ENOTFOUND" >&2\nexit 1\n', monkeypatch)
    out = tmp_path / "site"
    result = export(str(model_file), "--out", str(out))
    assert result.exit_code == 1
    assert one_error_line(result) and "npm error code ENOTFOUND" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []
    assert list(empty_cache.iterdir()) == []  # no half-installed copy


def test_files_that_differ_from_the_pinned_release_are_refused(empty_cache, model_file, tmp_path, monkeypatch):
    # An "npm" that installs look-alike files (a compromised or wrong package) into --prefix.
    fake_npm(
        tmp_path / "bin",
        'dist="$3/node_modules/onnxruntime-web/dist"\nmkdir -p "$dist"\n'
        + "".join(f'echo fake > "$dist/{name}"\n' for name in ORT_WEB_FILES),
        monkeypatch,
    )
    out = tmp_path / "site"
    result = export(str(model_file), "--out", str(out))
    assert result.exit_code == 1
    assert one_error_line(result) and "differ from the release" in result.stderr
    assert not out.exists() and list(empty_cache.iterdir()) == []


# --- the page in Chromium ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(ort_web, tmp_path_factory):
    """The shipped reader exported as a web page: its folder and the URL a plain static server gives it."""
    out = tmp_path_factory.mktemp("web") / "site"
    result = CliRunner().invoke(main, ["export", "--format", "web", "--out", str(out)])
    assert result.exit_code == 0, result.output

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=os.fspath(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield out, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_page(browser, url: str, problems: list[str], **context_options):
    """A tab on the page once its model has loaded; console errors, failed or off-site requests go to
    ``problems``."""
    tab = browser.new_context(**context_options).new_page()
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on("request", lambda request: None if request.url.startswith(url) else problems.append(request.url))
    tab.on("response", lambda response: problems.append(response.url) if response.status >= 400 else None)
    tab.goto(url)
    tab.locator('body[data-model="ready"]').wait_for(timeout=30_000)
    return tab


def reading(tab) -> tuple[str, np.ndarray, np.ndarray]:
    """The digit shown, the image the network saw and its probabilities, once the page is idle."""
    tab.locator('#result[data-state="idle"]').wait_for(timeout=10_000)
    exposed = tab.evaluate("() => window.digitnet")
    image = np.array(exposed["input"], dtype=np.float32).reshape(28, 28)
    return tab.locator("#digit").text_content(), image, np.array(exposed["probabilities"])


@pytest.mark.browser
def test_digits_drawn_with_the_mouse_are_read_as_onnxruntime_reads_them(browser, site, tmp_path):
    out, url = site
    session = ort.InferenceSession(out / "model.onnx")
    problems: list[str] = []
    tab = open_page(browser, url, problems, viewport={"width": 1100, "height": 850})
    for digit, strokes in STROKES.items():
        tab.get_by_role("button", name="Clear").click()
        assert tab.locator("#digit").text_content() == "?"
        draw(tab, strokes)
        shown, image, probabilities = reading(tab)
        assert shown == str(digit)
        screenshot(tab, tmp_path, f"web-export-{digit}")
        expected = session.run(None, {"pixels": image[None]})[0][0]
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=TOLERANCE)
        # MNIST-style: ink in [0, 1] inside a 20x20 box, its centre of mass on pixel (14, 14).
        rows, cols = np.nonzero(image)
        assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.5
        assert max(np.ptp(rows), np.ptp(cols)) + 1 == 20
        assert abs(np.average(rows, weights=image[rows, cols]) - 14) <= 0.5
        assert abs(np.average(cols, weights=image[rows, cols]) - 14) <= 0.5
        seen = tab.evaluate(
            "() => Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)"
        )
        np.testing.assert_array_equal(np.array(seen).reshape(28, 28, 4)[..., 0], np.round(image * 255))
    tab.context.close()
    assert not problems, problems


@pytest.mark.browser
def test_a_digit_drawn_with_a_finger_on_a_phone_is_read(browser, site):
    problems: list[str] = []
    tab = open_page(browser, site[1], problems, viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    draw_with_finger(tab, STROKES[7])
    assert reading(tab)[0] == "7"
    assert tab.locator("#quick").text_content() == "7"
    tab.context.close()
    assert not problems, problems


@pytest.mark.browser
def test_the_page_refuses_scripts_from_elsewhere(browser, site):
    tab = open_page(browser, site[1], [])
    violated = tab.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener("securitypolicyviolation", (event) => resolve(event.effectiveDirective));
            setTimeout(() => resolve("no violation"), 5000);
            const script = document.createElement("script");
            script.src = "https://example.invalid/injected.js";
            document.head.appendChild(script);
        })"""
    )
    assert violated in ("script-src", "script-src-elem")
    tab.context.close()


@pytest.mark.browser
def test_opened_as_a_file_the_page_says_to_serve_it(browser, site):
    tab = browser.new_context().new_page()
    tab.goto((site[0] / "index.html").as_uri())
    tab.locator("#announce").filter(has_text="python -m http.server").wait_for(timeout=10_000)
    tab.context.close()
