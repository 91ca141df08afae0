"""Ensembles: several networks that vote by averaging their class probabilities, in one file.

An ensemble reads like one model: :class:`Ensemble` has the ``predict_proba``, ``predict``,
``input_shape``, ``class_names``, ``describe`` and ``metadata`` that ``digitnet evaluate``,
``predict`` and ``serve`` use, so every command that takes a model file takes an ensemble file.

The file
--------
A ZIP archive (``.npz`` by convention, so the commands recognise it as a model) holding exactly:

``ensemble.json``
    UTF-8 JSON, at most 64 KiB: ``{"format": "digitnet-ensemble", "format_version": 1,
    "members": ["member00.npz", ...], "metadata": {...}}``; unknown keys are refused.
``member<NN>.npz``
    One digitnet model file per member (:mod:`digitnet.nn.modelfile`), stored uncompressed, each
    read with every check of a model file. At most ``MAX_ENSEMBLE_MEMBERS`` members; all must read
    the same input shape and name the same classes.

No pickle anywhere; the file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ModelFileError
from ..schema import first_problem
from .modelfile import _ZIP_ERRORS, network_bytes, read_network
from .network import PREDICT_BATCH, Network

ENSEMBLE_FORMAT = "digitnet-ensemble"
ENSEMBLE_VERSION = 1
MAX_ENSEMBLE_MEMBERS = 64
MAX_MANIFEST_BYTES = 64 << 10
#: A member file larger than this is refused before it is read (the CNN's file is under 1 MB).
MAX_MEMBER_BYTES = 512 << 20
MANIFEST = "ensemble.json"
_MEMBER_NAME = re.compile(r"member\d{2,3}\.npz")


class Model(Protocol):
    """What the commands and the web page need of a model: a :class:`Network` or an :class:`Ensemble`."""

    input_shape: tuple[int, ...]
    class_names: list[str]
    metadata: dict[str, Any]

    def predict_proba(self, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Class probabilities ``(N, K)`` for images with values in [0, 1] (or uint8)."""
        ...

    def predict(self, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """The most probable class index for each image."""
        ...

    def describe(self) -> str:
        """A one-line summary of the architecture."""
        ...

    def num_parameters(self) -> int:
        """How many numbers the model has learned."""
        ...


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal["digitnet-ensemble"]
    format_version: int = Field(ge=1)
    members: list[str] = Field(min_length=1, max_length=MAX_ENSEMBLE_MEMBERS)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Ensemble:
    """Networks whose averaged class probabilities are the prediction.

    Parameters
    ----------
    members : sequence of Network
        At least one; all read the same input shape and name the same classes.
    metadata : dict, optional
        Facts saved with the ensemble (how its members were trained, its scores).
    """

    def __init__(self, members: Sequence[Network], metadata: dict[str, Any] | None = None) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for k, member in enumerate(members[1:], start=1):
            if member.input_shape != first.input_shape or list(member.class_names) != list(first.class_names):
                raise ValueError(
                    f"member {k} reads {member.input_shape} images with classes {member.class_names}, "
                    f"member 0 {first.input_shape} with {first.class_names}"
                )
        self.members = list(members)
        self.input_shape = tuple(first.input_shape)
        self.class_names = list(first.class_names)
        self.metadata = dict(metadata or {})
        self.metadata.setdefault("dataset", first.metadata.get("dataset"))

    def predict_proba(self, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """The members' class probabilities ``(N, K)``, averaged."""
        return np.mean([member.predict_proba(images, batch_size) for member in self.members], axis=0)

    def predict(self, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """The class with the highest averaged probability, per image."""
        return self.predict_proba(images, batch_size).argmax(axis=1)

    def describe(self) -> str:
        """``ensemble of 12: 12 x 784-conv5x5:16-...``: members counted by architecture."""
        kinds: dict[str, int] = {}
        for member in self.members:
            kinds[member.describe()] = kinds.get(member.describe(), 0) + 1
        return f"ensemble of {len(self.members)}: " + ", ".join(f"{n} x {arch}" for arch, n in kinds.items())

    def num_parameters(self) -> int:
        """The members' parameters, all counted."""
        return sum(member.num_parameters() for member in self.members)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ensemble file atomically (see the module notes for its layout)."""
        save_ensemble(self, path)


def save_ensemble(ensemble: Ensemble, path: str | os.PathLike) -> None:
    """Write ``ensemble`` to ``path`` atomically; every member is checked as a model file is.

    Raises
    ------
    ModelFileError
        If a member or the metadata cannot be saved (nothing is written then).
    """
    from ..data.cache import atomic_write_bytes

    if len(ensemble.members) > MAX_ENSEMBLE_MEMBERS:
        raise ModelFileError(f"{path}: at most {MAX_ENSEMBLE_MEMBERS} members fit an ensemble file.")
    names = [f"member{k:02d}.npz" for k in range(len(ensemble.members))]
    manifest = {
        "format": ENSEMBLE_FORMAT,
        "format_version": ENSEMBLE_VERSION,
        "members": names,
        "metadata": ensemble.metadata,
    }
    text = json.dumps(manifest, allow_nan=False).encode()
    if len(text) > MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{path}: the ensemble's metadata takes {len(text)} bytes (at most {MAX_MANIFEST_BYTES}).")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST, text)
        for name, member in zip(names, ensemble.members):
            archive.writestr(name, network_bytes(member, f"{path} ({name})"))
    atomic_write_bytes(Path(path), buffer.getbuffer())


def is_ensemble_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ZIP archive with an ensemble manifest (cheap: reads the directory only)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(2) != b"PK":
                return False
            size = handle.seek(0, io.SEEK_END)
            from .modelfile import _check_directory

            _check_directory(handle, size)
            with zipfile.ZipFile(handle) as archive:
                return MANIFEST in archive.namelist()
    except Exception:  # noqa: BLE001  # anything unreadable is left to the model-file reader to explain
        return False


def load_ensemble(path: str | os.PathLike) -> Ensemble:
    """Read an ensemble file, checking the manifest and every member before trusting any of it.

    Raises
    ------
    ModelFileError
        For a damaged or invalid file, in one sentence naming the problem.
    """
    source = str(path)
    try:
        with open(path, "rb") as handle, zipfile.ZipFile(handle) as archive:
            manifest = _read_manifest(archive, source)
            infos = {info.filename: info for info in archive.infolist()}
            if extra := sorted(set(infos) - {MANIFEST, *manifest.members}):
                raise ModelFileError(f"{source}: holds entries its manifest does not list ({', '.join(extra[:4])}).")
            members = [_read_member(archive, infos, name, source) for name in manifest.members]
    except OSError as error:
        raise ModelFileError(f"{source}: cannot be read ({error}).") from None
    except _ZIP_ERRORS as error:
        raise ModelFileError(f"{source}: the ensemble file is damaged or truncated ({error}).") from None
    try:
        return Ensemble(members, manifest.metadata)
    except ValueError as error:
        raise ModelFileError(f"{source}: its members do not fit together ({error}).") from None


def _read_manifest(archive: zipfile.ZipFile, source: str) -> _Manifest:
    info = archive.getinfo(MANIFEST)
    if info.file_size > MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{source}: its manifest claims {info.file_size} bytes (at most {MAX_MANIFEST_BYTES}).")
    with archive.open(info) as stream:
        text = stream.read(MAX_MANIFEST_BYTES + 1)
    try:
        manifest = _Manifest.model_validate(json.loads(text))
    except (ValueError, ValidationError) as error:
        problem = first_problem(error) if isinstance(error, ValidationError) else "its manifest is not JSON"
        raise ModelFileError(f"{source}: not a valid digitnet ensemble file ({problem}).") from None
    if manifest.format_version > ENSEMBLE_VERSION:
        raise ModelFileError(f"{source}: ensemble format {manifest.format_version} needs a newer digitnet.")
    if bad := [name for name in manifest.members if not _MEMBER_NAME.fullmatch(name)]:
        raise ModelFileError(f"{source}: its manifest names a member {bad[0][:40]!r} outside the format.")
    if len(set(manifest.members)) != len(manifest.members):
        raise ModelFileError(f"{source}: its manifest lists a member twice.")
    return manifest


def _read_member(archive: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], name: str, source: str) -> Network:
    info = infos.get(name)
    if info is None:
        raise ModelFileError(f"{source}: the member {name} its manifest lists is missing.")
    if info.compress_type != zipfile.ZIP_STORED or info.file_size > MAX_MEMBER_BYTES:
        raise ModelFileError(f"{source}: the member {name} is compressed or larger than {MAX_MEMBER_BYTES} bytes.")
    with archive.open(info) as stream:
        data = stream.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ModelFileError(f"{source}: the member {name} is damaged or truncated.")
    return read_network(io.BytesIO(data), f"{source} ({name})")


def load_model(path: str | os.PathLike) -> Network | Ensemble:
    """The model file or ensemble file at ``path``, whichever it is.

    Raises
    ------
    ModelFileError
        For a missing, foreign, damaged or invalid file, with a one-sentence message.
    """
    if is_ensemble_file(path):
        return load_ensemble(path)
    return Network.load(path)
