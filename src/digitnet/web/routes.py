"""The web app's routes: the JSON API around a :class:`~digitnet.web.predictor.Predictor`, and the page.

Routes
------
``GET /``                the drawing page (static HTML, CSS and JavaScript, no build step, no CDN)
``POST /api/predict``    a digit in, the prediction out (JSON pixels, multipart upload, raw image)
``GET /api/model``       what the model is: architecture, dataset, test accuracy, versions
``GET /healthz``         liveness probe

Every GET route also answers HEAD: the same status and headers, no body (RFC 9110, section 9.3.2).
The HEAD twins stay out of ``/openapi.json``, as HEAD is implied by GET.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from .middleware import MAX_BODY_BYTES
from .predictor import ClientError, Predictor
from .schemas import (
    ERROR_RESPONSES,
    PREDICT_BODY,
    Health,
    ModelInfo,
    Prediction,
    error_responses,
)

__all__ = ["INLINE_BODY_BYTES", "api_router", "page_router"]

#: JSON bodies up to this size are read on the event loop (about a millisecond of work); larger
#: ones, and every uploaded image, run in a worker thread so they never stall other clients.
INLINE_BODY_BYTES = 64 * 1024

_STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "pad.js": "text/javascript; charset=utf-8",
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

T = TypeVar("T")


class _HeavyJobs:
    """Runs CPU-heavy work (big arrays, image decoding, prediction) in worker threads, a few at a time.

    At most ``slots`` jobs run at once, one per core, so a burst of uploads cannot pile up hundreds
    of megabytes of decoded pixels in worker threads. A thread semaphore, taken inside the worker,
    works whichever event loop runs the app.
    """

    def __init__(self, slots: int) -> None:
        self._slots = threading.BoundedSemaphore(slots)

    async def run(self, function: Callable[[bytes], T], data: bytes) -> T:
        def limited() -> T:
            with self._slots:
                return function(data)

        return await run_in_threadpool(limited)


class _InMemoryMultiPartParser(MultiPartParser):
    # Starlette spools uploads over 1 MB to a temporary file; the body is already capped at
    # MAX_BODY_BYTES, so keep it in memory and never write a client's bytes to disk.
    spool_max_size = MAX_BODY_BYTES + 1


def api_router(predictor: Predictor) -> APIRouter:
    """The JSON API: ``POST /api/predict``, ``GET /api/model`` and ``GET /healthz``.

    Parameters
    ----------
    predictor : Predictor
        Reads the digits; shared by every request.

    Returns
    -------
    fastapi.APIRouter
        The routes, to include in an app.
    """
    router = APIRouter()
    heavy = _HeavyJobs(_cpu_count())

    @router.post(
        "/api/predict",
        response_model=Prediction,
        responses=ERROR_RESPONSES,
        openapi_extra={"requestBody": PREDICT_BODY},
        summary="Read one digit",
    )
    async def predict(request: Request) -> Response:
        """Read the digit in a drawing (JSON ``pixels``) or an image file (multipart ``image``).

        The input is cropped to its ink, scaled to fit 20x20 and centred by mass in 28x28, as
        MNIST's digits were; the answer includes that 28x28 image.
        """
        try:
            return JSONResponse(await _read_digit(request, predictor, heavy))
        except ClientDisconnect:  # the client went away; nobody is left to answer
            return Response(status_code=400)

    async def model() -> JSONResponse:
        """Architecture, training dataset, test accuracy and versions of the served model."""
        return JSONResponse(predictor.info)

    async def healthz() -> JSONResponse:
        """``{"status": "ok"}`` while the server is up."""
        return JSONResponse({"status": "ok"})

    _get_and_head(router, "/api/model", model, response_model=ModelInfo, summary="Describe the loaded model")
    _get_and_head(router, "/healthz", healthz, response_model=Health, summary="Liveness probe")
    return router


def page_router() -> APIRouter:
    """The drawing page and its assets, read from the package once, here.

    Returns
    -------
    fastapi.APIRouter
        ``GET /``, ``GET /static/app.js``, ``/static/pad.js`` and ``/static/style.css`` (and HEAD), none in
        the API schema. No request ever touches the file system.
    """
    router = APIRouter(include_in_schema=False)
    for name in _STATIC_FILES:
        path = "/" if name == "index.html" else f"/static/{name}"
        content = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
        _get_and_head(router, path, _static_endpoint(content, _STATIC_FILES[name]))
    return router


def _static_endpoint(content: bytes, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def serve_file() -> Response:
        return Response(content, media_type=media_type, headers=_PAGE_HEADERS)

    return serve_file


def _get_and_head(router: APIRouter, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
    """Route GET and HEAD on ``path`` to ``endpoint``; only GET goes in the schema.

    Two routes rather than ``methods=["GET", "HEAD"]``, which would give both operations one
    operation id in ``/openapi.json``. The server (uvicorn) drops the body of a HEAD answer and
    keeps its headers, Content-Length included.
    """
    router.add_api_route(path, endpoint, methods=["GET"], responses=error_responses(), **options)
    router.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False, **options)


async def _read_digit(request: Request, predictor: Predictor, heavy: _HeavyJobs) -> dict[str, Any]:
    """The prediction for a ``POST /api/predict`` request, by Content-Type, or raise :class:`ClientError`."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        body = await request.body()
        if len(body) <= INLINE_BODY_BYTES:
            return predictor.from_json(body)
        return await heavy.run(predictor.from_json, body)
    if media_type == "multipart/form-data":
        return await heavy.run(predictor.from_image, await _uploaded_file(request))
    if media_type.startswith("image/"):
        return await heavy.run(predictor.from_image, await request.body())
    shown = f"Content-Type {media_type!r}" if media_type else "a request without a Content-Type"
    raise ClientError(
        415,
        f'The API does not read {shown}; send JSON {{"pixels": [[...], ...]}} as '
        "application/json, or an image file as multipart/form-data in a field "
        "named 'image'.",
    )


async def _uploaded_file(request: Request) -> bytes:
    """The bytes of the multipart field ``image``, or raise :class:`ClientError`."""
    parser = _InMemoryMultiPartParser(request.headers, request.stream(), max_files=1, max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise ClientError(
            400, f"The multipart body could not be parsed ({error}); send one image file in a field named 'image'."
        ) from None
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ClientError(
                422, "The multipart body needs a file field named 'image' holding a PNG or JPEG of a digit."
            )
        return await upload.read()
    finally:
        await form.close()


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
