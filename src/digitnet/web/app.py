"""The draw-a-digit web app: a JSON API around one loaded network, and the page that uses it.

:func:`create_app` builds a FastAPI (ASGI) application for a network that is already loaded, so the
model is read from disk once, at start-up, and never on a client's behalf. ``digitnet serve`` runs
it on uvicorn with the connection limits and timeouts of :mod:`digitnet.web.server`.

The pieces:

* :mod:`~digitnet.web.predictor`: the network, and request bodies turned into predictions;
* :mod:`~digitnet.web.routes`: the page and the API routes (listed there);
* :mod:`~digitnet.web.middleware`: refusals before routing (framing, body size, Host);
* :mod:`~digitnet.web.schemas`: the shapes that ``/openapi.json`` documents.

``/docs`` (Swagger UI) browses that schema; its script and styles come from the ``fastapi-offline``
package and are served by the app itself, so it works offline.

Bad input is the client's fault and always gets a 4xx answer with ``{"detail": "<one sentence>"}``:
400 for a body that cannot be parsed, 413 for one that is too large, 415 for a content type the
API does not read, 422 for a well-formed body that holds no usable digit, 421 for a Host header
that names another server. Even a 500 (a bug) is answered in that shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from .. import __version__
from ..nn.ensemble import Model
from .middleware import (
    MAX_BODY_BYTES,
    BodySizeLimitMiddleware,
    HostCheckMiddleware,
    refusal,
)
from .predictor import MAX_PIXELS_SIDE, MAX_UPLOAD_PIXELS, ClientError, Predictor
from .routes import INLINE_BODY_BYTES, api_router, page_router

__all__ = ["INLINE_BODY_BYTES", "MAX_BODY_BYTES", "MAX_PIXELS_SIDE", "MAX_UPLOAD_PIXELS", "create_app"]


def create_app(
    network: Model, *, allowed_hosts: Sequence[str] | None = None, allow_ip_literals: bool = False
) -> FastAPI:
    """Build the web app around an already loaded network.

    Parameters
    ----------
    network : Network or Ensemble
        A model for 28x28 single-channel images (784 inputs), e.g. from
        :func:`digitnet.nn.ensemble.load_model`.
        It is only read, never changed, so one network serves every request.
    allowed_hosts : sequence of str, optional
        Host names the app answers for (see :class:`~digitnet.web.middleware.HostCheckMiddleware`);
        any other Host gets 421. None (the default) checks nothing, for embedding the app in
        another server or test client; ``digitnet serve`` always passes the names of its address.
    allow_ip_literals : bool, optional
        Also answer requests whose Host is any IP address (for a server on 0.0.0.0).

    Returns
    -------
    fastapi.FastAPI
        An ASGI application; run it with :func:`digitnet.web.server.run` or ``digitnet serve``.

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

    It answers ``{"digit", "label", "probabilities", "input"}`` (see
    :class:`~digitnet.web.schemas.Prediction`).
    """
    predictor = Predictor(network)
    # FastAPIOffline: FastAPI whose /docs (Swagger UI) loads its script and styles from the
    # fastapi-offline package, served here, rather than from a CDN; so it works offline. No /redoc:
    # ReDoc still fetches its logo from its vendor's CDN.
    app = FastAPIOffline(
        redoc_url=None,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the online validator
        title="digitnet",
        version=__version__,
        description="Read a handwritten digit with a neural network written from scratch in NumPy. "
        "Drawings and images get the same MNIST-style preprocessing as `digitnet predict`.",
    )
    app.include_router(api_router(predictor))
    app.include_router(page_router())
    _add_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    if allowed_hosts is not None:  # added last, so it runs first: other hosts get nothing else
        app.add_middleware(HostCheckMiddleware, allowed_hosts=list(allowed_hosts), allow_ip_literals=allow_ip_literals)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Make every error answer ``{"detail": "<one sentence>"}``, FastAPI's own ones included."""

    @app.exception_handler(ClientError)
    async def client_error(request: Request, error: ClientError) -> JSONResponse:
        return refusal(error.status_code, error.detail)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        path = request.url.path[:200]
        if error.status_code == 404:
            detail = f"There is nothing at {path}; the page is at / and the API is described at /openapi.json."
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "another method")
            detail = f"{request.method} is not allowed on {path}; use {allowed}."
        else:
            detail = error.detail if isinstance(error.detail, str) else f"The request failed ({error.status_code})."
        response = refusal(error.status_code, detail)
        response.headers.update(error.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        # No route takes validated parameters today; this keeps any future one to the same shape.
        return refusal(
            422, f"The request does not match the API schema ({len(error.errors())} problem(s)); see /openapi.json."
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        # Starlette still re-raises the exception after this answer, so the server logs the bug.
        return refusal(500, "The server failed to read this request; this is a bug in digitnet, please report it.")
