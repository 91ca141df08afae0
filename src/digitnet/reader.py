"""The reader: the trained model that ships with digitnet, for reading people's digits at once.

``digitnet predict IMAGE...`` and ``digitnet serve`` use it when no model is named, so a fresh
install reads drawings and photos without training anything first. It is the CNN of
``digitnet train --recipe reader --seed 0 --threads 1`` (README.md gives its figures); the file's sha256 is
recorded here and checked before the file is read, so a damaged installation says so instead of
answering wrongly.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .data.cache import sha256_of_file
from .errors import ModelFileError
from .nn import Network

#: sha256 of ``src/digitnet/models/reader.npz``.
READER_SHA256 = "41ce2b91dbdee269ff7453c567c8fa770cd91722aa39de11f8c71f9d696d0107"


def reader_path() -> Path:
    """Where the installed reader model lies."""
    return Path(str(resources.files("digitnet") / "models" / "reader.npz"))


def load_reader() -> Network:
    """The shipped reader model, after checking that the file is the one that was released.

    Raises
    ------
    ModelFileError
        If the file is missing or differs from the released one.
    """
    path = reader_path()
    if not path.is_file():
        raise ModelFileError(
            f"the reader model that ships with digitnet is missing ({path}); reinstall "
            "digitnet, or name a model file trained with `digitnet train`."
        )
    if sha256_of_file(path) != READER_SHA256:
        raise ModelFileError(
            f"the reader model {path} is not the released file (its sha256 differs); "
            "reinstall digitnet, or name a model file trained with `digitnet train`."
        )
    return Network.load(path)
