"""The draw-a-digit web app: a JSON API around one loaded network, and the page that uses it.

:func:`create_app` builds a FastAPI (ASGI) application for a network that is already loaded, so the
model is read from disk once, at start-up, and never on a client's behalf. ``digitnet serve`` runs
it on uvicorn.

Routes
------
``GET /``                the drawing page (static HTML, CSS and JavaScript, no build step, no CDN)
``POST /api/predict``    a digit in, the prediction out; see :func:`create_app` for the formats
``GET /api/model``       what the model is: architecture, dataset, test accuracy, versions
``GET /healthz``         liveness probe
``GET /openapi.json``    the API's schema (``/docs`` renders it, with a viewer FastAPI loads from a CDN: online only)

Every drawing and upload goes through :func:`digitnet.preprocess.to_mnist`, the same MNIST-style
cropping, scaling and centring that ``digitnet predict`` applies to image files, so an off-centre,
small or thick digit reaches the network looking like an MNIST digit.

Bad input is the client's fault and always gets a 4xx answer with ``{"detail": "<one sentence>"}``:
400 for a body that cannot be parsed, 413 for one that is too large, 415 for a content type the
API does not read, 422 for a well-formed body that holds no usable digit.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import DigitnetError, ImageError
from ..nn import Network
from ..preprocess import MAX_IMAGE_PIXELS, load_image, to_mnist

__all__ = ["MAX_BODY_BYTES", "MAX_PIXELS_SIDE", "MAX_UPLOAD_PIXELS", "create_app"]

#: Largest request body accepted, in bytes. A 512x512 drawing as JSON with three decimals is
#: about 1.5 MB and a phone photo a few MB; anything larger is refused with 413 before it is read.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Largest side of a ``pixels`` array. The page sends 56x56; MNIST itself is 28x28.
MAX_PIXELS_SIDE = 512
#: Largest uploaded image, in pixels (width x height), checked from the file header before
#: decoding. Smaller than the command line's limit because a server decodes for strangers,
#: several requests at a time: a 16-megapixel image already needs about 200 MB while decoding.
MAX_UPLOAD_PIXELS = min(4096 * 4096, MAX_IMAGE_PIXELS)
#: Bodies up to this size are handled on the event loop (about a millisecond of work); larger
#: ones, and every uploaded image, run in a worker thread so they never stall other clients.
INLINE_BODY_BYTES = 64 * 1024

_STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page loads nothing from elsewhere: it works offline, and injected content cannot phone home.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class ClientError(Exception):
    """A request the server cannot serve through the client's fault; becomes ``{"detail": ...}``."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


# -- schemas (they document the API in /openapi.json) ------------------------------------------

class PixelsRequest(BaseModel):
    """A drawing as an array of ink intensities."""

    pixels: list[list[float]] = Field(
        description=f"An HxW array (rows of numbers), ink intensity from 0 (paper) to 1 (ink), ink "
                    f"high; each side 1 to {MAX_PIXELS_SIDE}. 28x28 is the common case; any size is "
                    "cropped to its ink, scaled and centred like an MNIST digit.",
        examples=[[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])


class Prediction(BaseModel):
    """What the network read."""

    digit: int = Field(description="Index of the most probable class (the digit for MNIST).")
    label: str = Field(description="Name of that class, e.g. '7'.")
    probabilities: list[float] = Field(description="One probability per class, in class order; they sum to 1.")
    input: list[list[float]] = Field(description="The 28x28 image the network saw after MNIST-style "
                                                 "preprocessing, values in [0, 1], ink high.")


class ModelInfo(BaseModel):
    """The loaded model."""

    architecture: str = Field(description="Layer summary, e.g. '784-128-10'.")
    parameters: int = Field(description="Number of trained parameters.")
    dataset: str | None = Field(description="Dataset it was trained on, if recorded.")
    test_accuracy: float | None = Field(description="Accuracy on the dataset's test set, if recorded.")
    class_names: list[str]
    input_shape: list[int]
    version: str = Field(description="Version of digitnet serving the model.")
    model_version: str | None = Field(description="Version of digitnet that wrote the model file.")


class ErrorMessage(BaseModel):
    """Why a request was refused."""

    detail: str = Field(description="One sentence: what is wrong and what to do.")


class Health(BaseModel):
    status: str = "ok"


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorMessage, "description": "The body could not be parsed (malformed JSON or multipart)."},
    413: {"model": ErrorMessage, "description": f"The body is larger than {MAX_BODY_BYTES} bytes, "
                                                "or the uploaded image has too many pixels."},
    415: {"model": ErrorMessage, "description": "The Content-Type is not one the API reads."},
    422: {"model": ErrorMessage, "description": "The body is well-formed but holds no usable digit: "
                                                "wrong shape, values outside [0, 1], NaN, a blank "
                                                "drawing, or a file that is not an image."},
}

_PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": PixelsRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["image"],
                       "properties": {"image": {"type": "string", "format": "binary",
                                                "description": "A PNG or JPEG (any colours, any size "
                                                               "up to the limits) showing one digit."}}},
        },
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}


# -- the body-size limit ----------------------------------------------------------------------

class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, without ever holding more than that.

    A declared ``Content-Length`` over the limit is refused before any of the body is read. A body
    without one (chunked transfer) is counted while the application reads it, and reading stops at
    the first chunk past the limit. A plain ASGI middleware rather than Starlette's
    ``BaseHTTPMiddleware``, which would add a task and a memory stream to every request.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"detail": f"The request body is larger than the limit of {self.max_bytes} "
                                       "bytes; send a smaller drawing or image."}, status_code=413)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    response = JSONResponse({"detail": "The Content-Length header is not a "
                                                       "non-negative integer."}, status_code=400)
                    await response(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await self._too_large()(scope, receive, send)
                    return

        received = 0
        response_started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:  # cannot happen with our routes; never send a second response
                raise
            await self._too_large()(scope, receive, send)


class _InMemoryMultiPartParser(MultiPartParser):
    # Starlette spools uploads over 1 MB to a temporary file; the body is already capped at
    # MAX_BODY_BYTES, so keep it in memory and never write a client's bytes to disk.
    spool_max_size = MAX_BODY_BYTES + 1


# -- turning requests into 28x28 inputs -------------------------------------------------------

def pixels_from_json(body: bytes) -> np.ndarray:
    """Parse ``{"pixels": [[...], ...]}`` into a 2-D float array, or raise :class:`ClientError`.

    Values are checked (finite, in [0, 1], some ink) by :func:`~digitnet.preprocess.to_mnist`.
    """
    try:
        payload = json.loads(body)
    except RecursionError:  # e.g. ten thousand nested brackets
        raise ClientError(400, "The JSON body is nested too deeply; send {\"pixels\": [[...], ...]}.") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise ClientError(400, f"The body is not valid JSON ({error}); send {{\"pixels\": [[...], ...]}}.") from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        raise ClientError(422, "The JSON body needs a \"pixels\" field: an HxW array of ink "
                               "intensities between 0 and 1, e.g. {\"pixels\": [[0, 0.5], [1, 0]]}.")
    rows = payload["pixels"]
    if not isinstance(rows, list) or not rows:
        raise ClientError(422, "\"pixels\" must be a non-empty list of rows, each a list of numbers "
                               "between 0 and 1 (an HxW array).")
    if len(rows) > MAX_PIXELS_SIDE:  # cheap early exit; the body limit bounds the width's cost
        raise ClientError(422, f"\"pixels\" has {len(rows)} rows, more than the limit of "
                               f"{MAX_PIXELS_SIDE}; downsample the drawing.")
    # One pass in C: NumPy finds the shape and the type. Ragged rows raise ValueError; strings,
    # nulls, objects and integers beyond float range give a non-numeric dtype.
    try:
        array = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        raise ClientError(422, "\"pixels\" must be a rectangular HxW array: a list of rows of equal "
                               "length, each a list of numbers between 0 and 1.") from None
    if array.ndim != 2 or array.shape[1] == 0:
        raise ClientError(422, f"\"pixels\" has shape {array.shape}; send a 2-D HxW array: a list of "
                               "rows, each a list of numbers between 0 and 1.")
    if array.dtype.kind not in "iuf":
        raise ClientError(422, "\"pixels\" must hold only numbers between 0 and 1 (ink intensities), "
                               "not strings, nulls or objects.")
    if array.shape[1] > MAX_PIXELS_SIDE:
        raise ClientError(422, f"\"pixels\" is {array.shape[0]}x{array.shape[1]}, larger than the "
                               f"limit of {MAX_PIXELS_SIDE}x{MAX_PIXELS_SIDE}; downsample the drawing.")
    return array


def ink_from_upload(data: bytes) -> np.ndarray:
    """Decode an uploaded image file into an ink map, or raise :class:`ClientError`."""
    if not data:
        raise ClientError(422, "The uploaded file is empty; choose a PNG or JPEG image of a digit.")
    try:  # header only: refuse huge images before decoding a single pixel
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001  # not an image, or a hostile one: load_image below explains which
        width = height = 0
    if width * height > MAX_UPLOAD_PIXELS:
        raise ClientError(413, f"The uploaded image is {width}x{height} pixels, more than the limit "
                               f"of {MAX_UPLOAD_PIXELS // 1_000_000} megapixels; scale it down and "
                               "try again.")
    try:
        return load_image(data)
    except ImageError as error:
        raise ClientError(422, str(error)) from None


# -- the application --------------------------------------------------------------------------

def create_app(network: Network) -> FastAPI:
    """Build the web app around an already loaded network.

    Parameters
    ----------
    network : Network
        A model for 28x28 single-channel images (784 inputs), e.g. from :meth:`Network.load`.
        It is only read, never changed, so one network serves every request.

    Returns
    -------
    fastapi.FastAPI
        An ASGI application; run it with ``uvicorn.run(app)`` or ``digitnet serve``.

    Raises
    ------
    DigitnetError
        If the network does not take 28x28 images (the page draws MNIST-style digits).

    Notes
    -----
    ``POST /api/predict`` reads one digit, in any of these forms:

    * ``application/json``: ``{"pixels": [[...], ...]}``, an HxW array (each side up to
      :data:`MAX_PIXELS_SIDE`) of ink intensities in [0, 1], ink high: what the page sends.
    * ``multipart/form-data`` with a file field ``image``: a PNG or JPEG, any colours.
    * a raw ``image/png`` or ``image/jpeg`` body (handy with ``curl --data-binary``).

    It answers ``{"digit", "label", "probabilities", "input"}`` (see :class:`Prediction`).
    """
    if int(np.prod(network.input_shape)) != 28 * 28:
        raise DigitnetError(f"This model takes inputs of shape {tuple(network.input_shape)}, but the "
                            "drawing page makes 28x28 MNIST-style digits; serve a model trained on "
                            "mnist (or another 28x28 dataset).")

    static = {name: resources.files(__package__).joinpath("static", name).read_bytes()
              for name in _STATIC_FILES}  # read once here: no request ever touches the file system
    model_info = _model_info(network)
    # Caps concurrent heavy jobs (large arrays, image decoding) at the number of cores, so a burst
    # of uploads cannot pile up hundreds of megabytes of decoded pixels in worker threads. A thread
    # semaphore, taken inside the worker, works whichever event loop runs the app.
    heavy_slots = threading.BoundedSemaphore(_cpu_count())
    # Layers keep per-call caches for backpropagation; one forward pass at a time keeps any layer
    # that reads its own cache correct when worker threads and the event loop predict at once.
    inference_lock = threading.Lock()

    app = FastAPI(
        title="digitnet",
        version=__version__,
        description="Read a handwritten digit with a neural network written from scratch in NumPy. "
                    "Drawings and images get the same MNIST-style preprocessing as `digitnet predict`.",
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, error: ClientError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code)

    def predict_ink(ink: np.ndarray) -> dict[str, Any]:
        try:
            x = to_mnist(ink)
        except ImageError as error:
            raise ClientError(422, str(error)) from None
        with inference_lock:
            probabilities = network.predict_proba(x[np.newaxis])[0]
        digit = int(probabilities.argmax())
        return {"digit": digit, "label": network.class_names[digit],
                "probabilities": [round(float(p), 6) for p in probabilities],
                # Three decimals: plenty for display, and a third of the bytes of full floats.
                "input": np.round(x, 3).tolist()}

    async def run_heavy(function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        def limited() -> dict[str, Any]:
            with heavy_slots:
                return function()
        return await run_in_threadpool(limited)

    @app.post("/api/predict", response_model=Prediction, responses=_ERROR_RESPONSES,
              openapi_extra={"requestBody": _PREDICT_BODY}, summary="Read one digit")
    async def predict(request: Request) -> JSONResponse:
        """Read the digit in a drawing (JSON ``pixels``) or an image file (multipart ``image``).

        The input is cropped to its ink, scaled to fit 20x20 and centred by mass in 28x28, as
        MNIST's digits were; the answer includes that 28x28 image.
        """
        # The handler returns JSONResponse itself: the declared response_model documents the
        # shape without re-validating 800 floats per request.
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if media_type == "application/json":
                body = await request.body()
                if len(body) <= INLINE_BODY_BYTES:
                    result = predict_ink(pixels_from_json(body))
                else:
                    result = await run_heavy(lambda: predict_ink(pixels_from_json(body)))
            elif media_type == "multipart/form-data":
                data = await _uploaded_file(request)
                result = await run_heavy(lambda: predict_ink(ink_from_upload(data)))
            elif media_type.startswith("image/"):
                data = await request.body()
                result = await run_heavy(lambda: predict_ink(ink_from_upload(data)))
            else:
                shown = f"Content-Type {media_type!r}" if media_type else "a request without a Content-Type"
                raise ClientError(415, f"The API does not read {shown}; send JSON "
                                       "{\"pixels\": [[...], ...]} as application/json, or an image "
                                       "file as multipart/form-data in a field named 'image'.")
        except ClientDisconnect:  # the client went away; nobody is left to answer
            return Response(status_code=400)
        return JSONResponse(result)

    @app.get("/api/model", response_model=ModelInfo, summary="Describe the loaded model")
    async def model() -> JSONResponse:
        """Architecture, training dataset, test accuracy and versions of the served model."""
        return JSONResponse(model_info)

    @app.get("/healthz", response_model=Health, summary="Liveness probe")
    async def healthz() -> JSONResponse:
        """``{"status": "ok"}`` while the server is up."""
        return JSONResponse({"status": "ok"})

    def static_route(name: str) -> Callable[[], Awaitable[Response]]:
        async def serve_file() -> Response:
            return Response(static[name], media_type=_STATIC_FILES[name], headers=_PAGE_HEADERS)
        return serve_file

    app.add_api_route("/", static_route("index.html"), methods=["GET"], include_in_schema=False)
    for name in ("app.js", "style.css"):
        app.add_api_route(f"/static/{name}", static_route(name), methods=["GET"], include_in_schema=False)
    return app


async def _uploaded_file(request: Request) -> bytes:
    """The bytes of the multipart field ``image``, or raise :class:`ClientError`."""
    parser = _InMemoryMultiPartParser(request.headers, request.stream(), max_files=1, max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise ClientError(400, f"The multipart body could not be parsed ({error}); send one image "
                               "file in a field named 'image'.") from None
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ClientError(422, "The multipart body needs a file field named 'image' holding a "
                                   "PNG or JPEG of a digit.")
        return await upload.read()
    finally:
        await form.close()


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _model_info(network: Network) -> dict[str, Any]:
    metrics = network.metadata.get("metrics") or {}
    accuracy = metrics.get("test_accuracy") if isinstance(metrics, dict) else None
    dataset = network.metadata.get("dataset")
    return ModelInfo(
        architecture=network.describe(),
        parameters=int(network.num_parameters()),
        dataset=str(dataset) if dataset is not None else None,
        test_accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else None,
        class_names=[str(name) for name in network.class_names],
        input_shape=[int(size) for size in network.input_shape],
        version=__version__,
        model_version=str(network.metadata["digitnet_version"]) if network.metadata.get("digitnet_version") else None,
    ).model_dump()
