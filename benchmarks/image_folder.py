#!/usr/bin/env python
"""How long ``digitnet train --dataset FOLDER`` takes to read a folder of PNGs, first and again.

Writes ``--count`` MNIST test digits as 28x28 PNGs, dark on white (as a scanner gives them), into
``FOLDER/<digit>/<n>.png`` in a temporary folder, then loads the folder with
:func:`digitnet.data.load_image_folder` three ways: every image prepared in one process, prepared
in one worker process per core, and again from the cache of prepared digits::

    python benchmarks/image_folder.py --count 2000
    python benchmarks/image_folder.py --count 2000 --images digits

``--images digits`` writes scikit-learn's 8x8 digits instead, drawn as 64x64 PNGs as
``benchmarks/other_writers.py`` draws them (its 1,797 digits, repeated in turn past that count).

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


def write_folder(root: Path, count: int, images: str) -> None:
    if images == "digits":
        from other_writers import clean_png  # benchmarks/, beside this script
        from sklearn.datasets import load_digits

        digits = load_digits()
        for index in range(count):
            folder = root / str(digits.target[index % len(digits.target)])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index}.png").write_bytes(clean_png(digits.images[index % len(digits.target)]))
        return
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
    parser.add_argument(
        "--images",
        choices=("mnist", "digits"),
        default="mnist",
        help="MNIST test digits as 28x28 PNGs, or scikit-learn's digits drawn as 64x64 PNGs [mnist]",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "digits"
        write_folder(root, args.count, args.images)
        cores = cpu_count()
        rows = [
            ("prepared in 1 process", timed(root, Path(scratch) / "cache-1", 1)),
            (f"prepared in {cores} worker processes", timed(root, Path(scratch) / "cache-n", cores)),
            ("again, from the cache", timed(root, Path(scratch) / "cache-n", cores)),
        ]
    side = 64 if args.images == "digits" else 28
    print(f"{args.count} PNGs of {side}x{side} ({args.images}), {cores} cores:")
    for name, seconds in rows:
        print(f"  {name:<36} {seconds:6.2f} s  ({1000 * seconds / args.count:.2f} ms per image)")


if __name__ == "__main__":
    main()
