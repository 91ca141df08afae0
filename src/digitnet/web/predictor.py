"""From a request body to the network's answer: parsing, preprocessing and prediction.

:class:`Predictor` owns the loaded network and turns a drawing (JSON ``pixels``) or an image file
into a prediction dict. Nothing here knows about HTTP except :class:`ClientError`, which carries the
status code the web layer answers with when the client sent something unusable.

Every drawing and upload goes through :func:`digitnet.preprocess.to_mnist`, the same MNIST-style
cropping, scaling and centring that ``digitnet predict`` applies to image files.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image

from .. import __version__
from ..errors import DigitnetError
from ..nn.ensemble import Model
from ..preprocess import MAX_IMAGE_PIXELS, load_image, to_mnist

__all__ = ["MAX_PIXELS_SIDE", "MAX_UPLOAD_PIXELS", "ClientError", "Predictor", "ink_from_upload", "pixels_from_json"]

#: Largest side of a ``pixels`` array. The page sends 56x56; MNIST itself is 28x28.
MAX_PIXELS_SIDE = 512
#: Largest uploaded image, in pixels (width x height), checked from the file header before
#: decoding. Smaller than the command line's limit because a server decodes for strangers,
#: several requests at a time: a 16-megapixel image already needs about 200 MB while decoding.
MAX_UPLOAD_PIXELS = min(4096 * 4096, MAX_IMAGE_PIXELS)


class ClientError(Exception):
    """A request the server cannot serve through the client's fault; becomes ``{"detail": ...}``.

    Parameters
    ----------
    status_code : int
        The 4xx status to answer with.
    detail : str
        One sentence: what is wrong and what to do.
    """

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def pixels_from_json(body: bytes) -> np.ndarray:
    """Parse ``{"pixels": [[...], ...]}`` into a 2-D numeric array.

    Parameters
    ----------
    body : bytes
        The raw JSON request body.

    Returns
    -------
    numpy.ndarray
        The HxW array, each side at most :data:`MAX_PIXELS_SIDE`. Its values are checked (finite,
        in [0, 1], some ink) later, by :func:`~digitnet.preprocess.to_mnist`.

    Raises
    ------
    ClientError
        400 for a body that is not JSON, 422 for JSON without a usable ``pixels`` array.
    """
    try:
        payload = json.loads(body)
    except RecursionError:  # e.g. ten thousand nested brackets
        raise ClientError(400, 'The JSON body is nested too deeply; send {"pixels": [[...], ...]}.') from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise ClientError(400, f'The body is not valid JSON ({error}); send {{"pixels": [[...], ...]}}.') from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        raise ClientError(
            422,
            'The JSON body needs a "pixels" field: an HxW array of ink '
            'intensities between 0 and 1, e.g. {"pixels": [[0, 0.5], [1, 0]]}.',
        )
    return _pixel_array(payload["pixels"])


def _pixel_array(rows: Any) -> np.ndarray:
    """Check the shape and type of a decoded ``pixels`` value and make it an array."""
    if not isinstance(rows, list) or not rows:
        raise ClientError(
            422, '"pixels" must be a non-empty list of rows, each a list of numbers between 0 and 1 (an HxW array).'
        )
    if len(rows) > MAX_PIXELS_SIDE:  # cheap early exit; the body limit bounds the width's cost
        raise ClientError(
            422, f'"pixels" has {len(rows)} rows, more than the limit of {MAX_PIXELS_SIDE}; downsample the drawing.'
        )
    # One pass in C: NumPy finds the shape and the type. Ragged rows raise ValueError; strings,
    # nulls, objects and integers beyond float range give a non-numeric dtype.
    try:
        array = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        raise ClientError(
            422,
            '"pixels" must be a rectangular HxW array: a list of rows of equal '
            "length, each a list of numbers between 0 and 1.",
        ) from None
    if array.ndim != 2 or array.shape[1] == 0:
        raise ClientError(
            422,
            f'"pixels" has shape {array.shape}; send a 2-D HxW array: a list of '
            "rows, each a list of numbers between 0 and 1.",
        )
    if array.dtype.kind not in "iuf":
        raise ClientError(
            422, '"pixels" must hold only numbers between 0 and 1 (ink intensities), not strings, nulls or objects.'
        )
    if array.shape[1] > MAX_PIXELS_SIDE:
        raise ClientError(
            422,
            f'"pixels" is {array.shape[0]}x{array.shape[1]}, larger than the '
            f"limit of {MAX_PIXELS_SIDE}x{MAX_PIXELS_SIDE}; downsample the drawing.",
        )
    # Checked here, in float64, as the API's documented contract: preprocessing checks again, but
    # only after casting to float32, where a value like -1e39 overflows to -inf with a warning.
    if not np.isfinite(array).all():
        raise ClientError(422, '"pixels" holds NaN or infinite values; send numbers between 0 and 1.')
    low, high = array.min(), array.max()
    if low < 0 or high > 1:
        raise ClientError(
            422,
            f'"pixels" values must be between 0 and 1 (ink intensities), but '
            f"these range from {low:.4g} to {high:.4g}; scale them into [0, 1].",
        )
    return array


def ink_from_upload(data: bytes) -> np.ndarray:
    """Decode an uploaded image file into an ink map.

    Parameters
    ----------
    data : bytes
        The file's bytes (PNG, JPEG or anything else Pillow reads).

    Returns
    -------
    numpy.ndarray
        The ink map from :func:`~digitnet.preprocess.load_image` (ink high, in [0, 1]).

    Raises
    ------
    ClientError
        413 for an image with more than :data:`MAX_UPLOAD_PIXELS` pixels (found from the header,
        before decoding), 422 for an empty file, a file that is not an image, or one that
        preprocessing refuses.
    """
    if not data:
        raise ClientError(422, "The uploaded file is empty; choose a PNG or JPEG image of a digit.")
    try:  # header only: refuse huge images before decoding a single pixel
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001  # not an image, or a hostile one: load_image below explains which
        width = height = 0
    if width * height > MAX_UPLOAD_PIXELS:
        raise ClientError(
            413,
            f"The uploaded image is {width}x{height} pixels, more than the limit "
            f"of {MAX_UPLOAD_PIXELS // 1_000_000} megapixels; scale it down and "
            "try again.",
        )
    try:
        return load_image(data)
    except DigitnetError as error:  # ImageError and any other refusal: the message says why
        raise ClientError(422, str(error)) from None


class Predictor:
    """The loaded network, reading digits from drawings and image files.

    Parameters
    ----------
    network : Network or Ensemble
        A model for 28x28 single-channel images (784 inputs), e.g. from
        :func:`digitnet.nn.ensemble.load_model`.
        It is only read, never changed, so one predictor serves every request.

    Raises
    ------
    DigitnetError
        If the network does not take 28x28 images (the page draws MNIST-style digits).

    Notes
    -----
    There is no lock around the network: inference is stateless (layers keep nothing between
    calls unless training), so worker threads and the event loop may call
    :meth:`~digitnet.nn.Network.predict_proba` at the same time.
    """

    def __init__(self, network: Model) -> None:
        if int(np.prod(network.input_shape)) != 28 * 28:
            raise DigitnetError(
                f"This model takes inputs of shape {tuple(network.input_shape)}, but "
                "the drawing page makes 28x28 MNIST-style digits; serve a model "
                "trained on mnist (or another 28x28 dataset)."
            )
        self.network = network
        self.info = model_info(network)

    def predict_ink(self, ink: np.ndarray) -> dict[str, Any]:
        """Preprocess an ink map like MNIST and read it.

        Parameters
        ----------
        ink : numpy.ndarray
            An HxW array of ink intensities in [0, 1], ink high.

        Returns
        -------
        dict
            ``{"digit", "label", "probabilities", "input"}``, as :class:`~digitnet.web.schemas.Prediction`.

        Raises
        ------
        ClientError
            422 when preprocessing refuses the ink (NaN, out of range, blank, no single digit...).
        """
        try:
            x = to_mnist(ink)
        except DigitnetError as error:
            raise ClientError(422, str(error)) from None
        probabilities = self.network.predict_proba(x[np.newaxis])[0]
        digit = int(probabilities.argmax())
        return {
            "digit": digit,
            "label": self.network.class_names[digit],
            "probabilities": [round(float(p), 6) for p in probabilities],
            # Three decimals: plenty for display, and a third of the bytes of full floats.
            "input": np.round(x, 3).tolist(),
        }

    def from_json(self, body: bytes) -> dict[str, Any]:
        """Read the digit in a JSON ``{"pixels": ...}`` body; see :func:`pixels_from_json`."""
        return self.predict_ink(pixels_from_json(body))

    def from_image(self, data: bytes) -> dict[str, Any]:
        """Read the digit in an image file; see :func:`ink_from_upload`."""
        return self.predict_ink(ink_from_upload(data))


def model_info(network: Model) -> dict[str, Any]:
    """What ``GET /api/model`` says about ``network`` (see :class:`~digitnet.web.schemas.ModelInfo`)."""
    metrics = network.metadata.get("metrics") or {}
    accuracy = metrics.get("test_accuracy") if isinstance(metrics, dict) else None
    dataset = network.metadata.get("dataset")
    written_by = network.metadata.get("digitnet_version")
    return {
        "architecture": network.describe(),
        "parameters": int(network.num_parameters()),
        "dataset": str(dataset) if dataset is not None else None,
        "test_accuracy": float(accuracy) if isinstance(accuracy, (int, float)) else None,
        "class_names": [str(name) for name in network.class_names],
        "input_shape": [int(size) for size in network.input_shape],
        "version": __version__,
        "model_version": str(written_by) if written_by else None,
    }
