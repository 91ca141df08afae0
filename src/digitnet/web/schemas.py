"""The API's request and response shapes; they document it in ``/openapi.json``.

The handlers build plain dicts and answer with ``JSONResponse``: these models describe the shapes
without re-validating 800 floats per request. ``tests/test_api_fuzz.py`` checks that every answer
matches them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from .middleware import MAX_BODY_BYTES
from .predictor import MAX_PIXELS_SIDE

__all__ = [
    "ERROR_RESPONSES",
    "PREDICT_BODY",
    "ErrorMessage",
    "Health",
    "ModelInfo",
    "PixelsRequest",
    "Prediction",
    "error_responses",
]

_Intensity = Annotated[float, Field(ge=0, le=1)]
_Row = Annotated[list[_Intensity], Field(min_length=1, max_length=MAX_PIXELS_SIDE)]


class PixelsRequest(BaseModel):
    """A drawing as an array of ink intensities."""

    pixels: list[_Row] = Field(
        min_length=1,
        max_length=MAX_PIXELS_SIDE,
        description=f"An HxW array (rows of equal length), ink intensity from 0 (paper) to 1 (ink), "
        f"ink high; each side 1 to {MAX_PIXELS_SIDE}. 28x28 is the common case; any size "
        "is cropped to its ink, scaled and centred like an MNIST digit. A blank drawing "
        "is refused (422).",
        examples=[
            [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
            [[0, 1, 1, 1, 0], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]],
        ],
    )


class Prediction(BaseModel):
    """What the network read."""

    digit: int = Field(description="Index of the most probable class (the digit for MNIST).")
    label: str = Field(description="Name of that class, e.g. '7'.")
    probabilities: list[float] = Field(description="One probability per class, in class order; they sum to 1.")
    input: list[list[float]] = Field(
        description="The 28x28 image the network saw after MNIST-style preprocessing, values in [0, 1], ink high."
    )


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
    """The liveness answer."""

    status: str = "ok"


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorMessage, "description": description}


#: Answers any route may give, whatever its body: the server checks these before routing.
_ANY_ROUTE: dict[int | str, dict[str, Any]] = {
    400: _error(
        "The request is malformed: a bad Content-Length, both Content-Length and "
        "Transfer-Encoding, a missing Host header, or (for POST) a body that cannot be parsed."
    ),
    408: _error("The request's headers or body did not arrive in time; the connection is closed."),
    413: _error(f"The body is larger than {MAX_BODY_BYTES} bytes (or, for an upload, the image has too many pixels)."),
    421: _error(
        "The Host header names a host this server does not answer for (a DNS-rebinding "
        "guard); use the address the server printed, or start it with --allow-host."
    ),
}

#: Every error ``POST /api/predict`` can answer with.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ANY_ROUTE,
    400: _error(
        "The body could not be parsed (malformed JSON or multipart), or the request is "
        "malformed (bad Content-Length, both Content-Length and Transfer-Encoding)."
    ),
    415: _error("The Content-Type is not one the API reads."),
    422: _error(
        "The body is well-formed but holds no usable digit: wrong shape, values outside "
        "[0, 1], NaN, a blank drawing, or a file that is not an image."
    ),
}


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The documented errors of a GET route (a copy: FastAPI may edit what it is given)."""
    return dict(_ANY_ROUTE)


PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": PixelsRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "description": "A PNG or JPEG (any colours, any size up to the limits) showing one digit.",
                    }
                },
            },
        },
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}
