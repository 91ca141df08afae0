"""Reliability benchmark: hostile model files through ``Network.load``, and hostile use of the CLI.

Model files: crafts model files in a temporary folder, by category: good models (the reference),
huge sizes in the metadata, zip bombs, metadata of the wrong type, models whose outputs are not
finite, and files that are not ZIP archives at all. Each is loaded by ``Network.load`` in a fresh
Python process whose address space is capped (``--memory-limit``, so that an unguarded loader
meets a MemoryError rather than taking the machine), with :mod:`tracemalloc` measuring the load's
peak (NumPy's arrays included). The table counts, per category, the inputs tried, the clean
refusals (a one-line ``ModelFileError``), the loads, the tracebacks (any other exception) and the
inputs whose outcome was not the expected one, with the largest peak next to a good model's.

Command line: each input is a real ``python -m digitnet ...`` process with a timeout, in a folder
of its own (its own empty cache and TMPDIR, every network source pointed at 127.0.0.1:9):

* training options: ``train`` with an --out or --plots it cannot write, --seed -1, a huge
  --hidden, non-finite --lr/--weight-decay/--label-smoothing, --lr 1e6 over a good model, a
  --val-size larger than the set: each must be refused in one line, with nothing written;
* corrupt data folders: ``data fetch`` and ``train`` on MNIST from a --data-dir of truncated,
  mis-headed, random, fake-gzip, right-size-wrong-bytes, empty files or folders in their place:
  one error listing the sources tried, the folder untouched, only verified files in the cache;
* odd images through predict: each beside a good digit, plain and --json (parsed, NaN refused),
  then all at once: the documented behaviour is an error line (an ``error`` field) per bad file,
  the good one still read, exit status 1;
* kill -9: a 200-epoch training run and a loop saving a 51 MB CNN, killed at random moments
  (``--seed``): OUT must be the old model or one that loads, and the next save in the folder
  must leave no temporary behind.

Its table counts the inputs, clean refusals (non-zero exit, one ``Error:`` line, no traceback),
successes, tracebacks, hangs (timeouts), half-written or lost files (temporaries left behind,
unverified files in a cache, files changed or removed that should not be) and the inputs not as
expected, with the largest peak resident memory of a process. A last line totals all categories.

Usage::

    python benchmarks/reliability.py                        # this checkout's src/, every category
    python benchmarks/reliability.py --src /other/src       # another digitnet, e.g. before a change
    python benchmarks/reliability.py --only model-files     # one category (repeatable)
    python benchmarks/reliability.py --verbose --json reliability.json

Not a test: nothing here asserts. The largest inputs cost a few seconds to craft (a 1 GB zip
bomb); all of it takes about three minutes on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import hashlib
import io
import itertools
import json
import math
import os
import pickle
import random
import re
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

REPO = Path(__file__).resolve().parents[1]

#: Runs in each child: cap the address space, load a small good model (so that lazy imports and
#: caches are not counted), then load the input once under tracemalloc.
CHILD = r"""
import json, resource, sys, time, tracemalloc
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from digitnet.errors import ModelFileError
from digitnet.nn import Network
Network.load(sys.argv[2])
result = {}
tracemalloc.start()
start = time.perf_counter()
try:
    network = Network.load(sys.argv[1])
    result.update(outcome="loaded", detail=network.describe())
except ModelFileError as error:
    result.update(outcome="refused" if "\n" not in str(error) else "traceback", detail=str(error))
except BaseException as error:  # what is being counted: anything but a clean refusal
    result.update(outcome="traceback", detail=f"{type(error).__name__}: {str(error)[:200]}")
result.update(seconds=time.perf_counter() - start, peak=tracemalloc.get_traced_memory()[1])
print(json.dumps(result))
"""


# -- crafting -----------------------------------------------------------------------------------


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple, version: tuple[int, int] = (1, 0)) -> bytes:
    buffer = io.BytesIO()
    writer = npy_format.write_array_header_1_0 if version == (1, 0) else npy_format.write_array_header_2_0
    writer(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def raw_zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A ZIP written byte by byte, so that it can lie: ``(name, payload, method, crc, claimed_size)``."""
    local, directory, offset = [], [], 0
    for name, payload, method, crc, size in entries:
        encoded = name.encode()
        local.append(
            struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(payload), size, len(encoded), 0)
            + encoded
            + payload
        )
        directory.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(payload),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
        offset += len(local[-1])
    listing = b"".join(directory)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(listing), offset, 0)
    return b"".join(local) + listing + end


def stored(members: dict[str, bytes]) -> list[tuple[str, bytes, int, int, int]]:
    return [(name, data, 0, zlib.crc32(data), len(data)) for name, data in members.items()]


def deflated_zeros(prefix: bytes, zero_bytes: int) -> tuple[bytes, int]:
    """Raw deflate of ``prefix`` and ``zero_bytes`` zeros, streamed; with the CRC-32 of it all."""
    compressor, chunk = zlib.compressobj(1, zlib.DEFLATED, -15), bytes(1 << 22)
    parts, crc = [compressor.compress(prefix)], zlib.crc32(prefix)
    for start in range(0, zero_bytes, len(chunk)):
        piece = chunk[: min(len(chunk), zero_bytes - start)]
        parts.append(compressor.compress(piece))
        crc = zlib.crc32(piece, crc)
    return b"".join(parts) + compressor.flush(), crc


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def metadata_of(members: dict[str, bytes]) -> dict:
    header = members["metadata.npy"]
    return json.loads(str(np.lib.format.read_array(io.BytesIO(header), allow_pickle=False)))


def with_metadata(members: dict[str, bytes], edit: Callable[[dict], object]) -> dict[str, bytes]:
    metadata = metadata_of(members)
    edit(metadata)
    return {**members, "metadata.npy": npy_bytes(np.array(json.dumps(metadata)))}


def setter(path: str, value) -> Callable[[dict], None]:
    """An edit setting the metadata field at dotted ``path`` (numbers index lists)."""

    def edit(metadata: dict) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        for part in parents:
            metadata = metadata[part]
        metadata[last] = value

    return edit


# -- the inputs ---------------------------------------------------------------------------------


@dataclass
class Case:
    category: str
    name: str
    data: bytes
    expect: str = "refused"


def good_models() -> dict[str, bytes]:
    """The 784-128-10 seed network, the default CNN, and a small CNN with BatchNorm, saved."""
    from digitnet.nn import (
        BatchNorm,
        Conv2D,
        Dense,
        Flatten,
        MaxPool2D,
        Network,
        ReLU,
        build_mlp,
    )
    from digitnet.nn.architectures import build_cnn

    rng = np.random.default_rng(0)
    bn = Network(
        [
            Conv2D(1, 8, 3, "same", rng=rng),
            BatchNorm(8),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(8 * 14 * 14, 10, rng=rng),
        ],
        (1, 28, 28),
        mean=0.13,
        std=0.31,
    )
    networks = {
        "seed 784-128-10": build_mlp((128,), rng=rng, mean=0.13, std=0.31),
        "cnn-padded (the first CNN)": build_cnn(
            rng=rng, mean=0.13, std=0.31, channels=(16, 32), padding="same", batch_norm=False
        ),
        "cnn with batchnorm": bn,
    }
    saved = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, network in networks.items():
            network.save(Path(folder) / "m.npz")
            saved[name] = (Path(folder) / "m.npz").read_bytes()
    return saved


def size_cases(seed: dict[str, bytes], bn: dict[str, bytes]) -> list[Case]:
    def widen(units: int) -> Callable[[dict], None]:
        def edit(metadata: dict) -> None:
            metadata["layers"][1]["out_features"] = metadata["layers"][3]["in_features"] = units

        return edit

    edits = {
        "dense layer edited to 20,000 units": (seed, widen(20_000)),
        "dense layer edited to 10^9 units": (seed, widen(10**9)),
        "batchnorm channels 10^9": (bn, setter("layers.1.channels", 10**9)),
        "input shape 4x4096x4096": (seed, setter("input_shape", [4, 4096, 4096])),
        "conv padding 10^4": (bn, setter("layers.0.padding", 10_000)),
        "conv out_channels 10^6": (bn, setter("layers.0.out_channels", 10**6)),
        "conv kernel 31x31 on 400x400 input": (
            bn,
            lambda m: (setter("input_shape", [1, 400, 400])(m), setter("layers.0.kernel_size", [31, 31])(m)),
        ),
    }
    return [
        Case("huge sizes", name, zip_bytes(with_metadata(members, edit))) for name, (members, edit) in edits.items()
    ]


def bomb_cases(seed: dict[str, bytes]) -> list[Case]:
    cases = []
    for units in (20_000, 65_536, 320_000):  # 63 MB, 205 MB and 1 GB of zeros for layer1.W
        members = with_metadata(
            seed, lambda m, u=units: (setter("layers.1.out_features", u)(m), setter("layers.3.in_features", u)(m))
        )
        members["layer1.b.npy"] = npy_bytes(np.zeros(units, np.float32))
        members["layer3.W.npy"] = npy_bytes(np.zeros((units, 10), np.float32))
        header = npy_header("<f4", (784, units))
        payload, crc = deflated_zeros(header, 784 * units * 4)
        entries = [e for e in stored(members) if e[0] != "layer1.W.npy"]
        data = raw_zip([*entries, ("layer1.W.npy", payload, 8, crc, len(header) + 784 * units * 4)])
        cases.append(Case("zip bombs", f"consistent model, {784 * units * 4 / 1e6:.0f} MB of zeros deflated", data))
    big_text = with_metadata(seed, setter("notes", " " * 400_000))
    cases.append(Case("zip bombs", "1.6 MB metadata member, deflated", zip_bytes(big_text, zipfile.ZIP_DEFLATED)))
    huge_text = with_metadata(seed, setter("notes", " " * 25_000_000))
    cases.append(Case("zip bombs", "100 MB metadata member, deflated", zip_bytes(huge_text, zipfile.ZIP_DEFLATED)))
    cases.append(
        Case(
            "zip bombs",
            ".npy header claiming 10^12 elements",
            zip_bytes({**seed, "layer1.W.npy": npy_header("<f4", (10**6, 10**6)) + bytes(64)}),
        )
    )
    cases.append(
        Case(
            "zip bombs",
            "metadata header claiming 1 GB of text",
            zip_bytes({**seed, "metadata.npy": npy_header("<U250000000", ()) + b"{}"}),
        )
    )
    cases += header_bombs(seed)
    many = raw_zip([(f"{i}", b"", 0, 0, 0) for i in range(50_000)])
    cases.append(Case("zip bombs", "50,000 empty entries", many))
    return cases


def header_bombs(seed: dict[str, bytes]) -> list[Case]:
    """A 4 GiB .npy header length, and a stream longer than its entry claims (cut off, so it loads)."""
    bomb, crc = deflated_zeros(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFFF), 64 << 20)
    entries = [e for e in stored(seed) if e[0] != "layer1.W.npy"]
    header_case = Case(
        "zip bombs",
        ".npy header length 4 GiB, 64 MiB deflated",
        raw_zip([*entries, ("layer1.W.npy", bomb, 8, crc, len(bomb) * 4)]),
    )
    real = seed["layer1.W.npy"]
    longer, _ = deflated_zeros(real, 256 << 20)
    longer_case = Case(
        "zip bombs",
        "stream 256 MiB longer than its entry claims",
        raw_zip([*entries, ("layer1.W.npy", longer, 8, zlib.crc32(real), len(real))]),
        expect="loaded",
    )
    return [header_case, longer_case]


def metadata_cases(seed: dict[str, bytes], bn: dict[str, bytes]) -> list[Case]:
    edits = {
        'format_version "1"': (seed, setter("format_version", "1")),
        "format_version null": (seed, setter("format_version", None)),
        "normalisation.std 0": (seed, setter("normalisation.std", 0)),
        "normalisation.std -1": (seed, setter("normalisation.std", -1)),
        "dtype int8": (seed, setter("dtype", "int8")),
        "dtype bool": (seed, setter("dtype", "bool")),
        "dtype object": (seed, setter("dtype", "object")),
        "dtype datetime64": (seed, setter("dtype", "datetime64")),
        "class_names too short": (seed, setter("class_names", list("012345678"))),
        "class_names too long": (seed, setter("class_names", list("0123456789x"))),
        "class_names not strings": (seed, setter("class_names", list(range(10)))),
        "input_shape [7]": (seed, setter("input_shape", [7])),
        "input_shape negative": (seed, setter("input_shape", [1, 28, -28])),
        "first Dense in_features mismatch": (seed, setter("input_shape", [1, 20, 20])),
        "unknown layer type": (seed, setter("layers.2.type", "Teleport")),
        "Dense with an extra setting": (seed, setter("layers.1.units", 5)),
        "batchnorm momentum 1.5": (bn, setter("layers.1.momentum", 1.5)),
        "metrics a string": (seed, setter("metrics", "97%")),
        "dataset a list": (seed, setter("dataset", [1])),
        "history an object": (seed, setter("history", {})),
        "training a list": (seed, setter("training", [])),
        "metadata an empty object": (seed, lambda m: m.clear()),
    }
    cases = [
        Case("bad metadata types", name, zip_bytes(with_metadata(members, edit)))
        for name, (members, edit) in edits.items()
    ]
    deep = json.dumps({**metadata_of(seed), "notes": "DEEP"}).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)
    for name, text in {
        "JSON nested 100,000 deep": deep,
        "not JSON": '{"format": ',
        "metadata a JSON list": "[1, 2]",
        "JSON nested 40 deep": json.dumps({**metadata_of(seed), "x": json.loads("[" * 40 + "]" * 40)}),
    }.items():
        cases.append(Case("bad metadata types", name, zip_bytes({**seed, "metadata.npy": npy_bytes(np.array(text))})))
    cases.append(
        Case(
            "bad metadata types",
            "string array for layer1.b",
            zip_bytes({**seed, "layer1.b.npy": npy_bytes(np.array(["x"] * 128))}),
        )
    )
    cases.append(
        Case(
            "bad metadata types",
            "metadata as a float array",
            zip_bytes({**seed, "metadata.npy": npy_bytes(np.arange(3.0))}),
        )
    )
    return cases


def nonfinite_cases(seed: dict[str, bytes], bn: dict[str, bytes]) -> list[Case]:
    nan_std = with_metadata(seed, setter("normalisation.std", float("nan")))
    variance = np.ones(8, np.float32)
    variance[3] = -1
    return [
        Case("non-finite models", name, zip_bytes(members))
        for name, members in {
            "weights of 3e38": {**seed, "layer3.W.npy": npy_bytes(np.full((128, 10), 3e38, np.float32))},
            "NaN weights": {**seed, "layer1.W.npy": npy_bytes(np.full((784, 128), np.nan, np.float32))},
            "normalisation.std NaN": nan_std,
            "normalisation.std 1e-300": with_metadata(seed, setter("normalisation.std", 1e-300)),
            "batchnorm running_var negative": {**bn, "layer1.running_var.npy": npy_bytes(variance)},
            "batchnorm eps -1": with_metadata(bn, setter("layers.1.eps", -1)),
            "batchnorm eps 0": with_metadata(bn, setter("layers.1.eps", 0)),
        }.items()
    ]


def not_zip_cases() -> list[Case]:
    objects = io.BytesIO()
    np.save(objects, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    return [
        Case("not ZIP files", name, data)
        for name, data in {
            "text file": b"hello, I am not a model\n",
            "empty file": b"",
            "PNG header": b"\x89PNG\r\n\x1a\n" + bytes(64),
            "pickle": pickle.dumps({"W": [1, 2, 3]}),
            ".npy of pickled objects": objects.getvalue(),
            "PK and junk": b"PK\x03\x04 not really a zip",
            "random bytes": np.random.default_rng(0).bytes(4096),
        }.items()
    ]


def all_cases() -> list[Case]:
    good = good_models()
    seed, bn = members_of(good["seed 784-128-10"]), members_of(good["cnn with batchnorm"])
    cases = [Case("good models", name, data, expect="loaded") for name, data in good.items()]
    return (
        cases
        + size_cases(seed, bn)
        + bomb_cases(seed)
        + metadata_cases(seed, bn)
        + nonfinite_cases(seed, bn)
        + not_zip_cases()
    )


# -- running and reporting ----------------------------------------------------------------------


def run_case(case: Case, folder: Path, src: Path, memory_limit: int) -> dict:
    """Load ``case`` in a fresh process (after a warm-up load of ``folder/warm.npz``)."""
    path = folder / "model.npz"
    path.write_bytes(case.data)
    env = {**os.environ, "PYTHONPATH": str(src), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CHILD, str(path), str(folder / "warm.npz"), str(memory_limit)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):  # the child died (a signal, the OOM killer)
        result = {
            "outcome": "traceback",
            "detail": f"exit {done.returncode}: {done.stderr.strip()[-200:]}",
            "seconds": None,
            "peak": None,
        }
    return {**asdict(case), "data": None, "file_bytes": len(case.data), **result}


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.2f} MiB"


def summary(results: list[dict]) -> str:
    reference = next(r["peak"] for r in results if r["name"] == "seed 784-128-10")
    lines = [
        "| category | inputs | clean refusals | loaded | tracebacks | not as expected | max peak | vs good |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for category in dict.fromkeys(r["category"] for r in results):
        rows = [r for r in results if r["category"] == category]
        count = {outcome: sum(r["outcome"] == outcome for r in rows) for outcome in ("refused", "loaded", "traceback")}
        # A MemoryError's traced "peak" is the failed request (terabytes): reported as such instead.
        over_cap = sum(r["detail"].startswith("MemoryError") for r in rows if r["outcome"] == "traceback")
        peaks = [r["peak"] for r in rows if r["peak"] is not None and not r["detail"].startswith("MemoryError")]
        peak = max(peaks) if peaks else None
        ratio = "-" if peak is None else f"{peak / reference:.2f}x"
        cap_note = f" + {over_cap} MemoryError" if over_cap else ""
        lines.append(
            f"| {category} | {len(rows)} | {count['refused']} | {count['loaded']} | {count['traceback']} | "
            f"{sum(r['outcome'] != r['expect'] for r in rows)} | {mib(peak)}{cap_note} | {ratio} |"
        )
    lines.append(
        f"\nGood model for the ratio: seed 784-128-10, peak {mib(reference)} while loading (traced by "
        "tracemalloc, NumPy's arrays included; the largest peak of each category, MemoryErrors aside)."
    )
    return "\n".join(lines)


def details(results: list[dict]) -> str:
    lines = ["| category | input | file | outcome | peak | seconds | message |", "|---|---|---:|---|---:|---:|---|"]
    for r in results:
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.3f}"
        message = r["detail"].replace("|", "/")[:150]
        lines.append(
            f"| {r['category']} | {r['name']} | {r['file_bytes']:,} B | {r['outcome']} | {mib(r['peak'])} | "
            f"{seconds} | {message} |"
        )
    return "\n".join(lines)


# -- the command line: one `python -m digitnet` process per input ----------------------------------

#: The model-file categories above, and the command-line ones below, by their ``--only`` names.
SECTIONS = {
    "model-files": "hostile model files through Network.load",
    "training-options": "training options",
    "data-folders": "corrupt data folders",
    "predict-images": "odd images through predict",
    "kill-9": "kill -9",
}

#: Every network source fails at once: the proxies and the package index point at the discard
#: port of this machine (nothing listens there), and pip reads no configuration file, so neither
#: the find-links folder nor an extra index of the machine can serve the MNIST wheel. digitnet has
#: no switch of its own for this (``allow_network`` exists in the Python API only).
OFFLINE_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "PIP_INDEX_URL": "http://127.0.0.1:9/",
    "PIP_NO_INDEX": "1",
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_RETRIES": "0",
    "PIP_DEFAULT_TIMEOUT": "3",
}
DROPPED_ENV = ("no_proxy", "NO_PROXY", "PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "DIGITNET_DATA_DIR")

#: Names a write in progress (or an abandoned one) goes by: digitnet's ``.<name>.<pid>@<host>.<hex>.part``,
#: the usual ``.tmp``/``tmp*`` of other writers, and the folder ``pip download`` fills.
TEMPORARY = re.compile(r"(\.part|\.tmp)$|^tmp|^digitnet-pip-")

#: Seconds a command may take before it counts as a hang (each runs in about 2 s alone).
TIMEOUTS = {"training options": 60, "corrupt data folders": 90, "odd images through predict": 15, "kill -9": 90}

#: Loads each model file named on the command line; one JSON list of "ok: ..." / "error: ..." out.
LOAD_CHECK = r"""
import json, sys
from digitnet.nn import Network
verdicts = []
for path in sys.argv[1:]:
    try:
        verdicts.append("ok: " + Network.load(path).describe())
    except BaseException as error:
        verdicts.append(f"error: {type(error).__name__}: {error}")
print(json.dumps(verdicts))
"""

#: Saves a 51 MB CNN over and over, saying "saved" after each save, until it is killed.
SAVE_LOOP = r"""
import sys
import numpy as np
from digitnet.nn.architectures import build_cnn
network = build_cnn(hidden=(2048,), channels=(32, 128), padding="same", batch_norm=False, rng=np.random.default_rng(0))
while True:
    network.save(sys.argv[1])
    print("saved", flush=True)
"""

#: One save of a small model: "the next save" in a folder where saves were killed.
SAVE_ONCE = r"""
import sys
import numpy as np
from digitnet.nn import build_mlp
build_mlp((8,), rng=np.random.default_rng(0)).save(sys.argv[1])
"""


@dataclass
class Run:
    """What one command did: its exit status (negative: killed by that signal), output and cost."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    rss: int  # peak resident set size (VmHWM), bytes
    timed_out: bool


@dataclass
class Bench:
    """What every command-line case shares: the tree under test, a work folder, the fixtures."""

    src: Path
    work: Path
    seed: int
    model: Path = Path()  # a tiny model trained once on digits
    numbers: Iterator[int] = dataclasses.field(default_factory=itertools.count)  # next() is atomic

    def folder(self, label: str) -> Path:
        """A fresh folder for one run, holding an empty cache and an empty temporary folder."""
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40]
        folder = self.work / f"{next(self.numbers):03d}-{slug}"
        for sub in ("cache", "TMPDIR"):
            (folder / sub).mkdir(parents=True)
        return folder

    def env(self, folder: Path) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in DROPPED_ENV}
        env.update(OFFLINE_ENV)
        env.update(
            PYTHONPATH=str(self.src),
            OPENBLAS_NUM_THREADS="1",
            OMP_NUM_THREADS="1",
            DIGITNET_CACHE_DIR=str(folder / "cache"),
            TMPDIR=str(folder / "TMPDIR"),
            MPLCONFIGDIR=str(self.work / "matplotlib"),
            MPLBACKEND="Agg",
        )
        return env


def digitnet(*args: str) -> list[str]:
    return [sys.executable, "-m", "digitnet", *args]


def run_command(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> Run:
    """Run ``argv`` in its own session; after ``timeout`` seconds SIGKILL its whole process group."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        status, peak, timed_out = wait_or_kill(process, start + timeout)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return Run(argv, status, stdout, stderr, seconds, peak, timed_out)


def wait_or_kill(process: subprocess.Popen, deadline: float) -> tuple[int, int, bool]:
    """Wait for ``process`` until ``deadline`` (perf_counter), then kill -9 its process group.

    Returns the exit status, the peak resident memory of the process (``VmHWM``, sampled every
    20 ms: ``ru_maxrss`` would count the memory of this process, which forked it) and whether
    it had to be killed. The exit is noticed without reaping (``WNOWAIT``): while the leader is a
    zombie its group id cannot be reused, so what it left running in its group (pip, say) is
    killed safely.
    """
    timed_out, peak = False, 0
    status_file = f"/proc/{process.pid}/status"
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        with contextlib.suppress(OSError, ValueError):
            with open(status_file) as status:
                line = next((line for line in status if line.startswith("VmHWM:")), "")
                peak = max(peak, int(line.split()[1]) * 1024) if line else peak
        if time.perf_counter() >= deadline:
            timed_out = True
            break
        time.sleep(0.02)
    kill_group(process.pid)
    _, status = os.waitpid(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, peak, timed_out


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def classify(run: Run, *, one_line: bool = True) -> tuple[str, str]:
    """``(outcome, message)``: hang, traceback, succeeded, refused (one ``Error:``, one line unless
    ``one_line`` is false, no traceback) or unclean (any other non-zero exit)."""
    if run.timed_out:
        return "hang", f"still running after {run.seconds:.0f} s; killed"
    if "Traceback" in run.stdout or "Traceback" in run.stderr:
        return "traceback", " / ".join(run.stderr.strip().splitlines()[-2:])
    if run.returncode == 0:
        last = (run.stdout.strip() or run.stderr.strip()).splitlines()
        return "succeeded", last[-1] if last else ""
    lines = run.stderr.rstrip().splitlines()
    errors = error_lines(run.stderr)
    if run.returncode > 0 and len(errors) == 1:
        after = lines[lines.index(errors[0]) + 1 :]
        if not one_line or not any(line.strip() for line in after):
            return "refused", " ".join([errors[0], *after]) if not one_line else errors[0]
    what = f"exit {run.returncode}" if run.returncode >= 0 else f"killed by signal {-run.returncode}"
    return "unclean", f"{what}, {len(errors)} 'Error:' lines: {' / '.join(lines[-3:])}"


# -- what a run left on disk --


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry below ``roots``: kind, size and content hash (size, mtime and inode when large)."""
    entries: dict[str, tuple] = {}
    for root in roots:
        for folder, folders, files in os.walk(root):
            for name in folders + files:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode):
                    if info.st_size > 1 << 20:
                        entries[path] = ("file", info.st_size, info.st_mtime_ns, info.st_ino)
                    else:
                        entries[path] = ("file", info.st_size, hashlib.sha256(Path(path).read_bytes()).hexdigest())
                else:
                    entries[path] = (stat.S_IFMT(info.st_mode),)
    return entries


@dataclass
class Changes:
    new: list[str]
    changed: list[str]
    removed: list[str]

    @property
    def temporaries(self) -> list[str]:
        """New temporaries by name, and anything left in a run's own TMPDIR."""
        tmpdir = f"{os.sep}TMPDIR{os.sep}"
        return [path for path in self.new if TEMPORARY.search(Path(path).name) or tmpdir in path]

    def describe(self, base: Path) -> str:
        def short(paths: list[str]) -> str:
            names = [os.path.relpath(path, base) for path in paths]
            return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")

        parts = [
            f"{label} {short(paths)}"
            for label, paths in (("wrote", self.new), ("changed", self.changed), ("removed", self.removed))
            if paths
        ]
        return "; ".join(parts)


def changes(before: dict[str, tuple], after: dict[str, tuple]) -> Changes:
    return Changes(
        new=sorted(path for path in after if path not in before),
        changed=sorted(path for path in after if path in before and after[path] != before[path]),
        removed=sorted(path for path in before if path not in after),
    )


def cli_result(
    category: str, name: str, run: Run | None, outcome: str, expect: str, problems: list[str], lost: int, message: str
) -> dict:
    """One row of the command-line tables; ``problems`` empty means it behaved as expected.

    ``message`` is what the command said (or, for kill -9, what became of OUT); ``detail`` adds
    the problems to it.
    """
    result = {
        "category": category,
        "name": name,
        "command": (" ".join(run.argv[2:]) if run.argv[1] == "-m" else "python -c <script>") if run else "",
        "outcome": outcome,
        "expect": expect,
        "as_expected": not problems,
        "problems": problems,
        "lost": lost,
        "message": message,
        "seconds": run.seconds if run else None,
        "rss": run.rss if run else None,
    }
    return with_detail(result)


def with_detail(result: dict) -> dict:
    """Set ``detail``: the message, then each problem that is more than the outcome's name."""
    problems = [problem for problem in result["problems"] if problem != result["outcome"]]
    result["detail"] = "; ".join(part for part in [result["message"], *problems] if part)
    return result


def refusal_case(bench: Bench, category: str, name: str, args: list[str], setup: Callable[[Path], None]) -> dict:
    """Run one command that must be refused with one line and must write nothing at all."""
    folder = bench.folder(f"{category}-{name}")
    setup(folder)
    before = snapshot(folder)
    run = run_command(digitnet(*args), cwd=folder, env=bench.env(folder), timeout=TIMEOUTS[category])
    outcome, message = classify(run)
    found = changes(before, snapshot(folder))
    problems = [] if outcome == "refused" else [outcome]
    if found.new or found.changed or found.removed:
        problems.append(found.describe(folder))
    lost = len(found.temporaries) + len(found.changed) + len(found.removed)
    return cli_result(category, name, run, outcome, "refused", problems, lost, message)


# -- 1. training options --


def training_option_results(bench: Bench, pool: ThreadPoolExecutor) -> list[dict]:
    """``digitnet train`` with options it must refuse before writing anything.

    Each runs in a folder holding a good ``model.npz`` (the default ``--out``), a regular file
    ``file.txt`` and an empty folder ``folder``; none of them may change, nothing may appear.
    """
    base = ["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1"]
    cases = {
        "--out in a missing folder": ["--out", "missing/model.npz"],
        "--out under a regular file": ["--out", "file.txt/model.npz"],
        "--out pointing at a folder": ["--out", "folder"],
        "--out empty": ["--out", ""],
        "--plots under a regular file": ["--plots", "file.txt/plots"],
        "--seed -1": ["--seed", "-1"],
        "--hidden 100000000": ["--hidden", "100000000"],
        "--lr nan": ["--lr", "nan"],
        "--lr inf": ["--lr", "inf"],
        "--weight-decay nan": ["--weight-decay", "nan"],
        "--label-smoothing nan": ["--label-smoothing", "nan"],
        "--lr 1e6 over an existing good model": ["--lr", "1e6", "--out", "model.npz"],
        "--val-size larger than the training set": ["--val-size", "100000"],
    }

    def setup(folder: Path) -> None:
        shutil.copy(bench.model, folder / "model.npz")
        (folder / "file.txt").write_text("a regular file, not a folder\n")
        (folder / "folder").mkdir()

    futures = [
        pool.submit(refusal_case, bench, "training options", name, [*base, *extra], setup)
        for name, extra in cases.items()
    ]
    return [future.result() for future in futures]


# -- 2. corrupt data folders --


def real_mnist() -> dict[str, bytes] | None:
    """The four MNIST files from the user cache (read only), or ``None`` when they are not there."""
    from digitnet.data import DATASETS
    from digitnet.data.cache import default_cache_dir

    files = {}
    for spec in DATASETS["mnist"].files:
        path = default_cache_dir() / "mnist" / spec.name
        if not path.is_file() or path.stat().st_size != spec.size:
            return None
        files[spec.name] = path.read_bytes()
    return files


def synthetic_mnist() -> dict[str, bytes]:
    """IDX files of MNIST's sizes and headers, random pixels: stand-ins when MNIST is not cached."""
    from digitnet.data import DATASETS

    rng = np.random.default_rng(1)
    files = {}
    for spec in DATASETS["mnist"].files:
        count = 60_000 if spec.name.startswith("train") else 10_000
        header = (
            struct.pack(">IIII", 0x803, count, 28, 28) if "images" in spec.name else struct.pack(">II", 0x801, count)
        )
        files[spec.name] = header + rng.integers(0, 256, spec.size - len(header), np.uint8).tobytes()
    return files


def data_folder_variants(real: dict[str, bytes], genuine: bool) -> dict[str, dict[str, bytes | None]]:
    """Folders of the four MNIST names, by variant: file name -> content (``None``: a directory)."""
    rng = np.random.default_rng(2)
    header = {name: 16 if "images" in name else 8 for name in real}
    variants: dict[str, dict[str, bytes | None]] = {
        "truncated files (first half)": {name: data[: len(data) // 2] for name, data in real.items()},
        "truncated .gz files": {
            f"{name}.gz": (packed := gzip.compress(data[: 1 << 20], 1))[: len(packed) // 2]
            for name, data in real.items()
        },
        "wrong magic, full size": {name: b"\xde\xad\xbe\xef" + data[4:] for name, data in real.items()},
        "random bytes": {name: rng.bytes(4096) for name in real},
        ".gz that is not gzip": {f"{name}.gz": b"\x1f\x8b\x08\x00" + rng.bytes(4092) for name in real},
        "right size, wrong bytes": {
            name: data[: header[name]] + bytes(len(data) - header[name]) for name, data in real.items()
        },
        "directories in place of the files": {name: None for name in real},
        "empty files": {name: b"" for name in real},
    }
    if genuine:  # only real labels pass their sha256: then the cache must hold those two and nothing else
        variants["good labels, truncated images"] = {
            name: data if "labels" in name else data[: len(data) // 2] for name, data in real.items()
        }
    return variants


def data_folder_results(bench: Bench, pool: ThreadPoolExecutor) -> tuple[list[dict], str]:
    """``data fetch`` and ``train`` on MNIST from a corrupt --data-dir, an empty cache, no network.

    Expected: one error listing every source tried (the folder among them), the data folder left
    as it was, and nothing in the cache but files that pass their sha256.
    """
    from digitnet.data import DATASETS

    checksums = {spec.name: spec.sha256 for spec in DATASETS["mnist"].files}
    real = real_mnist()
    note = "" if real else " (MNIST is not in the user cache: synthetic IDX files stand in, no good-labels case)"
    variants = data_folder_variants(real or synthetic_mnist(), genuine=real is not None)
    del real
    jobs = []
    for number, (variant, files) in enumerate(variants.items()):
        data_dir = bench.work / "data-folders" / f"{number}"
        data_dir.mkdir(parents=True)
        for name, content in files.items():
            if content is None:
                (data_dir / name).mkdir()
            else:
                (data_dir / name).write_bytes(content)

        def check(folder: Path, run: Run, message: str, data_dir: Path = data_dir) -> list[str]:
            problems = []
            if message and ("Sources tried" not in message or str(data_dir) not in message):
                problems.append("the error does not list the sources tried, the data folder among them")
            for path in sorted((folder / "cache").rglob("*")):
                if TEMPORARY.search(path.name):
                    continue  # counted as a temporary left behind
                if path.is_file() and not (
                    path.parent.name == "mnist"
                    and path.name in checksums
                    and hashlib.sha256(path.read_bytes()).hexdigest() == checksums[path.name]
                ):
                    problems.append(f"unverified file in the cache: {path.relative_to(folder)}")
            return problems

        for command in (
            ["data", "fetch", "--dataset", "mnist"],
            ["train", "--dataset", "mnist", "--epochs", "1"],
        ):
            label = f"{variant}: {' '.join(command[:2]) if command[0] == 'data' else 'train'}"
            args = [*command, "--data-dir", str(data_dir), "--cache-dir", "CACHE"]
            jobs.append(pool.submit(data_case, bench, label, args, data_dir, check))
    return [job.result() for job in jobs], note


def data_case(bench: Bench, label: str, args: list[str], data_dir: Path, check: Callable) -> dict:
    """One corrupt-folder command, with its own empty ``--cache-dir`` (put in place of ``CACHE``)."""
    folder = bench.folder(f"data-{label}")
    cache = folder / "cache"
    args = [str(cache) if arg == "CACHE" else arg for arg in args]
    before = snapshot(folder, data_dir)
    run = run_command(digitnet(*args), cwd=folder, env=bench.env(folder), timeout=TIMEOUTS["corrupt data folders"])
    outcome, message = classify(run, one_line=False)
    found = changes(before, snapshot(folder, data_dir))
    problems = [] if outcome == "refused" else [outcome]
    cache_problems = check(folder, run, message if outcome == "refused" else "")
    problems += cache_problems
    unverified = sum(p.startswith("unverified") for p in cache_problems)
    outside_cache = [p for p in found.new if not p.startswith(str(cache) + os.sep)]
    if outside_cache or found.temporaries or found.changed or found.removed:
        problems.append(found.describe(folder))
    lost = len(found.temporaries) + len(found.changed) + len(found.removed) + unverified
    cached = [p for p in found.new if p.startswith(str(cache) + os.sep) and os.path.isfile(p)]
    shown = message.split(" Sources tried")[0][:110] if outcome == "refused" else message
    if cached and not unverified:
        shown += f" (cached {len(cached)} verified file(s))"
    return cli_result("corrupt data folders", label, run, outcome, "refused", problems, lost, shown)


# -- 3. odd images through predict --


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def digit_drawing(size: int = 140):
    """A black 7 on white paper."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    draw.line(
        [(0.25 * size, 0.2 * size), (0.75 * size, 0.2 * size), (0.4 * size, 0.85 * size)], fill=0, width=size // 12
    )
    return image


def odd_images(folder: Path) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """The good digit and the odd files, each ``name -> (path, expected)``: error, read, either."""
    from PIL import Image

    folder.mkdir(parents=True)
    digit = digit_drawing()
    good = folder / "good.png"
    digit.save(good)
    rng = np.random.default_rng(3)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(bytes(20_001 * 16)))
        + png_chunk(b"IEND", b"")
    )
    deep = (255 - np.asarray(digit, np.uint16)) * 257  # 16-bit grey, white ink on black
    contents = {
        "empty file": ("empty.png", b"", "error"),
        "text file": ("notes.txt", b"this is a shopping list, not a digit\n", "error"),
        "truncated PNG": ("truncated.png", png_bytes(digit)[: len(png_bytes(digit)) // 2], "error"),
        "PNG of 1x1": ("one-pixel.png", png_bytes(Image.new("L", (1, 1), 0)), "either"),
        "20000x20000 PNG header (decompression bomb)": ("bomb.png", bomb, "error"),
        "GIF of a digit": ("digit.gif", None, "read"),
        "16-bit PNG of a digit": ("digit-16bit.png", png_bytes(Image.fromarray(deep.astype(np.uint16))), "read"),
        "RGBA PNG, fully transparent": (
            "transparent.png",
            png_bytes(Image.new("RGBA", (64, 64), (0, 0, 0, 0))),
            "error",
        ),
        "blank white page": ("blank.png", png_bytes(Image.new("L", (850, 1100), 255)), "error"),
        "random noise": (
            "noise.png",
            png_bytes(Image.fromarray(rng.integers(0, 256, (200, 200, 3), np.uint8))),
            "either",
        ),
    }
    files = {}
    for name, (file_name, data, expect) in contents.items():
        path = folder / file_name
        if data is None:
            digit.save(path, format="GIF")
        else:
            path.write_bytes(data)
        files[name] = (path, expect)
    (folder / "folder.png").mkdir()
    files["a folder"] = (folder / "folder.png", "error")
    os.mkfifo(folder / "fifo.png")
    files["a FIFO (nothing writes to it)"] = (folder / "fifo.png", "error")
    return good, files


def reject_constant(name: str) -> float:
    raise ValueError(f"{name} in the JSON")


def text_statuses(run: Run, paths: list[Path]) -> dict[str, str]:
    """Per file, from plain output: read (a stdout line), error (a stderr line), missing or twice."""
    statuses = {}
    for path in paths:
        prefix = f"{path}: "
        read = sum(line.startswith(prefix) for line in run.stdout.splitlines())
        failed = sum(line.startswith(prefix) for line in run.stderr.splitlines())
        statuses[str(path)] = {(1, 0): "read", (0, 1): "error", (0, 0): "missing"}.get((read, failed), "several lines")
    return statuses


def json_statuses(run: Run, paths: list[Path]) -> tuple[dict[str, str], str]:
    """Per file, from ``--json`` output: read, error, missing or a bad entry; and why the JSON is bad."""
    missing = {str(path): "missing" for path in paths}
    try:
        entries = json.loads(run.stdout, parse_constant=reject_constant)
    except ValueError as error:
        return missing, f"stdout is not valid JSON ({str(error)[:80]})" if run.stdout.strip() else "no JSON on stdout"
    if not isinstance(entries, list) or len(entries) != len(paths):
        return missing, f"JSON is not a list of {len(paths)} entries"
    statuses = {}
    for path, entry in zip(paths, entries):
        if not isinstance(entry, dict) or entry.get("file") != str(path):
            statuses[str(path)] = "bad entry"
        elif isinstance(entry.get("error"), str) and entry["error"] and "digit" not in entry:
            statuses[str(path)] = "error"
        elif (
            isinstance(entry.get("digit"), int)
            and "error" not in entry
            and all(isinstance(p, (int, float)) and math.isfinite(p) for p in entry.get("probabilities", [None]))
        ):
            statuses[str(path)] = "read"
        else:
            statuses[str(path)] = "bad entry"
    return statuses, ""


def predict_run(
    bench: Bench, label: str, paths: list[Path], as_json: bool, images: Path
) -> tuple[Run, dict[str, str], list[str], int]:
    """``predict MODEL PATHS [--json]`` in a fresh folder: the run, statuses by path, problems, lost files."""
    folder = bench.folder(f"predict-{label}")
    before = snapshot(folder, images)
    args = ["predict", str(bench.model), *map(str, paths), *(["--json"] if as_json else [])]
    run = run_command(
        digitnet(*args), cwd=folder, env=bench.env(folder), timeout=TIMEOUTS["odd images through predict"]
    )
    found = changes(before, snapshot(folder, images))
    problems = []
    if found.new or found.changed or found.removed:
        problems.append(found.describe(folder))
    if run.timed_out or "Traceback" in run.stdout + run.stderr:
        return run, {}, problems, len(found.temporaries) + len(found.changed) + len(found.removed)
    if as_json:
        statuses, bad_json = json_statuses(run, paths)
        if bad_json:
            problems.append(f"--json: {bad_json}")
    else:
        statuses = text_statuses(run, paths)
    return run, statuses, problems, len(found.temporaries) + len(found.changed) + len(found.removed)


def judge_predict(
    label: str, runs: list[tuple[Run, dict[str, str], list[str], int]], good: Path, expected: dict[str, str]
) -> dict:
    """Fold the plain and --json runs of one input into one row: outcome, problems, lost files.

    ``expected`` maps each odd file to error, read or either. The outcome is a clean refusal
    when every odd file got its own error (or the whole command was refused in one line), a
    success when every one was read.
    """
    problems: list[str] = []
    outcomes: list[str] = []
    messages: list[str] = []
    for run, statuses, run_problems, _ in runs:
        mode = "--json" if "--json" in run.argv else "plain"
        problems += [p if p.startswith("--json") else f"{mode}: {p}" for p in run_problems]
        kind, message = classify(run)
        if kind in ("hang", "traceback"):
            outcomes.append(kind)
            problems.append(f"{mode}: {kind}: {message[:160]}")
            continue
        whole = error_lines(run.stderr)
        if statuses and all(status == "missing" for status in statuses.values()) and whole and run.returncode > 0:
            problems = [problem for problem in problems if problem != "--json: no JSON on stdout"]
            outcomes.append("refused")
            messages.append(whole[-1])
            problems.append(
                f"{mode}: the whole command was refused (exit {run.returncode}), so {good.name} was not read"
            )
            continue
        failed = False
        for path, status in statuses.items():
            want = "read" if path == str(good) else expected[path]
            failed |= status == "error"
            if status not in ("read", "error") or (want != "either" and status != want):
                problems.append(f"{mode}: {Path(path).name}: {status} (expected {want})")
        if run.returncode != (1 if failed else 0):
            problems.append(f"{mode}: exit {run.returncode} (expected {1 if failed else 0})")
        odd = [status for path, status in statuses.items() if path != str(good)]
        outcomes.append(
            "unclean" if any(s not in ("read", "error") for s in odd) else "refused" if "error" in odd else "succeeded"
        )
        for path in statuses:
            if path != str(good):
                messages += [
                    line.split(": ", 1)[-1] for line in run.stderr.splitlines() if line.startswith(f"{path}: ")
                ]
                messages += [
                    line.split(": ", 1)[-1] for line in run.stdout.splitlines() if line.startswith(f"{path}: ")
                ]
    outcome = next((o for o in ("hang", "traceback", "unclean") if o in outcomes), outcomes[0])
    wants = set(expected.values())
    expect = (
        "refused"
        if "error" in wants and len(expected) > 1
        else {"error": "refused", "read": "succeeded"}.get(wants.pop(), "either")
    )
    if expect != "either" and outcome != expect and not any(outcome in p for p in problems):
        problems.insert(0, f"{outcome} (expected {expect})")
    if expect == "either" and outcome not in ("refused", "succeeded") and not any(outcome in p for p in problems):
        problems.insert(0, outcome)
    worst = max((run for run, *_ in runs), key=lambda run: run.rss)
    result = cli_result(
        "odd images through predict",
        label,
        worst,
        outcome,
        expect,
        problems,
        sum(lost for *_, lost in runs),
        (messages or [""])[0][:140],
    )
    result["seconds"] = sum(run.seconds for run, *_ in runs)
    return result


def predict_results(bench: Bench, pool: ThreadPoolExecutor) -> list[dict]:
    """``predict MODEL good.png ODD`` for each odd file (plain, then --json), then all at once.

    Documented behaviour: a file that cannot be read gets its own error line (an ``error``
    field with --json), the others are still read, and the exit status is 1. A file that hangs
    alone, or stops the whole command, is left out of the all-at-once runs, which then show how
    the rest fare together.
    """
    images = bench.work / "images"
    good, files = odd_images(images)
    # The FIFO first: if it hangs, its timeout runs beside the other files.
    order = sorted(files, key=lambda name: "FIFO" not in name)

    def one(name: str) -> tuple[dict, bool]:
        path, expect = files[name]
        plain = predict_run(bench, name, [good, path], False, images)
        runs = [plain]
        if not plain[0].timed_out:
            runs.append(predict_run(bench, name, [good, path], True, images))
        result = judge_predict(name, runs, good, {str(path): expect})
        return result, plain[0].timed_out or any("whole command" in problem for problem in result["problems"])

    done = dict(zip(order, pool.map(one, order)))
    results = [done[name][0] for name in files]
    together = [files[name][0] for name in files if not done[name][1]]
    left_out = len(files) - len(together)
    label = "all files at once" + (f" (less {left_out} that hung or stopped the command alone)" if left_out else "")
    runs = [predict_run(bench, "all", [good, *together], as_json, images) for as_json in (False, True)]
    expected = {str(path): expect for path, expect in files.values()}
    results.append(judge_predict(label, runs, good, {str(path): expected[str(path)] for path in together}))
    return results


# -- 4. kill -9 --


def temporaries_in(folder: Path) -> list[str]:
    """Temporaries beside the model in ``folder`` (and in its TMPDIR)."""
    names = [entry.name for entry in folder.iterdir() if TEMPORARY.search(entry.name)]
    return sorted(names + [f"TMPDIR/{entry.name}" for entry in (folder / "TMPDIR").iterdir()])


def load_verdicts(bench: Bench, paths: list[Path]) -> list[str]:
    env = bench.env(bench.work)
    run = run_command([sys.executable, "-c", LOAD_CHECK, *map(str, paths)], cwd=bench.work, env=env, timeout=120)
    try:
        return json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return [f"error: the load check failed: {run.stderr.strip()[-160:]}"] * len(paths)


def kill_results(bench: Bench, train_kills: int = 4, save_kills: int = 5) -> tuple[list[dict], str]:
    """kill -9 a training run (random delays, fixed seed) and a loop saving a 51 MB CNN.

    After each kill: the ``.part`` files beside OUT, and whether OUT is still the model it was
    before (byte for byte) or a model that loads. Then one more save in each folder, which must
    leave no temporary behind (it removes those of dead writers) and write a model that loads.
    """
    rng = random.Random(bench.seed)
    category = "kill -9"
    results: list[dict] = []
    to_load: list[tuple[dict, Path]] = []  # rows whose OUT must load, with a copy of that OUT
    leftovers = []
    copies = bench.work / "kill-copies"
    copies.mkdir()

    def record(name: str, run: Run, out: Path, old: str | None, note: str, *, after_kills: bool = False) -> None:
        parts = temporaries_in(out.parent)
        if after_kills:
            outcome, message = classify(run)
        else:
            outcome, message = ("traceback" if "Traceback" in run.stderr else "succeeded"), ""
        problems = [] if outcome == "succeeded" else [f"{outcome}: {message or run.stderr.strip()[-160:]}"]
        lost = 0
        if not out.exists():
            state = "LOST: no model file"
            problems.append(state)
            lost += 1
        elif old is not None and hashlib.sha256(out.read_bytes()).hexdigest() == old:
            state = "the model it was before, intact"
        else:
            state = "a new file"
        if after_kills:
            detail = f"{note}; {len(parts)} temporaries left after it; OUT: {state}"
            if parts:
                problems.append(f"stale temporaries still there: {', '.join(parts[:3])}")
                lost += len(parts)
        else:
            leftovers.append(len(parts))
            detail = f"{note}; {len(parts)} .part beside OUT; OUT: {state}"
        if lost and outcome == "succeeded":
            outcome = "unclean"
        result = cli_result(category, name, run, outcome, "succeeded", problems, lost, detail)
        results.append(result)
        if state == "a new file":
            copy = copies / f"{len(to_load)}.npz"
            shutil.copyfile(out, copy)
            to_load.append((result, copy))

    # a) training, killed during its 200 epochs, over a good model
    folder = bench.folder("kill-train")
    out = folder / "model.npz"
    shutil.copy(bench.model, out)
    for number in range(train_kills):
        old = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else None
        delay = rng.uniform(0.5, 5.0)
        run = run_command(
            digitnet("train", "--dataset", "digits", "--epochs", "200", "--out", str(out)),
            cwd=folder,
            env=bench.env(folder),
            timeout=delay,
        )
        note = f"killed after {delay:.1f} s" if run.timed_out else f"ended by itself (exit {run.returncode})"
        record(f"train --epochs 200, kill {number + 1}", run, out, old, note)
    run = run_command(
        digitnet("train", "--dataset", "digits", "--hidden", "8", "--epochs", "3", "--lr", "0.03", "--out", str(out)),
        cwd=folder,
        env=bench.env(folder),
        timeout=TIMEOUTS[category],
    )
    record("the next training run in that folder", run, out, None, "ran to the end", after_kills=True)

    # b) Network.save of a 51 MB CNN, killed mid-save (after its first save, so OUT exists)
    folder = bench.folder("kill-save")
    out = folder / "model.npz"
    for number in range(save_kills):
        delay = rng.uniform(0.0, 1.0)
        run = kill_while_saving(bench, folder, out, delay)
        saves = run.stdout.count("saved")
        if run.timed_out:
            note = f"killed {delay:.2f} s after its first save ({saves} saves done)"
        else:
            note = f"exit {run.returncode} before it could be killed"
        record(f"Network.save of a 51 MB CNN, kill {number + 1}", run, out, None, note)
    run = run_command(
        [sys.executable, "-c", SAVE_ONCE, str(out)], cwd=folder, env=bench.env(folder), timeout=TIMEOUTS[category]
    )
    record("the next Network.save in that folder", run, out, None, "a small model", after_kills=True)

    verdicts = load_verdicts(bench, [copy for _, copy in to_load])
    for (result, _), verdict in zip(to_load, verdicts):
        if verdict.startswith("ok"):
            result["message"] += " that loads"
        else:
            result["message"] += " that does not load"
            result["problems"].append(f"OUT does not load: {verdict[7:160]}")
            result["as_expected"], result["lost"] = False, result["lost"] + 1
            result["outcome"] = "unclean" if result["outcome"] == "succeeded" else result["outcome"]
        with_detail(result)
    note = (
        f"{train_kills + save_kills} kills left {sum(leftovers)} .part file(s) beside OUT in all (expected while a "
        "write is under way; the next save must remove them)."
    )
    return results, note


def kill_while_saving(bench: Bench, folder: Path, out: Path, delay: float) -> Run:
    """Start the save loop, wait for its first save to finish, kill -9 it ``delay`` seconds later."""
    argv = [sys.executable, "-c", SAVE_LOOP, str(out)]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv,
            cwd=folder,
            env=bench.env(folder),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
        first = b""
        if select.select([process.stdout], [], [], TIMEOUTS["kill -9"])[0]:
            first = process.stdout.readline()
        deadline = time.perf_counter() + (delay if first else 0)
        status, peak, timed_out = wait_or_kill(process, deadline)
        rest = process.stdout.read()
        process.stdout.close()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return Run(
        argv,
        status,
        (first + rest).decode(errors="replace"),
        stderr,
        time.perf_counter() - start,
        peak,
        timed_out and bool(first),
    )


# -- reporting the command-line categories --


def cli_summary(results: list[dict]) -> str:
    lines = [
        "| category | inputs | clean refusals | successes | tracebacks | hangs | half-written/lost files "
        "| not as expected | max RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for category in dict.fromkeys(r["category"] for r in results):
        rows = [r for r in results if r["category"] == category]
        count = {o: sum(r["outcome"] == o for r in rows) for o in ("refused", "succeeded", "traceback", "hang")}
        rss = [r["rss"] for r in rows if r["rss"]]
        lines.append(
            f"| {category} | {len(rows)} | {count['refused']} | {count['succeeded']} | {count['traceback']} | "
            f"{count['hang']} | {sum(r['lost'] for r in rows)} | {sum(not r['as_expected'] for r in rows)} | "
            f"{mib(max(rss) if rss else None)} |"
        )
    return "\n".join(lines)


def cli_details(results: list[dict]) -> str:
    lines = [
        "| category | input | outcome | as expected | lost | seconds | max RSS | detail |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.2f}"
        lines.append(
            f"| {r['category']} | {r['name']} | {r['outcome']} | {'yes' if r['as_expected'] else 'NO'} | {r['lost']} | "
            f"{seconds} | {mib(r['rss'])} | {r['detail'].replace('|', '/')[:200]} |"
        )
    return "\n".join(lines)


def run_cli_sections(sections: list[str], src: Path, jobs: int, seed: int) -> tuple[list[dict], list[str]]:
    """Run the chosen command-line categories in a temporary folder; their results and notes."""
    results, notes = [], []
    with tempfile.TemporaryDirectory(prefix="digitnet-reliability-") as work, ThreadPoolExecutor(jobs) as pool:
        bench = Bench(src=src, work=Path(work), seed=seed)
        (bench.work / "fixtures").mkdir()
        bench.model = bench.work / "fixtures" / "tiny.npz"
        made = run_command(
            digitnet(
                "train",
                "--dataset",
                "digits",
                "--hidden",
                "8",
                "--epochs",
                "3",
                "--lr",
                "0.03",
                "--out",
                str(bench.model),
            ),
            cwd=bench.work,
            env=bench.env(bench.work),
            timeout=120,
        )
        if made.returncode != 0 or not bench.model.is_file():
            raise SystemExit(f"Could not train the tiny model the command-line cases need:\n{made.stderr[-2000:]}")
        if "training-options" in sections:
            results += training_option_results(bench, pool)
        if "data-folders" in sections:
            found, note = data_folder_results(bench, pool)
            results += found
            if note:
                notes.append(f"Data folders{note}.")
        if "predict-images" in sections:
            results += predict_results(bench, pool)
        if "kill-9" in sections:
            found, note = kill_results(bench)
            results += found
            notes.append(f"kill -9: {note}")
        for result in results:
            result["message"] = result["message"].replace(str(bench.work), "WORK")
            result["problems"] = [problem.replace(str(bench.work), "WORK") for problem in result["problems"]]
            with_detail(result)
    return results, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the digitnet source tree to test")
    parser.add_argument("--memory-limit", type=int, default=2 << 30, help="address-space cap per load (bytes)")
    parser.add_argument("--verbose", action="store_true", help="also print one row per input")
    parser.add_argument("--json", type=Path, help="write every result to this file")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SECTIONS),
        help="run only this category (repeatable): " + "; ".join(f"{key}: {value}" for key, value in SECTIONS.items()),
    )
    parser.add_argument("--jobs", type=int, default=2, help="command-line cases run side by side (kill -9 runs alone)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill -9 delays")
    args = parser.parse_args()
    sections = args.only or list(SECTIONS)
    sys.path.insert(0, str(REPO / "src"))  # the crafting uses this checkout's saver
    from digitnet.nn import build_mlp

    results: list[dict] = []
    if "model-files" in sections:
        cases = all_cases()
        with tempfile.TemporaryDirectory() as folder:
            build_mlp((4,), input_shape=(1, 4, 4), rng=np.random.default_rng(0)).save(Path(folder) / "warm.npz")
            results = [run_case(case, Path(folder), args.src.resolve(), args.memory_limit) for case in cases]
        print(
            f"Model-file reliability: {len(results)} inputs through Network.load from {args.src}, "
            f"each in its own process (address space capped at {mib(args.memory_limit)}).\n"
        )
        print(summary(results))
        failures = [r for r in results if r["outcome"] == "traceback" or r["outcome"] != r["expect"]]
        for r in failures:
            print(f"- {r['category']} / {r['name']}: {r['outcome']} (expected {r['expect']}): {r['detail'][:160]}")
        if args.verbose:
            print("\n" + details(results))
    cli = [section for section in sections if section != "model-files"]
    cli_results: list[dict] = []
    if cli:
        start = time.perf_counter()
        cli_results, notes = run_cli_sections(cli, args.src.resolve(), args.jobs, args.seed)
        print("\n" if results else "", end="")
        print(
            f"Command-line reliability: {len(cli_results)} inputs, each `python -m digitnet ...` (or a script) in its "
            f"own process from {args.src}, {args.jobs} side by side, network sources pointed at 127.0.0.1:9; "
            f"{time.perf_counter() - start:.0f} s.\n"
        )
        print(cli_summary(cli_results))
        for r in cli_results:
            if not r["as_expected"]:
                said_already = (r["outcome"], f"{r['outcome']} (expected {r['expect']})")
                problems = "; ".join(problem for problem in r["problems"] if problem not in said_already)
                said = f" [it said: {r['message'][:200]}]" if r["message"] else ""
                print(f"- {r['category']} / {r['name']}: {r['outcome']} (expected {r['expect']}): {problems}{said}")
        for note in notes:
            print(f"\n{note}", end="")
        print()
        if args.verbose:
            print("\n" + cli_details(cli_results))
        everything = [
            {"outcome": r["outcome"], "lost": 0, "bad": r["outcome"] == "traceback" or r["outcome"] != r["expect"]}
            for r in results
        ] + [{"outcome": r["outcome"], "lost": r["lost"], "bad": not r["as_expected"]} for r in cli_results]
        print(
            f"\nTotal: {len(everything)} inputs, {sum(r['outcome'] == 'refused' for r in everything)} clean refusals, "
            f"{sum(r['outcome'] == 'traceback' for r in everything)} tracebacks, "
            f"{sum(r['outcome'] == 'hang' for r in everything)} hangs, "
            f"{sum(r['lost'] for r in everything)} half-written/lost files "
            f"({sum(r['bad'] for r in everything)} inputs not as expected)."
        )
    if args.json:
        args.json.write_text(json.dumps(results + cli_results, indent=1))


if __name__ == "__main__":
    main()
