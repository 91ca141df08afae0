#!/usr/bin/env python
"""How well do models trained on MNIST read digits by other writers, scanned clean or photographed?

One run, each model side by side (with digitnet installed, or ``PYTHONPATH=src``)::

    python benchmarks/other_writers.py --models model.npz cnn.npz
    python benchmarks/other_writers.py --models model.npz --drawings my-digits/ --out writers.json

For each model file it reports accuracy, per-class accuracy and the share of images refused
(``ImageError``: counted as wrong) on:

(a) ``mnist``: the 10,000 MNIST test digits, as arrays (what ``digitnet evaluate`` measures);
(b) ``mnist-png``: the same digits saved as 28x28 PNGs, white on black, read through
    ``preprocess_file`` (nothing is gained or lost by the file path: any difference is the
    preprocessing's doing, and a refusal here is a false refusal);
(c) ``digits-clean``: scikit-learn's 1,797 8x8 digits, by 43 writers who are not in MNIST, each
    drawn as a 64x64 PNG, dark ink on white (the 0..16 values enlarged with bicubic interpolation,
    inverted), read through ``preprocess_file`` as ``digitnet predict`` reads files;
(d) ``digits-photo``: photo-like versions of those digits, made here with a fixed seed: the digit
    larger and off-centre on a larger page of tinted grey or cream paper, blue or black pen,
    uneven light (a gradient and a vignette), a soft shadow on some, sensor noise, a little blur,
    a few specks of dust, saved as JPEG at quality 60 to 85;
(e) ``drawings`` (with ``--drawings DIR``): your own images, named ``<digit>_anything.png``
    (any format Pillow reads).

The target of the "read people's digits" issue: on (d) each model within 2 points of its score on
(c). ``--save-photos DIR`` writes the generated photos so that you can look at them.
``--time-photo`` instead times reading one 12-megapixel (4000x3000) JPEG photo of a digit:
decoding alone, and ``preprocess_file`` with decoding included (median of 11 runs).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from digitnet import __version__
from digitnet.errors import ImageError
from digitnet.nn import Network
from digitnet.preprocess import preprocess_file

PHOTO_SEED = 2024
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


# --- the images ------------------------------------------------------------------------------


def digit_ink(values: np.ndarray, side: int, margin: int = 0) -> np.ndarray:
    """An 8x8 scikit-learn digit (0..16) enlarged to ``side`` pixels, as ink in [0, 1].

    With ``margin``, that many blank 8x8 pixels are added around it first, so that strokes that
    reach the 8x8 box fade out as a pen stroke does instead of ending in a straight cut.
    """
    values = np.pad(values, margin)
    image = Image.fromarray((values * (255.0 / 16.0)).astype(np.float32))
    big = np.asarray(image.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(big / 255.0, 0.0, 1.0)


def clean_png(values: np.ndarray) -> bytes:
    """The digit as a 64x64 PNG scan: dark ink on white paper."""
    grey = np.round(255.0 * (1.0 - digit_ink(values, 64))).astype(np.uint8)
    return encode(Image.fromarray(grey), "PNG")


def photo_jpeg(values: np.ndarray, rng: np.random.Generator) -> bytes:
    """The digit written on paper and photographed with a phone: see the module docstring."""
    side = int(rng.integers(80, 161))  # the digit's size on the page
    width = int(side * rng.uniform(1.8, 3.2))
    height = int(side * rng.uniform(1.6, 2.8))
    left = int(rng.integers(side // 8, width - side - side // 8))
    top = int(rng.integers(side // 8, height - side - side // 8))
    ink = np.zeros((height, width), dtype=np.float32)
    ink[top : top + side, left : left + side] = digit_ink(values, side, margin=1)
    ink *= rng.uniform(0.75, 1.0)  # how dark the pen writes

    paper = np.array(
        [(235, 232, 225), (225, 225, 222), (240, 232, 205), (210, 212, 215), (230, 222, 200)][rng.integers(5)],
        dtype=np.float32,
    ) + rng.uniform(-10, 10, 3)
    pen = np.array(
        [(25, 45, 140), (30, 30, 38), (20, 35, 95), (45, 45, 60)][rng.integers(4)],
        dtype=np.float32,
    )
    page = paper[None, None, :] * (1 - ink[..., None]) + pen[None, None, :] * ink[..., None]

    # Uneven light: a gradient across the page in a random direction, and a vignette.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = x / width - 0.5, y / height - 0.5
    angle = rng.uniform(0, 2 * math.pi)
    light = 1.0 + rng.uniform(0.15, 0.35) * (math.cos(angle) * x + math.sin(angle) * y)
    light *= 1.0 - rng.uniform(0.1, 0.35) * (x * x + y * y) * 2
    if rng.random() < 0.35:  # a soft shadow (a hand, a phone) across one corner
        cx, cy = rng.choice([-0.5, 0.5], 2)
        reach = rng.uniform(0.45, 0.7)
        distance = np.hypot(x - cx, y - cy)
        light *= 1.0 - rng.uniform(0.2, 0.35) / (1.0 + np.exp((distance - reach) / 0.04))
    page *= light[..., None] * rng.uniform(0.75, 1.0)  # exposure

    image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 9))):  # dust and specks, away from the digit
        sx, sy = int(rng.integers(width)), int(rng.integers(height))
        if left - 4 <= sx <= left + side + 4 and top - 4 <= sy <= top + side + 4:
            continue
        r = float(rng.uniform(0.6, 2.0))
        shade = int(rng.integers(60, 140))
        draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(shade, shade, shade))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2)))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(2, 6), (height, width, 3))
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return encode(image, "JPEG", quality=int(rng.integers(60, 86)))


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def mnist_png(digit: np.ndarray) -> bytes:
    return encode(Image.fromarray(digit), "PNG")


def phone_photo(values: np.ndarray, seed: int = PHOTO_SEED) -> bytes:
    """A 12-megapixel (4000x3000) phone photo of the digit: the same kind of page, JPEG quality 90."""
    rng = np.random.default_rng(seed)
    width, height, side = 4000, 3000, 1200
    ink = Image.fromarray((digit_ink(values, side, margin=1) * 255).astype(np.uint8))
    page = Image.new("RGB", (width, height), (230, 224, 208))
    page.paste((30, 45, 140), (1500, 900), mask=ink)
    # Uneven light: darker to the right and towards the bottom (multiplied in, 8-bit throughout).
    ramp = np.linspace(1.0, 0.7, width, dtype=np.float32)[None, :] * np.linspace(1.0, 0.85, height)[:, None]
    light = Image.fromarray((ramp * 255).astype(np.uint8)).convert("RGB")
    page = Image.fromarray(
        (np.asarray(page, dtype=np.uint16) * np.asarray(light, dtype=np.uint16) // 255).astype(np.uint8)
    )
    noise = rng.integers(-4, 5, (height // 4, width // 4, 3), dtype=np.int16)
    grain = Image.fromarray((noise + 128).astype(np.uint8)).resize((width, height))
    page = Image.fromarray(
        np.clip(np.asarray(page, np.int16) + np.asarray(grain, np.int16) - 128, 0, 255).astype(np.uint8)
    )
    return encode(page, "JPEG", quality=90)


def time_phone_photo(runs: int = 11) -> dict:
    """Median and fastest time to read a 12-megapixel JPEG: decoding alone, and preprocess_file."""
    from PIL import ImageOps
    from sklearn.datasets import load_digits

    from digitnet.preprocess import WORK_SIDE

    digits = load_digits()
    data = phone_photo(digits.images[7])

    def decode() -> None:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        scale = 8
        while scale > 1 and max(width, height) // scale < WORK_SIDE // 2:
            scale //= 2
        image.draft(None, (width // scale, height // scale))
        image = ImageOps.exif_transpose(image.convert("RGB"))
        np.asarray(image, dtype=np.float32)

    timings = {}
    for name, run in (("decode only", decode), ("preprocess_file (decode included)", lambda: preprocess_file(data))):
        run()  # warm up
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        timings[name] = {"median_ms": 1000 * float(np.median(seconds)), "min_ms": 1000 * min(seconds)}
    return timings


# --- reading them --------------------------------------------------------------------------------


def read_files(paths: list[Path]) -> tuple[np.ndarray, list[int], dict[int, str], float]:
    """Every file through ``preprocess_file``: the 28x28 digits, which were read, the refusals."""
    digits, read, refused = [], [], {}
    start = time.perf_counter()
    for index, path in enumerate(paths):
        try:
            digits.append(preprocess_file(path))
            read.append(index)
        except ImageError as error:
            refused[index] = str(error)
    seconds = time.perf_counter() - start
    return np.array(digits, dtype=np.float32).reshape(-1, 28, 28), read, refused, seconds


def score(network: Network, digits: np.ndarray, read: list[int], labels: np.ndarray) -> dict:
    """Accuracy (refusals count as wrong), per-class accuracy, and the refusal rate.

    ``digits`` are the 28x28 digits of the files in ``read``; a model for another size gets them
    shrunk by area averaging, exactly as ``preprocess_for_model`` does.
    """
    predicted = np.full(len(labels), -1)
    if read:
        shape = tuple(network.input_shape)
        side = math.isqrt(math.prod(shape[-2:]) if len(shape) >= 2 else shape[0])
        x = digits
        if side != 28:
            x = np.array([np.asarray(Image.fromarray(d).resize((side, side), Image.Resampling.BOX)) for d in digits])
        channels = math.prod(shape) // (side * side)
        x = np.repeat(x[:, np.newaxis], channels, axis=1).reshape(len(x), *shape)
        predicted[read] = network.predict(x)
    correct = predicted == labels
    return {
        "n": len(labels),
        "accuracy": float(correct.mean()),
        "refused": float((predicted == -1).mean()),
        "per_class": {int(c): float(correct[labels == c].mean()) for c in np.unique(labels)},
    }


def write_all(folder: Path, stem: str, blobs: list[bytes], suffix: str) -> list[Path]:
    paths = []
    for index, blob in enumerate(blobs):
        path = folder / f"{stem}-{index:05d}{suffix}"
        path.write_bytes(blob)
        paths.append(path)
    return paths


def drawings(folder: Path) -> tuple[list[Path], np.ndarray]:
    """The image files in ``folder`` named ``<digit>_anything`` (or ``<digit>-anything``)."""
    paths, labels = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in SUFFIXES and path.name[:1].isdigit() and path.name[1:2] in "_-":
            paths.append(path)
            labels.append(int(path.name[0]))
    return paths, np.array(labels)


# --- the report ------------------------------------------------------------------------------------


def table(results: dict, models: list[str], sets: list[str]) -> str:
    """Accuracy per set and model (refusals, counted as wrong, in brackets), then per class."""
    lines = []
    head = f"{'set':<14}{'n':>7}{'ms/image':>10}" + "".join(f"{Path(m).name[:24]:>26}" for m in models)
    lines.append(head)
    lines.append("-" * len(head))
    for name in sets:
        row = results["sets"][name]
        cells = []
        for model in models:
            entry = row["models"][model]
            refused = f" ({entry['refused']:.1%} refused)" if entry["refused"] else ""
            cells.append(f"{entry['accuracy']:.1%}{refused}")
        speed = f"{row['ms_per_image']:.1f}" if "ms_per_image" in row else "-"
        lines.append(f"{name:<14}{row['n']:>7}{speed:>10}" + "".join(f"{c:>26}" for c in cells))
    lines.append("")
    lines.append("per-class accuracy, %      digit:  " + " ".join(f"{d:>3}" for d in range(10)))
    for name in sets:
        for model in models:
            per = results["sets"][name]["models"][model]["per_class"]
            cells = " ".join(f"{100 * per[d]:3.0f}" if d in per else "  -" for d in range(10))
            lines.append(f"  {name:<13} {Path(model).name[:20]:<20}  {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="model files (.npz)")
    parser.add_argument("--drawings", type=Path, help="folder of <digit>_name.png drawings")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--save-photos", type=Path, help="also save the photo-like images here")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of each set (quick runs)")
    parser.add_argument(
        "--time-photo", action="store_true", help="only time reading a 12-megapixel phone photo (median of 11 runs)"
    )
    args = parser.parse_args(argv)

    if args.time_photo:
        for name, figures in time_phone_photo().items():
            print(
                f"12-megapixel JPEG (4000x3000), {name}: median {figures['median_ms']:.0f} ms, "
                f"fastest {figures['min_ms']:.0f} ms over 11 runs"
            )
        return 0
    if not args.models:
        parser.error("give --models (or --time-photo)")

    from sklearn.datasets import load_digits

    from digitnet.data import load_dataset

    networks = {model: Network.load(model) for model in args.models}
    mnist = load_dataset("mnist")
    digits = load_digits()
    limit = args.limit
    mnist_x, mnist_y = mnist.test_images[:limit], mnist.test_labels[:limit].astype(np.int64)
    sk_x, sk_y = digits.images[:limit], digits.target[:limit].astype(np.int64)

    results: dict = {
        "versions": {"digitnet": __version__, "python": platform.python_version(), "numpy": np.__version__},
        "photo_seed": PHOTO_SEED,
        "sets": {},
    }
    sets = ["mnist", "mnist-png", "digits-clean", "digits-photo"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(PHOTO_SEED)
        files = {
            "mnist-png": (write_all(folder, "mnist", [mnist_png(d) for d in mnist_x], ".png"), mnist_y),
            "digits-clean": (write_all(folder, "clean", [clean_png(v) for v in sk_x], ".png"), sk_y),
            "digits-photo": (write_all(folder, "photo", [photo_jpeg(v, rng) for v in sk_x], ".jpg"), sk_y),
        }
        if args.save_photos:
            args.save_photos.mkdir(parents=True, exist_ok=True)
            for path, label in zip(*files["digits-photo"], strict=True):
                (args.save_photos / f"{label}_{path.name}").write_bytes(path.read_bytes())
        if args.drawings:
            files["drawings"] = drawings(args.drawings)
            if not files["drawings"][0]:
                parser.error(f"{args.drawings} holds no image named like 3_anything.png")
            sets.append("drawings")

        results["sets"]["mnist"] = {
            "n": len(mnist_y),
            "models": {
                model: score(network, mnist_x.astype(np.float32) / 255, list(range(len(mnist_y))), mnist_y)
                for model, network in networks.items()
            },
        }
        for name, (paths, labels) in files.items():
            read_digits, read, refused, seconds = read_files(paths)
            results["sets"][name] = {
                "n": len(labels),
                "ms_per_image": 1000 * seconds / max(1, len(paths)),
                "refusals": {paths[i].name: message for i, message in list(refused.items())[:20]},
                "models": {model: score(network, read_digits, read, labels) for model, network in networks.items()},
            }
            print(
                f"{name}: {len(paths)} files read in {seconds:.1f} s "
                f"({1000 * seconds / max(1, len(paths)):.1f} ms each), {len(refused)} refused",
                file=sys.stderr,
            )

    print(table(results, args.models, sets))
    print()
    refusals = results["sets"]["mnist-png"]["models"][args.models[0]]["refused"]
    print(
        f"false refusals: {refusals:.2%} of the MNIST test digits as PNG, "
        f"{results['sets']['digits-clean']['models'][args.models[0]]['refused']:.2%} of the "
        "clean scikit-learn digits"
    )
    for model in args.models:
        clean = results["sets"]["digits-clean"]["models"][model]["accuracy"]
        photo = results["sets"]["digits-photo"]["models"][model]["accuracy"]
        verdict = "met" if photo >= clean - 0.02 else "NOT met"
        print(
            f"target (photo within 2 points of clean) for {Path(model).name}: {verdict} "
            f"({100 * (photo - clean):+.1f} points)"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
