"""The digitnet model file: what it holds, and how it is read without trusting it.

The format
----------
A model file is a ZIP archive in NumPy's ``.npz`` layout, as :func:`numpy.savez` writes it. It
holds exactly these members and nothing else:

``metadata.npy``
    A 0-d NumPy unicode array (dtype ``<U<n>``) whose one string is a JSON object, at most
    ``MAX_METADATA_BYTES`` (1 MiB) of array data.
``layer<i>.<name>.npy``
    One ``.npy`` array per parameter or saved buffer of layer ``i`` (counting from 0):
    ``W`` and ``b`` for ``Dense`` (``(in_features, out_features)``, ``(out_features,)``) and
    ``Conv2D`` (``(out_channels, in_channels, kh, kw)``, ``(out_channels,)``); ``gamma``,
    ``beta``, ``running_mean``, ``running_var`` for ``BatchNorm`` (``(channels,)`` each). Every
    array has the metadata's ``dtype`` (either byte order, C or Fortran order).

Members are stored uncompressed (``np.savez``) or deflated (``np.savez_compressed``); a deflated
member may expand at most ``MAX_INFLATION`` times (plus 64 KiB), because weights do not compress
much and anything that does is a zip bomb. Encrypted members, other compressions and NumPy's
pickled ``object`` arrays are refused.

The metadata (one schema, :class:`MetadataSchema`)
--------------------------------------------------
====================  ==========================================================================
``format``            ``"digitnet-model"``
``format_version``    1 (a larger number asks for a newer digitnet)
``layers``            1 to 256 layer objects, each ``{"type": ..., <its settings>}``: ``Dense``
                      (``in_features``, ``out_features``), ``Conv2D`` (``in_channels``,
                      ``out_channels``, ``kernel_size`` [h, w], ``padding`` "same", "valid" or an
                      int), ``MaxPool2D`` (``pool_size``, ``stride``), ``Dropout`` (``rate``),
                      ``BatchNorm`` (``channels``, ``momentum``, ``eps``), ``ReLU``, ``Flatten``.
                      Unknown settings are refused.
``input_shape``       ``[channels, height, width]``
``normalisation``     ``{"mean": finite, "std": positive finite}``
``class_names``       one string per output
``dtype``             ``"float32"`` or ``"float64"``
``digitnet_version``  short strings (optional), as are ``dataset`` and ``model``
``training``          object: the training settings (optional; known keys are type-checked)
``metrics``           object: ``test_accuracy`` in [0, 1], ``train_seconds`` (optional)
``history``           list of epoch records ``{"epoch": int, "loss": ..., ...}`` (optional)
====================  ==========================================================================

Other top-level keys are free-form facts a caller saved with the model; they are kept as they are
(any JSON, nested at most ``MAX_JSON_DEPTH`` levels). Whole numbers must be JSON integers
(``1``, not ``1.0``, ``"1"`` or ``true``).

Limits
------
=========================================  ====================================================
layers                                     at most 256 (``MAX_LAYERS``)
Dense units, BatchNorm channels, classes   at most 65,536 (``MAX_FEATURES``)
Conv2D channels                            at most 4,096 (``MAX_CHANNELS``)
kernel size and integer padding            at most 32 (``MAX_KERNEL``)
pooling window and stride                  at most 32 (``MAX_POOL``)
image side                                 at most 4,096 (``MAX_IMAGE_SIDE``)
values per image between two layers        at most 262,144 (``MAX_ACTIVATION``), input included
im2col values per image in a Conv2D        at most 1,048,576 (``MAX_CONV_COLUMNS``)
class name; dataset and other short texts  64 characters; 256 characters
history                                    at most 100,000 epoch records
metadata JSON                              1 MiB as UTF-32, nested at most 32 levels
ZIP directory                              at most 1,025 entries and 256 KiB
deflated member                            at most 4x its compressed size, plus 64 KiB
=========================================  ====================================================

Saving checks the same rules (and finite weights) before writing, so every file written can be
read back; nothing is written when they fail.

Reading order
-------------
Everything is checked before anything the size of the model is allocated: the file's first bytes
(a ZIP at all?), the ZIP directory's size and entry count, every member's name, compression and
sizes, the metadata (read with a bounded read, parsed, validated against the schema and followed
through the chain of layer shapes), and every array's ``.npy`` header (dtype, shape, and the size
it implies against the member's size). Only then is the network built and each array streamed
into it in 1 MiB chunks, checked to be finite on the way. Last, BatchNorm variances must not be
negative and a forward pass on a few probe images (blank, white, noise) must give finite logits.
Every refusal is a :class:`~digitnet.errors.ModelFileError` whose message is one sentence.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal, get_args

import numpy as np
from numpy.lib import format as npy_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ModelFileError

if TYPE_CHECKING:
    from .network import Network

FORMAT_NAME = "digitnet-model"
FORMAT_VERSION = 1

#: Largest metadata array (the JSON text as UTF-32): far above a trained model's few kilobytes.
MAX_METADATA_BYTES = 1 << 20
#: A ``.npy`` header is about 128 bytes; anything longer than this is not ours.
MAX_HEADER_BYTES = 4096
MAX_LAYERS = 256
#: Every layer has at most four arrays, plus the metadata.
MAX_MEMBERS = 1 + 4 * MAX_LAYERS
#: The ZIP central directory of MAX_MEMBERS entries with short names fits in well under this.
MAX_DIRECTORY_BYTES = 256 << 10
MAX_INFLATION = 4
INFLATION_SLACK = 64 << 10
MAX_JSON_DEPTH = 32
MAX_FEATURES = 1 << 16
MAX_CHANNELS = 4096
MAX_KERNEL = 32
MAX_POOL = 32
MAX_IMAGE_SIDE = 4096
MAX_ACTIVATION = 1 << 18
MAX_CONV_COLUMNS = 1 << 20
#: Longest class name, in characters (every limit is in the table above).
MAX_NAME_LENGTH = 64
MAX_TEXT_LENGTH = 256
MAX_HISTORY = 100_000
#: Arrays stream from the archive into the network in pieces of this size.
READ_CHUNK_BYTES = 1 << 20

_METADATA_MEMBER = "metadata.npy"
_ARRAY_MEMBER = re.compile(r"layer(\d{1,4})\.([A-Za-z_]{1,32})\.npy")
_ZIP_MAGIC = b"PK"
_END_OF_DIRECTORY = b"PK\x05\x06"
_END_RECORD = struct.Struct("<4s4H2LH")
_RESERVED_KEYS = frozenset(
    {"format", "format_version", "layers", "input_shape", "normalisation", "class_names", "dtype", "digitnet_version"}
)


class _Refusal(Exception):
    """Internal: why a file (or a network about to be saved) breaks the format, as a phrase.

    ``kind`` picks the sentence around it: ``"invalid"`` (content that breaks the rules),
    ``"unreadable"`` (damage to the container: ZIP, ``.npy`` headers, the metadata's JSON) or
    ``"foreign"`` (a readable archive that is not a digitnet model at all) or ``"plain"`` (the
    phrase is the whole sentence).
    """

    def __init__(self, problem: str, *, kind: Literal["invalid", "unreadable", "foreign", "plain"] = "invalid") -> None:
        super().__init__(problem)
        self.problem, self.kind = problem, kind


def _refusal_message(source: str, refusal: _Refusal) -> str:
    if refusal.kind == "unreadable":
        return f"{source}: not a readable digitnet model ({refusal.problem}); train a new one with `digitnet train`."
    if refusal.kind == "plain":
        return f"{source}: {refusal.problem}."
    if refusal.kind == "foreign":
        return f"{source}: not a digitnet model ({refusal.problem}); train one with `digitnet train`."
    return (
        f"{source}: {refusal.problem}; the file is not a valid digitnet model, train a new one with `digitnet train`."
    )


# -- the metadata schema ----------------------------------------------------------------------


def _whole(low: int, high: int, **kwargs: Any) -> Any:
    return Field(ge=low, le=high, description=f"must be a whole number from {low} to {high}", **kwargs)


_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]


class _Schema(BaseModel):
    # strict: JSON 1.0, "1" and true are not the integer 1; forbid: a setting the format does not
    # know is damage (or a newer file), not something to ignore silently.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _LayerMismatch(Exception):
    """Internal: a layer's settings do not fit the shape that reaches it."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field, self.problem = field, problem


def _values(shape: tuple[int, ...]) -> str:
    return f"{math.prod(shape)} values" if len(shape) == 1 else f"shape {shape}"


class _LayerSchema(_Schema):
    def arrays(self) -> dict[str, tuple[int, ...]]:
        """The layer's arrays in the file, by name, with their shapes."""
        return {}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """One image's output shape for input ``shape``; raises :class:`_LayerMismatch`."""
        return shape

    def settings(self) -> dict[str, Any]:
        """The layer's ``from_config`` arguments."""
        return self.model_dump(exclude={"type"})


class DenseSchema(_LayerSchema):
    """A ``Dense`` layer: ``in_features`` inputs to ``out_features`` outputs; arrays ``W`` and ``b``."""

    type: Literal["Dense"]
    in_features: int = _whole(1, MAX_FEATURES)
    out_features: int = _whole(1, MAX_FEATURES)

    def arrays(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 1:
            raise _LayerMismatch(
                None,
                f"(Dense) needs flat input but the layers before it give shape {shape} (is a Flatten layer missing?)",
            )
        if shape[0] != self.in_features:
            raise _LayerMismatch(
                "in_features", f"is {self.in_features} but the layers before it give {shape[0]} values"
            )
        return (self.out_features,)


class Conv2DSchema(_LayerSchema):
    """A ``Conv2D`` layer: channels, kernel size and padding; arrays ``W`` and ``b``."""

    type: Literal["Conv2D"]
    in_channels: int = _whole(1, MAX_CHANNELS)
    out_channels: int = _whole(1, MAX_CHANNELS)
    kernel_size: list[Annotated[int, Field(ge=1, le=MAX_KERNEL)]] = Field(
        min_length=2, max_length=2, description=f"must be two whole numbers (height, width) from 1 to {MAX_KERNEL}"
    )
    padding: Any = Field(description=f'must be "same", "valid" or a whole number from 0 to {MAX_KERNEL}')

    @field_validator("padding")
    @classmethod
    def _known_padding(cls, value: Any) -> Any:
        if isinstance(value, str) and value in ("same", "valid"):
            return value
        if type(value) is int and 0 <= value <= MAX_KERNEL:  # type(): true is not a padding
            return value
        raise ValueError("invalid padding")

    def arrays(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.out_channels, self.in_channels, *self.kernel_size), "b": (self.out_channels,)}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3:
            raise _LayerMismatch(None, f"(Conv2D) needs images (channels, height, width) but gets {_values(shape)}")
        if shape[0] != self.in_channels:
            raise _LayerMismatch(
                "in_channels", f"is {self.in_channels} but the layers before it give {shape[0]} channels"
            )
        kh, kw = self.kernel_size
        if self.padding == "same":  # as Conv2D pads: the output keeps the input's size
            out_h, out_w = shape[1], shape[2]
        else:
            pad = 0 if self.padding == "valid" else 2 * self.padding
            out_h, out_w = shape[1] + pad - kh + 1, shape[2] + pad - kw + 1
        if out_h < 1 or out_w < 1:
            raise _LayerMismatch("kernel_size", f"{kh}x{kw} does not fit its {shape[1]}x{shape[2]} input")
        columns = self.in_channels * kh * kw * out_h * out_w
        if columns > MAX_CONV_COLUMNS:
            raise _LayerMismatch(
                None, f"(Conv2D) would need {columns} im2col values per image (at most {MAX_CONV_COLUMNS})"
            )
        return (self.out_channels, out_h, out_w)


class MaxPool2DSchema(_LayerSchema):
    """A ``MaxPool2D`` layer: window ``pool_size``, ``stride`` (``null``: the window); no arrays."""

    type: Literal["MaxPool2D"]
    pool_size: int = _whole(1, MAX_POOL)
    stride: int | None = Field(
        None, ge=1, le=MAX_POOL, description=f"must be a whole number from 1 to {MAX_POOL} or null"
    )

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3:
            raise _LayerMismatch(None, f"(MaxPool2D) needs images (channels, height, width) but gets {_values(shape)}")
        if min(shape[1:]) < self.pool_size:
            raise _LayerMismatch("pool_size", f"{self.pool_size} does not fit its {shape[1]}x{shape[2]} input")
        stride = self.stride or self.pool_size
        return (shape[0], (shape[1] - self.pool_size) // stride + 1, (shape[2] - self.pool_size) // stride + 1)


class DropoutSchema(_LayerSchema):
    """A ``Dropout`` layer: the ``rate`` it drops at while training; no arrays."""

    type: Literal["Dropout"]
    rate: _Finite = Field(ge=0, lt=1, description="must be a number from 0 up to (not including) 1")


class BatchNormSchema(_LayerSchema):
    """A ``BatchNorm`` layer: ``channels``, ``momentum``, ``eps``; its four arrays of ``channels`` values."""

    type: Literal["BatchNorm"]
    channels: int = _whole(1, MAX_FEATURES)
    momentum: _Finite = Field(0.1, ge=0, le=1, description="must be a number from 0 to 1")
    eps: _Finite = Field(1e-5, gt=0, le=1, description="must be a positive number at most 1")

    def arrays(self) -> dict[str, tuple[int, ...]]:
        return {name: (self.channels,) for name in ("gamma", "beta", "running_mean", "running_var")}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) not in (1, 3):
            raise _LayerMismatch(None, f"(BatchNorm) needs features or images but gets shape {shape}")
        if shape[0] != self.channels:
            raise _LayerMismatch(
                "channels",
                f"is {self.channels} but the layers before it give {shape[0]} "
                f"{'values' if len(shape) == 1 else 'channels'}",
            )
        return shape


class ReLUSchema(_LayerSchema):
    """A ``ReLU`` layer: no settings, no arrays."""

    type: Literal["ReLU"]


class FlattenSchema(_LayerSchema):
    """A ``Flatten`` layer: no settings, no arrays."""

    type: Literal["Flatten"]

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(shape),)


#: Any one layer object, told apart by its ``type``; the order is the order errors list them in.
_AnyLayer = Annotated[
    DenseSchema | Conv2DSchema | MaxPool2DSchema | DropoutSchema | BatchNormSchema | ReLUSchema | FlattenSchema,
    Field(discriminator="type"),
]


def _layer_type(schema: type[_LayerSchema]) -> str:
    """The ``type`` tag a layer schema accepts (the one value of its ``Literal`` annotation)."""
    (tag,) = get_args(schema.model_fields["type"].annotation)
    return str(tag)


#: Every layer schema by its ``type`` tag.
LAYER_SCHEMAS: dict[str, type[_LayerSchema]] = {
    _layer_type(schema): schema for schema in get_args(get_args(_AnyLayer)[0])
}


class NormalisationSchema(_Schema):
    """The input normalisation ``(x - mean) / std`` the network was trained with."""

    mean: _Finite = Field(description="must be a finite number")
    std: _Finite = Field(gt=0, description="must be a positive finite number")


class TrainingSchema(_Schema):
    """The settings of ``digitnet train``; keys it does not name are kept as they are."""

    model_config = ConfigDict(extra="allow")
    augment: str | None = Field(None, description="must be a string or null")
    epochs: int | None = Field(None, ge=0, description="must be a non-negative whole number or null")
    batch_size: int | None = Field(None, ge=1, description="must be a positive whole number or null")
    lr: _Finite | None = Field(None, description="must be a finite number or null")
    seed: int | None = Field(None, description="must be a whole number or null")


class MetricsSchema(_Schema):
    """Measurements of the trained model; other keys are kept as they are."""

    model_config = ConfigDict(extra="allow")
    test_accuracy: _Finite | None = Field(None, ge=0, le=1, description="must be a number from 0 to 1 or null")
    train_seconds: _Finite | None = Field(None, ge=0, description="must be a non-negative finite number or null")


class EpochSchema(_Schema):
    """One epoch of the training history (``digitnet.train.EpochRecord``); more keys are kept."""

    model_config = ConfigDict(extra="allow")
    epoch: int = Field(ge=0, description="must be a non-negative whole number")
    seconds: _Finite | None = Field(None, description="must be a finite number or null")
    loss: _Finite | None = Field(None, description="must be a finite number or null")
    train_accuracy: _Finite | None = Field(None, description="must be a finite number or null")
    val_accuracy: _Finite | None = Field(None, description="must be a finite number or null")
    lr: _Finite | None = Field(None, description="must be a finite number or null")


class MetadataSchema(_Schema):
    """The whole metadata of a model file; see the module notes for each field."""

    # Top-level keys outside the format are a caller's free-form facts (Network.metadata).
    model_config = ConfigDict(extra="allow")
    format: Literal["digitnet-model"] = Field(description=f'must be "{FORMAT_NAME}"')
    format_version: int = Field(
        FORMAT_VERSION,
        ge=1,
        le=FORMAT_VERSION,
        description=f"must be a whole number (this digitnet reads version {FORMAT_VERSION})",
    )
    layers: list[_AnyLayer] = Field(
        min_length=1,
        max_length=MAX_LAYERS,
        description=(f"must be a list of 1 to {MAX_LAYERS} layer objects, each with a known type"),
    )
    input_shape: list[Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]] = Field(
        min_length=3,
        max_length=3,
        description=f"must be three whole numbers (channels, height, width) from 1 to {MAX_IMAGE_SIDE}",
    )
    normalisation: NormalisationSchema = Field(description="must be an object with a mean and a std")
    class_names: list[Annotated[str, Field(max_length=MAX_NAME_LENGTH)]] = Field(
        min_length=1,
        max_length=MAX_FEATURES,
        description=f"must be a list of names (strings of at most {MAX_NAME_LENGTH} characters), one per output",
    )
    dtype: Literal["float32", "float64"] = Field("float32", description='must be "float32" or "float64"')
    digitnet_version: _Text | None = Field(None, description="must be a short string or null")
    dataset: _Text | None = Field(None, description="must be a short string or null")
    model: _Text | None = Field(None, description="must be a short string or null")
    training: TrainingSchema | None = Field(None, description="must be an object (the training settings) or null")
    metrics: MetricsSchema | None = Field(None, description="must be an object (measurements) or null")
    history: list[EpochSchema] | None = Field(
        None,
        max_length=MAX_HISTORY,
        description=(f"must be a list of at most {MAX_HISTORY} epoch records (objects with an epoch number) or null"),
    )


def _collect_rules() -> dict[str, str]:
    """Field name -> the rule its description states, over every schema class."""
    rules: dict[str, str] = {}
    schemas: tuple[type[_Schema], ...] = (
        MetadataSchema,
        NormalisationSchema,
        TrainingSchema,
        MetricsSchema,
        EpochSchema,
        *LAYER_SCHEMAS.values(),
    )
    for schema in schemas:
        for name, field in schema.model_fields.items():
            if field.description:
                rules.setdefault(name, field.description)
    return rules


#: The rule each metadata field must follow, as the end of a sentence, by field name.
FIELD_RULES = _collect_rules()


# -- checking the metadata --------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """What validated metadata says the archive must hold.

    Attributes
    ----------
    schema : MetadataSchema
        The validated metadata.
    dtype : numpy.dtype
        Every array's dtype.
    arrays : dict of str to tuple of int
        Member name without ``.npy`` (``layer3.W``) -> the array's shape, in layer order.
    """

    schema: MetadataSchema
    dtype: np.dtype
    arrays: dict[str, tuple[int, ...]]


def _json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _decode_json(text: str) -> Any:
    """The JSON value in ``text``; raises :class:`_Refusal` for anything but JSON."""
    try:
        return json.loads(text)
    except RecursionError:  # json's C parser recurses once per nesting level
        raise _Refusal(f"its metadata nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError, and integers beyond Python's digit limit
        raise _Refusal(f"its metadata is not valid JSON ({error})", kind="unreadable") from None


def _check_envelope(metadata: Any) -> dict[str, Any]:
    """Nesting depth, format marker and version: what must hold before the schema is consulted.

    A newer format version is reported as such (not as the schema errors it would cause).
    """
    if _json_depth_exceeds(metadata, MAX_JSON_DEPTH):
        raise _Refusal(f"its metadata nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise _Refusal(f'its metadata has no "format": "{FORMAT_NAME}" marker', kind="foreign")
    version = metadata.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:
        raise _Refusal(
            f"written by a newer digitnet (format version {version}); upgrade digitnet to read it", kind="plain"
        )
    return metadata


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``('layers', 2, 'Dense', 'in_features')`` -> ``layers[2].in_features`` (no union tags)."""
    text = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        elif not (i > 0 and isinstance(loc[i - 1], int) and part in LAYER_SCHEMAS):
            text += f".{part}" if text else str(part)
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _schema_problem(error: ValidationError) -> str:
    """One phrase naming the first field that breaks the schema and the rule it breaks."""
    first = error.errors(include_url=False)[0]
    loc, kind, path = first["loc"], first["type"], _field_path(first["loc"])
    if kind == "union_tag_invalid":
        tag = first["input"].get("type") if isinstance(first["input"], dict) else None
        return f"metadata field {path}.type is {_short(tag)}, an unknown layer type (known: {', '.join(LAYER_SCHEMAS)})"
    if kind == "missing":
        return f"metadata field {path} is missing"
    if kind == "extra_forbidden":
        return f"metadata field {path} is not part of the format"
    named = [(i, part) for i, part in enumerate(loc) if isinstance(part, str) and part in FIELD_RULES]
    if not named:
        return f"metadata field {path} is invalid ({first['msg'].lower()})"
    rule_at, rule_field = named[-1]
    if rule_at == len(loc) - 1:
        return f"metadata field {path} {FIELD_RULES[rule_field]}"
    return f"metadata field {path} is invalid: {rule_field} {FIELD_RULES[rule_field]}"


def _check_layout(metadata: dict[str, Any]) -> _Layout:
    """Validate parsed metadata against the schema and the chain of layer shapes.

    Parameters
    ----------
    metadata : dict
        As :func:`_check_envelope` passes it.

    Returns
    -------
    _Layout
        The arrays the archive must hold.

    Raises
    ------
    _Refusal
        Naming the first field that breaks a rule.
    """
    try:
        schema = MetadataSchema.model_validate(metadata)
    except ValidationError as error:
        raise _Refusal(_schema_problem(error)) from None
    shape = tuple(schema.input_shape)
    if math.prod(shape) > MAX_ACTIVATION:
        raise _Refusal(
            f"metadata field input_shape describes images of {math.prod(shape)} values (at most {MAX_ACTIVATION})"
        )
    arrays: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(schema.layers):
        try:
            shape = layer.output_shape(shape)
        except _LayerMismatch as mismatch:
            field = f".{mismatch.field}" if mismatch.field else ""
            raise _Refusal(f"metadata field layers[{i}]{field} {mismatch.problem}") from None
        if math.prod(shape) > MAX_ACTIVATION:
            raise _Refusal(
                f"metadata field layers[{i}] ({layer.type}) gives {math.prod(shape)} values per "
                f"image (at most {MAX_ACTIVATION})"
            )
        arrays.update({f"layer{i}.{name}": size for name, size in layer.arrays().items()})
    if len(shape) != 1:
        raise _Refusal(f"metadata field layers ends with shape {shape}, not one score per class")
    if len(schema.class_names) != shape[0]:
        raise _Refusal(
            f"metadata field class_names has {len(schema.class_names)} names but the network gives {shape[0]} outputs"
        )
    return _Layout(schema, np.dtype(schema.dtype), arrays)


# -- reading the archive ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    """A ``.npy`` member's header: what its data is, and where the data starts."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    offset: int


#: What zipfile, zlib and the file system raise on a damaged archive.
_ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    struct.error,
    NotImplementedError,
    zlib.error,
)


def _check_directory(handle: IO[bytes], size: int) -> None:
    """Refuse a ZIP whose directory is missing or too large, before :class:`zipfile.ZipFile` reads it.

    Why: zipfile turns every directory entry into an object up front, so a small file of empty
    entries would cost memory many times its size.
    """
    tail_size = min(size, _END_RECORD.size + 0xFFFF)  # the end record, plus the longest comment
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(_END_OF_DIRECTORY)
    if at < 0 or len(tail) - at < _END_RECORD.size:
        raise _Refusal("the file is damaged or truncated: its ZIP directory is missing", kind="unreadable")
    _, disk, directory_disk, entries_here, entries, directory_size, _, _ = _END_RECORD.unpack_from(tail, at)
    if entries > MAX_MEMBERS or entries_here != entries or disk or directory_disk:
        raise _Refusal(f"its ZIP directory lists {entries} entries (a model has at most {MAX_MEMBERS})")
    if directory_size > MAX_DIRECTORY_BYTES:
        raise _Refusal(f"its ZIP directory is {directory_size} bytes (a model's is under {MAX_DIRECTORY_BYTES})")
    handle.seek(0)


def _member_limit(info: zipfile.ZipInfo) -> int:
    """The most bytes a member may hold uncompressed: its own size if stored, a bounded ratio if deflated."""
    if info.filename == _METADATA_MEMBER:
        ceiling = MAX_HEADER_BYTES + MAX_METADATA_BYTES
    else:
        ceiling = 1 << 62
    if info.compress_type == zipfile.ZIP_STORED:
        return min(ceiling, info.compress_size)
    return min(ceiling, MAX_INFLATION * info.compress_size + INFLATION_SLACK)


def _check_members(archive: zipfile.ZipFile, file_size: int) -> dict[str, zipfile.ZipInfo]:
    """Every member's name, encryption, compression and sizes; returns them by name."""
    infos = archive.infolist()
    if _METADATA_MEMBER not in {info.filename for info in infos}:
        raise _Refusal("it has no metadata entry", kind="foreign")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if name != _METADATA_MEMBER and not _ARRAY_MEMBER.fullmatch(name):
            raise _Refusal(f"it holds an entry {_short(name)} that is not part of the format")
        if name in members:
            raise _Refusal(f"it holds the entry {name} twice")
        if info.flag_bits & 0x1:
            raise _Refusal(f"its entry {name} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Refusal(
                f"its entry {name} uses compression method {info.compress_type} "
                "(only stored or deflated entries are read)"
            )
        if info.file_size > _member_limit(info):
            raise _Refusal(
                f"its entry {name} claims {info.file_size} bytes from {info.compress_size} "
                f"stored (more than {name} may hold or a deflated entry may expand to)"
            )
        members[name] = info
    if sum(info.compress_size for info in infos) > file_size:
        raise _Refusal("the file is damaged or truncated: its entries claim more data than it holds", kind="unreadable")
    return members


def _read_exact(stream: IO[bytes], count: int, name: str) -> bytes:
    """Exactly ``count`` bytes of a member (one bounded read), or a refusal if it ends early."""
    data = stream.read(count)
    if len(data) != count:
        raise _Refusal(f"the file is damaged or truncated: entry {name} ends early", kind="unreadable")
    return data


def _expect_end(stream: IO[bytes], name: str) -> None:
    # Reading past the last byte also makes zipfile compare the member's CRC-32.
    if stream.read(1):
        raise _Refusal(
            f"the file is damaged or truncated: entry {name} is longer than its header says", kind="unreadable"
        )


_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Header:
    """Parse a member's ``.npy`` header from a bounded prefix; the data is not read.

    Why a prefix: NumPy reads as many header bytes as the header's length field claims (up to
    4 GiB) before it checks that length, and from a deflated member that is a zip bomb.
    """
    with archive.open(info) as stream:
        prefix = stream.read(min(MAX_HEADER_BYTES, info.file_size))
    buffer = io.BytesIO(prefix)
    try:
        version = npy_format.read_magic(buffer)
        reader = _HEADER_READERS.get(version)
        if reader is None:
            raise ValueError(f".npy format version {version} is not one digitnet writes")
        shape, fortran_order, dtype = reader(buffer, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, TypeError, SyntaxError, RecursionError, OverflowError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _Refusal(f"entry {info.filename} has no valid .npy header ({first_line})", kind="unreadable") from None
    return _Header(dtype, tuple(shape), bool(fortran_order), buffer.tell())


def _read_metadata_text(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    """The metadata member's JSON text, from one bounded read."""
    header = _read_header(archive, info)
    dtype = header.dtype
    if dtype.kind != "U" or dtype.names is not None or dtype.subdtype is not None or header.shape != ():
        what = (
            "object (pickled) data, which digitnet never loads"
            if dtype.hasobject
            else (f"a {dtype.str} array of shape {header.shape}")
        )
        raise _Refusal(f"its metadata entry is not a JSON text but {what}", kind="unreadable")
    if dtype.itemsize > MAX_METADATA_BYTES or info.file_size != header.offset + dtype.itemsize:
        raise _Refusal(
            f"its metadata entry's header claims {dtype.itemsize} bytes of text in an entry of "
            f"{info.file_size} bytes (at most {MAX_METADATA_BYTES})",
            kind="unreadable",
        )
    with archive.open(info) as stream:
        _read_exact(stream, header.offset, info.filename)
        data = _read_exact(stream, dtype.itemsize, info.filename)
        _expect_end(stream, info.filename)
    try:
        big_endian = dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")
        return data.decode("utf-32-be" if big_endian else "utf-32-le").rstrip("\0")
    except UnicodeDecodeError:
        raise _Refusal("its metadata entry is not valid text", kind="unreadable") from None


def _check_array_headers(
    archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], layout: _Layout
) -> dict[str, _Header]:
    """Every array member against the layout: names, dtypes, shapes and sizes, before any data."""
    present = {name.removesuffix(".npy") for name in members if name != _METADATA_MEMBER}
    if missing := [name for name in layout.arrays if name not in present]:
        raise _Refusal(f"its architecture needs arrays it lacks ({', '.join(missing[:4])})")
    if unused := sorted(present - set(layout.arrays)):
        raise _Refusal(f"it holds arrays its architecture does not use ({', '.join(unused[:4])})")
    headers = {}
    for name, shape in layout.arrays.items():
        info = members[f"{name}.npy"]
        header = _read_header(archive, info)
        dtype = header.dtype
        if (dtype.kind, dtype.itemsize) != (layout.dtype.kind, layout.dtype.itemsize) or dtype.names is not None:
            raise _Refusal(f"array {name} has dtype {dtype.str}, expected {layout.dtype}")
        if header.shape != shape:
            raise _Refusal(f"array {name} has shape {header.shape}, expected {shape}")
        if info.file_size != header.offset + math.prod(shape) * dtype.itemsize:
            raise _Refusal(
                f"the file is damaged or truncated: entry {info.filename} holds "
                f"{info.file_size - header.offset} bytes of data, its header says "
                f"{math.prod(shape) * dtype.itemsize}",
                kind="unreadable",
            )
        headers[name] = header
    return headers


def _chunks(header: _Header) -> Iterator[int]:
    """Byte counts to read an array's data in (whole elements, at most READ_CHUNK_BYTES each)."""
    left = math.prod(header.shape) * header.dtype.itemsize
    while left > 0:
        yield min(left, READ_CHUNK_BYTES)
        left -= READ_CHUNK_BYTES


def _stream_array(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: _Header, target: np.ndarray, name: str
) -> None:
    """Copy one member's data into ``target`` chunk by chunk, refusing NaN or infinite values."""
    # A Fortran-order (or oddly strided) array goes through one temporary the array's size.
    direct = target.flags.c_contiguous and not header.fortran_order
    flat = target.reshape(-1) if direct else np.empty(math.prod(header.shape), dtype=target.dtype)
    position = 0
    with archive.open(info) as stream:
        _read_exact(stream, header.offset, info.filename)
        for count in _chunks(header):
            values = np.frombuffer(_read_exact(stream, count, info.filename), dtype=header.dtype)
            if not np.isfinite(values).all():
                raise _Refusal(f"array {name} holds NaN or infinite values")
            flat[position : position + values.size] = values
            position += values.size
        _expect_end(stream, info.filename)
    if not direct:
        order: Literal["F", "C"] = "F" if header.fortran_order else "C"
        target[...] = flat.reshape(header.shape, order=order)


# -- building and checking the network --------------------------------------------------------


def _build(layout: _Layout, metadata: dict[str, Any]) -> Network:
    """The network the layout describes, with zero weights (the first allocation of model size)."""
    from .conv import Conv2D, MaxPool2D
    from .layers import Dense, Flatten, ReLU
    from .network import Network
    from .regularization import BatchNorm, Dropout

    classes = {cls.__name__: cls for cls in (Dense, ReLU, Flatten, Conv2D, MaxPool2D, Dropout, BatchNorm)}
    layers = [classes[spec.type].from_config(spec.settings(), dtype=layout.dtype) for spec in layout.schema.layers]
    normalisation = layout.schema.normalisation
    # The caller's own facts travel in Network.metadata exactly as they were saved.
    extra = {key: value for key, value in metadata.items() if key not in _RESERVED_KEYS}
    network = Network(
        layers,
        tuple(layout.schema.input_shape),
        mean=normalisation.mean,
        std=normalisation.std,
        class_names=list(layout.schema.class_names),
        metadata=extra,
    )
    network.metadata.setdefault("digitnet_version", metadata.get("digitnet_version"))
    return network


#: Probe images per load: blank, white and noise; a few values, so the pass costs next to nothing.
PROBE_IMAGES = 3


def _check_behaviour(network: Network, layout: _Layout) -> None:
    """BatchNorm variances must not be negative, and probe images must give finite logits.

    Why a probe: finite weights can still overflow (3e38 times a pixel), and only running the
    network shows it; better refused here than as NaN probabilities in front of a user.
    """
    state = network.state()
    for i, spec in enumerate(layout.schema.layers):
        if spec.type == "BatchNorm" and (state[f"layer{i}.running_var"] < 0).any():
            raise _Refusal(f"array layer{i}.running_var holds negative variances")
    shape = (1, *network.input_shape)
    noise = np.random.default_rng(0).random(shape)
    probe = np.concatenate([np.zeros(shape), np.ones(shape), noise])
    with np.errstate(all="ignore"):  # overflow is what is being looked for, not a warning
        logits = network.forward(network.prepare(probe))
    if not np.isfinite(logits).all():
        raise _Refusal(
            "it gives NaN or infinite outputs for test images (its weights or normalisation are out of range)"
        )


def _read_network(archive: zipfile.ZipFile, file_size: int) -> Network:
    """Check the whole archive against the format, then build and fill the network."""
    members = _check_members(archive, file_size)
    metadata = _check_envelope(_decode_json(_read_metadata_text(archive, members[_METADATA_MEMBER])))
    layout = _check_layout(metadata)
    headers = _check_array_headers(archive, members, layout)
    network = _build(layout, metadata)  # nothing of the model's size was allocated before here
    for name, target in network.state().items():
        _stream_array(archive, members[f"{name}.npy"], headers[name], target, name)
    _check_behaviour(network, layout)
    return network


# -- the public functions ---------------------------------------------------------------------


def network_metadata(network: Network) -> dict[str, Any]:
    """The model file's metadata for ``network``: its architecture, then its own facts.

    Keys of ``network.metadata`` that the format reserves (``layers``, ``dtype``, ...) are left
    out: the network's actual architecture is what the file must describe.
    """
    facts = {
        key: value for key, value in network.metadata.items() if key not in _RESERVED_KEYS or key == "digitnet_version"
    }
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "layers": [{"type": type(layer).__name__, **layer.config()} for layer in network.layers],
        "input_shape": [int(size) for size in network.input_shape],
        "normalisation": {"mean": network.mean, "std": network.std},
        "class_names": network.class_names,
        "dtype": str(network.dtype),
        **facts,
    }


def save_network(network: Network, path: str | os.PathLike) -> None:
    """Write ``network`` to ``path`` atomically: readers see the old file or the whole new one.

    The metadata is checked with the same rules as :func:`load_network`, so a file that is
    written can always be read back.

    Raises
    ------
    ModelFileError
        If the network or its metadata break the format (nothing is written then).
    """
    # atomic_write_bytes: temp file + rename, shared with the data cache
    from ..data.cache import atomic_write_bytes

    atomic_write_bytes(Path(path), network_bytes(network, str(path)))


def network_bytes(network: Network, source: str = "model") -> bytes:
    """The model file of ``network`` as bytes (what :func:`save_network` writes).

    Raises
    ------
    ModelFileError
        If the network or its metadata break the format.
    """
    from .. import __version__

    metadata = {**network_metadata(network), "digitnet_version": __version__}
    text = json.dumps(metadata)
    try:
        if 4 * len(text) > MAX_METADATA_BYTES:  # stored as UTF-32
            raise _Refusal(f"its metadata takes {4 * len(text)} bytes (at most {MAX_METADATA_BYTES})")
        layout = _check_layout(_check_envelope(_decode_json(text)))
        arrays = {name: np.ascontiguousarray(value, dtype=layout.dtype) for name, value in network.state().items()}
        if {name: value.shape for name, value in arrays.items()} != layout.arrays:
            raise _Refusal("its layers' arrays are not the ones their settings describe")
        if bad := next((name for name, value in arrays.items() if not np.isfinite(value).all()), None):
            raise _Refusal(f"array {bad} holds NaN or infinite values")
    except _Refusal as refusal:
        raise ModelFileError(f"{source}: cannot save the model: {refusal.problem}; nothing was written.") from None
    buffer = io.BytesIO()
    # numpy's stub: **arrays could name savez's allow_pickle (a bool), though no array name does
    np.savez(buffer, metadata=np.array(text), **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _open_model_file(path: Path) -> io.BufferedReader:
    """Open ``path`` for reading if it is a ZIP archive at all; a clear error otherwise."""
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file; train one with `digitnet train`.")
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- closed by the caller
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror or error}).") from None
    if handle.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
        handle.close()
        raise ModelFileError(
            f"{path} is not a digitnet model file (expected a .npz archive written by `digitnet train`)."
        )
    return handle


def load_network(path: str | os.PathLike) -> Network:
    """Read a model file written by :func:`save_network`, checking everything before trusting it.

    See the module notes for the order of the checks.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Network
        Ready to predict; every array finite, probe images give finite logits.

    Raises
    ------
    ModelFileError
        For a missing, foreign, damaged or invalid file, with a one-sentence message.
    """
    path = Path(path)
    with _open_model_file(path) as handle:
        return read_network(handle, str(path))


def read_network(handle: IO[bytes], source: str) -> Network:
    """Read a model file from the seekable binary file ``handle`` with every check of :func:`load_network`.

    ``source`` names the model in error messages (a path, or an entry of an ensemble file).
    """
    try:
        size = handle.seek(0, io.SEEK_END)
        _check_directory(handle, size)
        with zipfile.ZipFile(handle) as archive:
            return _read_network(archive, size)
    except _Refusal as refusal:
        raise ModelFileError(_refusal_message(source, refusal)) from None
    except _ZIP_ERRORS as error:
        raise ModelFileError(
            _refusal_message(source, _Refusal(f"the file is damaged or truncated: {error}", kind="unreadable"))
        ) from None


def network_from_metadata(metadata: dict[str, Any], arrays: dict[str, np.ndarray], source: str = "model") -> Network:
    """Build a network from metadata and arrays already in memory, with the file's checks.

    Parameters
    ----------
    metadata : dict
        As the model file's JSON holds it.
    arrays : dict of str to numpy.ndarray
        By name (``layer3.W``).
    source : str, optional
        Names the model in error messages.

    Raises
    ------
    ModelFileError
        If the metadata or arrays break the format.
    """
    try:
        layout = _check_layout(_check_envelope(metadata))
        if set(arrays) != set(layout.arrays):
            raise _Refusal(
                f"it holds arrays {sorted(arrays)[:8]} but its architecture needs {sorted(layout.arrays)[:8]}"
            )
        for name, shape in layout.arrays.items():
            value = np.asarray(arrays[name])
            if (value.dtype.kind, value.dtype.itemsize, value.shape) != (
                layout.dtype.kind,
                layout.dtype.itemsize,
                shape,
            ):
                raise _Refusal(f"array {name} is {value.dtype} {value.shape}, expected {layout.dtype} {shape}")
            if not np.isfinite(value).all():
                raise _Refusal(f"array {name} holds NaN or infinite values")
        network = _build(layout, metadata)
        network.load_state(arrays)
        _check_behaviour(network, layout)
    except _Refusal as refusal:
        raise ModelFileError(_refusal_message(source, refusal)) from None
    return network
