#!/usr/bin/env python
"""How long ``digitnet train --dataset FOLDER`` takes to read a folder of PNGs, first and again.

Writes ``--count`` MNIST test digits as 28x28 PNGs, dark on white (as a scanner gives them), into
``FOLDER/<digit>/<n>.png`` in a temporary folder, then loads the folder with
:func:`digitnet.data.load_image_folder` three ways: every image prepared in one process, prepared
in one worker process per core, and again from the cache of prepared digits::

    python benchmarks/image_folder.py --count 2000

Each image is prepared as ``digitnet predict`` prepares a file (the page analysis takes
milliseconds per image), so the first load is bound by the cores; loading the same folder again
reads the prepared digits back from the cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from digitnet.data import load_dataset, load_image_folder
from digitnet.experiment import cpu_count


def write_folder(root: Path, count: int) -> None:
    mnist = load_dataset("mnist")
    for index in range(count):
        folder = root / str(mnist.test_labels[index])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - mnist.test_images[index]).save(folder / f"{index}.png")


def timed(root: Path, cache: Path, workers: int) -> float:
    started = time.perf_counter()
    load_image_folder(root, cache_dir=cache, workers=workers)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="PNGs in the folder [2000]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "digits"
        write_folder(root, args.count)
        cores = cpu_count()
        rows = [
            ("prepared in 1 process", timed(root, Path(scratch) / "cache-1", 1)),
            (f"prepared in {cores} worker processes", timed(root, Path(scratch) / "cache-n", cores)),
            ("again, from the cache", timed(root, Path(scratch) / "cache-n", cores)),
        ]
    print(f"{args.count} PNGs of 28x28, {cores} cores:")
    for name, seconds in rows:
        print(f"  {name:<36} {seconds:6.2f} s  ({1000 * seconds / args.count:.2f} ms per image)")


if __name__ == "__main__":
    main()
