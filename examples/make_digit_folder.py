"""Write a small folder of digit images in the layout ``digitnet train --dataset FOLDER`` reads.

    python examples/make_digit_folder.py my-digits            # my-digits/0/*.png ... my-digits/9/*.png

The digits are scikit-learn's 8x8 handwritten digits (``pip install 'digitnet[sklearn]'``), drawn
dark on white paper at 32x32 pixels, the way a scanned or photographed digit arrives: each one is
prepared by digitnet exactly as ``digitnet predict`` prepares a file. The tests build the same folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 32


def write_digit_folder(out: str | Path, per_class: int = 30, classes: Mapping[str, int] | None = None) -> Path:
    """Write ``per_class`` PNGs of each digit into ``out/<digit>/<number>.png`` and return ``out``.

    ``classes`` maps folder names to the digit drawn in them (default: ``"0"`` to ``"9"``).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = Path(out)
    for name, digit in (classes or {str(digit): digit for digit in range(10)}).items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for number, index in enumerate(np.flatnonzero(digits.target == digit)[:per_class]):
            ink = digits.images[index] / 16  # 0 = paper, 1 = full ink
            paper = Image.fromarray(np.uint8(np.rint(255 * (1 - ink))))
            paper.resize((SIDE, SIDE), Image.Resampling.BILINEAR).save(folder / f"{number}.png")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (created if missing)")
    parser.add_argument("--per-class", type=int, default=30, help="images of each digit (at most 174)")
    args = parser.parse_args()
    write_digit_folder(args.out, args.per_class)
    print(f"Wrote {10 * args.per_class} PNGs into {args.out}/0 ... {args.out}/9.")


if __name__ == "__main__":
    main()
