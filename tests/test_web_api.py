"""The web API (``digitnet.web``) through FastAPI's TestClient: good requests and every kind of bad one.

The client raises any server exception instead of turning it into a 500, so each test here also
checks that the input did not crash the server.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'digitnet[web]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
from fastapi.testclient import TestClient  # noqa: E402

from digitnet import __version__  # noqa: E402
from digitnet.errors import DigitnetError  # noqa: E402
from digitnet.nn import build_mlp  # noqa: E402
from digitnet.preprocess import load_image, to_mnist  # noqa: E402
from digitnet.web import create_app  # noqa: E402
from digitnet.web.app import MAX_BODY_BYTES, MAX_PIXELS_SIDE, MAX_UPLOAD_PIXELS  # noqa: E402


@pytest.fixture(scope="module")
def network():
    """An untrained seed network: the API's plumbing does not depend on what it learned."""
    return build_mlp(
        (16,),
        rng=np.random.default_rng(0),
        mean=0.13,
        std=0.31,
        metadata={"dataset": "mnist", "metrics": {"test_accuracy": 0.975}},
    )


@pytest.fixture(scope="module")
def client(network):
    with TestClient(create_app(network)) as test_client:
        yield test_client


def seven(size: int = 56, width: int = 5) -> np.ndarray:
    """A 7 drawn as ink (high) on a blank array, like the page sends."""
    image = Image.new("L", (size, size))
    ImageDraw.Draw(image).line(
        [(size * 0.2, size * 0.15), (size * 0.8, size * 0.15), (size * 0.4, size * 0.9)], fill=255, width=width
    )
    return np.asarray(image, dtype=np.float32) / 255


def png_bytes(ink: np.ndarray, *, dark_on_light: bool = True, fmt: str = "PNG") -> bytes:
    """The ink as an image file, drawn dark on white paper as a scan or photo would be."""
    grey = (1 - ink) if dark_on_light else ink
    buffer = io.BytesIO()
    Image.fromarray(np.round(grey * 255).astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def assert_refused(response, status: int, *words: str) -> None:
    """The response is a 4xx JSON ``{"detail": "..."}`` whose message mentions each of ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word.lower() in detail.lower(), detail


def assert_prediction(body: dict, num_classes: int = 10) -> None:
    assert set(body) == {"digit", "label", "probabilities", "input"}
    assert len(body["probabilities"]) == num_classes
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert body["digit"] == int(np.argmax(body["probabilities"]))
    assert body["label"] == str(body["digit"])
    image = np.asarray(body["input"])
    assert image.shape == (28, 28)
    assert 0.0 <= image.min() and 0.9 < image.max() <= 1.0


# -- good requests ------------------------------------------------------------------------------


def test_a_json_drawing_gets_the_digit_probabilities_and_the_28x28_input(client, network):
    ink = seven()
    response = client.post("/api/predict", json={"pixels": ink.tolist()})
    assert response.status_code == 200
    body = response.json()
    assert_prediction(body)
    # The same MNIST preprocessing and network as `digitnet predict`.
    expected_input = to_mnist(ink)
    np.testing.assert_allclose(body["input"], expected_input, atol=5e-4)
    np.testing.assert_allclose(body["probabilities"], network.predict_proba(expected_input[None])[0], atol=1e-5)


def test_a_28x28_mnist_style_array_is_accepted(client):
    ink = np.asarray(Image.fromarray((seven() * 255).astype(np.uint8)).resize((28, 28)), dtype=np.float32) / 255
    assert_prediction(client.post("/api/predict", json={"pixels": ink.tolist()}).json())


def test_integer_pixels_zero_and_one_are_accepted(client):
    pixels = [[0, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert client.post("/api/predict", json={"pixels": pixels}).status_code == 200


def test_a_png_upload_is_read_like_the_same_drawing_sent_as_pixels(client):
    ink = seven(112, 10)
    response = client.post("/api/predict", files={"image": ("seven.png", png_bytes(ink), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_prediction(body)
    # The file's paper is white and its ink dark: load_image flips it, then the same to_mnist.
    np.testing.assert_allclose(body["input"], to_mnist(load_image(png_bytes(ink))), atol=5e-4)
    as_pixels = client.post("/api/predict", json={"pixels": ink.tolist()}).json()
    np.testing.assert_allclose(body["input"], as_pixels["input"], atol=2e-2)
    assert body["digit"] == as_pixels["digit"]


def test_a_jpeg_upload_with_light_ink_on_dark_paper_is_read(client):
    data = png_bytes(seven(112, 10), dark_on_light=False, fmt="JPEG")
    response = client.post("/api/predict", files={"image": ("seven.jpg", data, "image/jpeg")})
    assert response.status_code == 200, response.text
    assert_prediction(response.json())


def test_a_raw_png_body_is_read(client):
    response = client.post("/api/predict", content=png_bytes(seven(112, 10)), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    assert_prediction(response.json())


def test_the_model_endpoint_describes_architecture_dataset_accuracy_and_version(client):
    response = client.get("/api/model")
    assert response.status_code == 200
    info = response.json()
    assert info["architecture"] == "784-16-10"
    assert info["parameters"] == 784 * 16 + 16 + 16 * 10 + 10
    assert info["dataset"] == "mnist"
    assert info["test_accuracy"] == pytest.approx(0.975)
    assert info["version"] == __version__
    assert info["class_names"] == list("0123456789")
    assert info["input_shape"] == [1, 28, 28]


def test_a_model_without_recorded_metrics_is_described_with_nulls():
    bare = build_mlp((8,), rng=np.random.default_rng(1))
    with TestClient(create_app(bare)) as bare_client:
        info = bare_client.get("/api/model").json()
    assert info["dataset"] is None and info["test_accuracy"] is None


def test_healthz_says_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_the_page_and_its_assets_are_served_locally_with_a_strict_content_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        assert f'"{asset}"' in html
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert "http://" not in response.text and "https://" not in response.text  # no CDN
    # app.js imports the drawing pad it shares with the exported page; it too is served from here.
    pad = client.get("/static/pad.js")
    assert pad.status_code == 200 and "javascript" in pad.headers["content-type"]
    assert 'from "./pad.js"' in client.get("/static/app.js").text and "https://" not in pad.text
    # No script, stylesheet or image from elsewhere: the page works offline.
    assert 'src="http' not in html and 'href="http' not in html
    # Accessibility basics: the answer is announced, the buttons are real buttons.
    assert 'aria-live="polite"' in html
    assert '<button type="button" id="clear">' in html and 'id="upload"' in html


def test_unknown_paths_and_methods_get_json_errors_and_no_file_is_served_from_disk(client):
    assert_refused(client.get("/static/../app.py"), 404)
    assert_refused(client.get("/static/app.py"), 404)
    assert_refused(client.get("/etc/passwd"), 404)
    assert_refused(client.get("/api/predict"), 405)


def test_the_openapi_schema_documents_both_request_bodies_and_the_answer(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/api/predict"]["post"]
    assert {"application/json", "multipart/form-data"} <= set(predict["requestBody"]["content"])
    assert "pixels" in predict["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "image" in predict["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"200", "400", "413", "415", "422"} <= set(predict["responses"])
    answer = schema["components"]["schemas"]["Prediction"]["properties"]
    assert {"digit", "probabilities", "input"} <= set(answer)
    assert {"/api/model", "/healthz"} <= set(schema["paths"])


def test_an_app_is_refused_for_a_model_that_does_not_take_28x28_images():
    small = build_mlp((8,), input_shape=(1, 8, 8), rng=np.random.default_rng(0))
    with pytest.raises(DigitnetError, match="28x28"):
        create_app(small)


# -- bad JSON ------------------------------------------------------------------------------------


def post_json_text(client, text: str):
    return client.post("/api/predict", content=text.encode(), headers={"Content-Type": "application/json"})


def test_malformed_json_is_a_400(client):
    assert_refused(post_json_text(client, '{"pixels": [[0, 1'), 400, "not valid JSON")
    assert_refused(post_json_text(client, ""), 400, "not valid JSON")
    assert_refused(
        client.post("/api/predict", content=b"\xff\xfe\x00", headers={"Content-Type": "application/json"}), 400
    )


def test_absurdly_nested_json_is_a_400_not_a_crash(client):
    depth = 100_000
    assert_refused(post_json_text(client, '{"pixels": ' + "[" * depth + "]" * depth + "}"), 400, "nested")


@pytest.mark.parametrize(
    "payload",
    [
        [[0, 1], [1, 0]],  # an array, not an object
        {"pixel": [[0, 1], [1, 0]]},  # misspelt field
        {},
        "pixels",
        None,
    ],
    ids=["array", "misspelt", "empty-object", "string", "null"],
)
def test_a_json_body_without_a_pixels_field_is_a_422(client, payload):
    assert_refused(post_json_text(client, json.dumps(payload)), 422, "pixels")


@pytest.mark.parametrize(
    "pixels",
    [
        [0.5, 0.5, 0.5],  # 1-D
        [[[0.5]], [[0.5]]],  # 3-D
        [[0.5, 0.5], [0.5]],  # ragged
        [],  # empty
        [[]],  # no columns
        "0.5",
        {"0": [0.5]},
        [[0.5, "1"], [0.5, 0.5]],  # a string inside
        [[0.5, None], [0.5, 0.5]],  # null inside
        [[0.5, [0.5]], [0.5, 0.5]],  # nested deeper in one place
        [[10**400, 0], [0, 0]],  # an integer too large for any float
    ],
    ids=[
        "1d",
        "3d",
        "ragged",
        "empty",
        "no-columns",
        "string",
        "object",
        "string-inside",
        "null-inside",
        "mixed-depth",
        "huge-int",
    ],
)
def test_pixels_of_the_wrong_shape_or_type_are_a_422(client, pixels):
    assert_refused(client.post("/api/predict", json={"pixels": pixels}), 422)


@pytest.mark.parametrize(
    "value, words",
    [
        ("NaN", ["NaN"]),
        ("Infinity", ["NaN or infinite"]),
        ("-0.5", ["between 0 and 1"]),
        ("255", ["between 0 and 1"]),
    ],
)
def test_nan_infinite_negative_or_too_large_values_are_a_422(client, value, words):
    # Python's and FastAPI's JSON readers accept NaN and Infinity, so they must be caught later.
    text = '{"pixels": [[0, 0, 0], [0, VALUE, 0], [0, 1, 0]]}'.replace("VALUE", value)
    assert_refused(post_json_text(client, text), 422, *words)


def test_an_empty_drawing_is_a_422_that_says_to_draw(client):
    assert_refused(client.post("/api/predict", json={"pixels": np.zeros((56, 56)).tolist()}), 422, "blank", "draw")


def test_an_array_larger_than_the_side_limit_is_a_422(client):
    too_tall = [[0.0]] * (MAX_PIXELS_SIDE + 1)
    assert_refused(client.post("/api/predict", json={"pixels": too_tall}), 422, str(MAX_PIXELS_SIDE))
    too_wide = [[0.0] * (MAX_PIXELS_SIDE + 1)]
    assert_refused(client.post("/api/predict", json={"pixels": too_wide}), 422, str(MAX_PIXELS_SIDE))


def test_the_largest_allowed_array_is_read(client):
    ink = np.zeros((MAX_PIXELS_SIDE, MAX_PIXELS_SIDE))
    ink[100:400, 250:262] = 1.0  # a 1
    response = client.post("/api/predict", json={"pixels": ink.tolist()})
    assert response.status_code == 200, response.text
    assert_prediction(response.json())


# -- bodies that are too large -------------------------------------------------------------------


def test_a_body_declared_larger_than_the_limit_is_a_413_before_it_is_read(client):
    body = b"[" * (MAX_BODY_BYTES + 1)
    assert_refused(
        client.post("/api/predict", content=body, headers={"Content-Type": "application/json"}),
        413,
        "larger than the limit",
    )


def test_a_streamed_body_without_content_length_is_a_413(client):
    def chunked_body():  # no Content-Length: httpx sends it with chunked transfer encoding
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    response = client.post("/api/predict", content=chunked_body(), headers={"Content-Type": "application/json"})
    assert_refused(response, 413, "larger than the limit")


def test_reading_a_streamed_body_stops_right_after_the_limit(network):
    # TestClient buffers the whole body before calling the app, so talk ASGI directly to see how
    # much of an endless body the app pulls in before it answers.
    app = create_app(network)
    chunk = b" " * (256 * 1024)
    received, messages = [], []

    async def receive():
        received.append(len(chunk))
        # Four times the limit in all: an app without the limit would read it all, then answer.
        return {"type": "http.request", "body": chunk, "more_body": sum(received) < 4 * MAX_BODY_BYTES}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 413
    assert sum(received) <= MAX_BODY_BYTES + len(chunk)
    assert json.loads(b"".join(m.get("body", b"") for m in messages[1:]))["detail"]


def test_an_uploaded_image_with_too_many_pixels_is_a_413_without_decoding_it(client):
    side = int(MAX_UPLOAD_PIXELS**0.5) + 8
    buffer = io.BytesIO()
    Image.new("1", (side, side), 1).save(buffer, format="PNG")  # a few kB on disk, huge decoded
    assert len(buffer.getvalue()) < MAX_BODY_BYTES
    response = client.post("/api/predict", files={"image": ("huge.png", buffer.getvalue(), "image/png")})
    assert_refused(response, 413, "megapixels")


# -- wrong content types and bad uploads ---------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None])
def test_content_types_the_api_does_not_read_are_a_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/predict", content=b'{"pixels": [[1]]}', headers=headers)
    assert_refused(response, 415, "application/json", "multipart/form-data")


def test_a_non_image_upload_is_a_422_that_says_so(client):
    response = client.post("/api/predict", files={"image": ("notes.txt", b"just some text", "text/plain")})
    assert_refused(response, 422, "not an image")
    raw = client.post("/api/predict", content=b"<svg/>", headers={"Content-Type": "image/png"})
    assert_refused(raw, 422, "not an image")


def test_a_truncated_png_upload_is_a_422(client):
    data = png_bytes(seven(112, 10))
    response = client.post("/api/predict", files={"image": ("broken.png", data[: len(data) // 2], "image/png")})
    assert_refused(response, 422)


def test_an_empty_upload_is_a_422(client):
    assert_refused(client.post("/api/predict", files={"image": ("empty.png", b"", "image/png")}), 422, "empty")


def test_a_blank_image_upload_is_a_422_that_says_to_draw(client):
    response = client.post("/api/predict", files={"image": ("blank.png", png_bytes(np.zeros((50, 50))), "image/png")})
    assert_refused(response, 422, "blank")


def test_a_multipart_body_without_an_image_file_field_is_a_422(client):
    wrong_name = client.post("/api/predict", files={"picture": ("seven.png", png_bytes(seven()), "image/png")})
    assert_refused(wrong_name, 422, "'image'")
    text_field = client.post("/api/predict", data={"image": "seven.png"}, files={"other": ("x", b"x")})
    assert_refused(text_field, 422, "'image'")


def test_a_malformed_multipart_body_is_a_400(client):
    response = client.post(
        "/api/predict", content=b"--nonsense\r\nno headers here", headers={"Content-Type": "multipart/form-data"}
    )  # no boundary
    assert_refused(response, 400, "multipart")


def test_the_server_still_answers_after_a_barrage_of_bad_requests(client):
    bad = [
        (b"\x00" * 100, "application/json"),
        (b"{}", "image/jpeg"),
        (b"--x--", "multipart/form-data; boundary=x"),
        (json.dumps({"pixels": [[float("nan")]]}).encode(), "application/json"),
    ]
    for body, content_type in bad * 5:
        response = client.post("/api/predict", content=body, headers={"Content-Type": content_type})
        assert 400 <= response.status_code < 500, response.text
        assert isinstance(response.json()["detail"], str)
    assert client.post("/api/predict", json={"pixels": seven().tolist()}).status_code == 200


# -- the `digitnet serve` command ----------------------------------------------------------------


@pytest.fixture
def serve_command(monkeypatch):
    """The ``serve`` command with uvicorn replaced by a recorder of what it would have served."""
    from digitnet.cli import serve as serve_module

    served = {}

    def fake_run_server(app, sock, limits=None):
        served["app"], served["address"], served["limits"] = app, sock.getsockname(), limits

    monkeypatch.setattr(serve_module, "run_server", fake_run_server)
    return serve_module.serve, served


def test_serve_without_a_model_serves_the_shipped_reader(serve_command, tmp_path, monkeypatch):
    from click.testing import CliRunner

    serve, served = serve_command
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(serve, ["--port", "0"])
    assert result.exit_code == 0, result.output
    assert "Serving the reader model that ships with digitnet" in result.output
    model = TestClient(served["app"], base_url="http://127.0.0.1").get("/api/model").json()
    from digitnet.reader import load_reader

    assert model["architecture"] == load_reader().describe()


def test_serve_serves_the_model_it_is_given_on_loopback_and_prints_the_url(
    serve_command, network, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    serve, served = serve_command
    monkeypatch.chdir(tmp_path)
    network.save(tmp_path / "model.npz")
    result = CliRunner().invoke(serve, ["model.npz", "--port", "0"])
    assert result.exit_code == 0, result.output
    host, port = served["address"]
    assert host == "127.0.0.1" and port > 0
    assert f"http://127.0.0.1:{port}/" in result.output
    browser = TestClient(served["app"], base_url=f"http://127.0.0.1:{port}")
    assert browser.get("/api/model").json()["architecture"] == "784-16-10"
    # The served app answers only for its own address: a DNS-rebinding page gets 421.
    assert_refused(
        TestClient(served["app"], base_url="http://attacker.example").get("/api/model"),
        421,
        "attacker.example",
        "--allow-host",
    )
    assert served["limits"].header_timeout == 10 and served["limits"].body_timeout == 30


def test_serve_reports_a_damaged_model_file_in_one_sentence(serve_command, tmp_path):
    from click.testing import CliRunner

    serve, served = serve_command
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    result = CliRunner().invoke(serve, [str(damaged)])
    assert result.exit_code == 1 and "digitnet train" in result.output
    assert "Traceback" not in result.output and not served


def test_serve_reports_a_port_in_use_and_how_to_pick_another(serve_command, network, tmp_path):
    import socket

    from click.testing import CliRunner

    serve, served = serve_command
    network.save(tmp_path / "model.npz")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(serve, [str(tmp_path / "model.npz"), "--port", str(port)])
    assert result.exit_code == 1 and "--port" in result.output and not served


def test_digitnet_serve_answers_on_the_url_it_prints(network, tmp_path):
    """The real thing: a uvicorn process on a free loopback port, stopped with Ctrl+C (SIGINT)."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    import httpx

    network.save(tmp_path / "model.npz")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "digitnet", "serve", str(tmp_path / "model.npz"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        lines = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        assert lines and "http://127.0.0.1:" in lines[0], lines
        url = lines[0].split(" at ")[1].split()[0]
        for _ in range(100):  # uvicorn starts accepting a moment after the URL is printed
            try:
                if httpx.get(url + "healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        response = httpx.post(url + "api/predict", json={"pixels": seven().tolist()}, timeout=10)
        assert response.status_code == 200 and len(response.json()["probabilities"]) == 10
        assert "<canvas" in httpx.get(url, timeout=10).text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
    # Ctrl+C stops it cleanly: exit status 0 and no traceback.
    assert process.returncode == 0, rest
    assert "Traceback" not in rest and "Stopped." in rest


def test_concurrent_drawings_and_uploads_each_get_their_own_answer(client):
    from concurrent.futures import ThreadPoolExecutor

    one = np.zeros((56, 56))
    one[8:48, 26:31] = 1.0
    inks = [seven(), one] * 8
    expected = [client.post("/api/predict", json={"pixels": ink.tolist()}).json()["input"] for ink in inks[:2]]

    def ask(i: int):
        if i % 2:  # uploads run in worker threads while JSON drawings run on the event loop
            return client.post("/api/predict", files={"image": ("d.png", png_bytes(inks[i]), "image/png")}).json()
        return client.post("/api/predict", json={"pixels": inks[i].tolist()}).json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(len(inks))))
    for i, body in enumerate(answers):
        np.testing.assert_allclose(body["input"], expected[i % 2], atol=2e-2)
