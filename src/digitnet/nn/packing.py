"""One flat array for all of a network's parameters, and another for all their gradients.

An optimiser step makes a dozen whole-array passes (Adam: the two running averages, the square
root, the division, ...). Over a network's parameters one array at a time, that is a dozen NumPy
calls per array: the MLP's 128 and 10 biases and its 1,280-value second layer cost as many calls as
its 100,352 first-layer weights. Kept as consecutive pieces of one array, all of them take one call
per pass. :meth:`digitnet.nn.Network.pack_parameters` does it before training builds its
optimiser; every layer still sees its own arrays, now views of its piece. (With the optimiser's
other changes of issue 12, the default MLP's update went from 0.35 to 0.20 ms a step with two
threads: ``python benchmarks/speed.py mlp-step``, BENCHMARKS.md.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def joined(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """The one flat array of which ``arrays`` are the consecutive pieces, in order and without gaps,
    or ``None`` when they are not (so a caller falls back to one array at a time)."""
    if not arrays:
        return None
    flat = arrays[0].base
    # Not every base is an array: unpickled arrays sit on bytes, memory-mapped ones on an mmap.
    if not isinstance(flat, np.ndarray) or flat.ndim != 1 or not flat.flags.c_contiguous:
        return None
    address = flat.__array_interface__["data"][0]
    end = address + flat.nbytes
    for array in arrays:
        if array.base is not flat or not array.flags.c_contiguous or array.__array_interface__["data"][0] != address:
            return None
        address += array.nbytes
    return flat if address == end else None


def pack(groups: Iterable[dict[str, np.ndarray]]) -> None:
    """Move the arrays of ``groups`` (name -> array dicts, such as each layer's ``params``) into one
    new flat array, replacing each dict entry by a view of its piece; the values do not change.

    Left as they are when they already are the pieces of one array, or when they mix dtypes.
    Anyone holding the old arrays (an optimiser built before) no longer holds the dicts' arrays.
    """
    groups = list(groups)
    arrays = [array for group in groups for array in group.values()]
    if not arrays or joined(arrays) is not None or len({array.dtype for array in arrays}) != 1:
        return
    views = iter(pieces(np.concatenate([array.ravel() for array in arrays]), arrays))
    for group in groups:
        for name in group:
            group[name] = next(views)


def pieces(flat: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Views of consecutive pieces of ``flat``, shaped like the arrays of ``like``."""
    views, offset = [], 0
    for array in like:
        views.append(flat[offset : offset + array.size].reshape(array.shape))
        offset += array.size
    return views
