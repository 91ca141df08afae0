"""Reliability benchmark for model files: hostile files through ``Network.load``, one process each.

Crafts model files in a temporary folder, by category: good models (the reference), huge sizes in
the metadata, zip bombs, metadata of the wrong type, models whose outputs are not finite, and files
that are not ZIP archives at all. Each is loaded by ``Network.load`` in a fresh Python process whose
address space is capped (``--memory-limit``, so that an unguarded loader meets a MemoryError rather
than taking the machine), with :mod:`tracemalloc` measuring the load's peak (NumPy's arrays
included). The table counts, per category, the inputs tried, the clean refusals (a one-line
``ModelFileError``), the loads, the tracebacks (any other exception) and the inputs whose outcome
was not the expected one, with the largest peak next to a good model's.

Usage::

    python benchmarks/reliability.py                        # this checkout's src/
    python benchmarks/reliability.py --src /other/src       # another digitnet, e.g. before a change
    python benchmarks/reliability.py --verbose --json reliability.json

Not a test: nothing here asserts. The largest inputs cost a few seconds to craft (a 1 GB zip bomb).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
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
        "cnn (default)": build_cnn(rng=rng, mean=0.13, std=0.31),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the digitnet source tree to test")
    parser.add_argument("--memory-limit", type=int, default=2 << 30, help="address-space cap per load (bytes)")
    parser.add_argument("--verbose", action="store_true", help="also print one row per input")
    parser.add_argument("--json", type=Path, help="write every result to this file")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))  # the crafting uses this checkout's saver
    from digitnet.nn import build_mlp

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
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
