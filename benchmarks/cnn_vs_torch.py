"""Seconds per epoch of digitnet's NumPy CNN against PyTorch on the CPU, and the cost of augmentation.

Both frameworks train the same architecture (digitnet's ``cnn``: unpadded conv5x5 20 > pool > batch
norm > ReLU > conv5x5 40 > pool > batch norm > ReLU > 128 > dropout > 10; ``--model cnn-padded`` for
the first CNN: conv5x5 16 > pool > ReLU > conv5x5 32 > pool > ReLU > 128 > dropout > 10) with
Adam, the same batch size and the same number of threads.
Each is timed over ``--batches`` training steps and scaled to one epoch of 55,000 images; the two
alternate step by step, so that both see the same load from other processes. The NumPy run also
records where its time goes, layer by layer. Augmentation is timed per epoch for each
strength, next to one epoch of the seed MLP (its yardstick: the issue asks for at most about half).

Run from the repository root::

    python benchmarks/cnn_vs_torch.py --threads 2 --out cnn_vs_torch.json

Prints Markdown tables and writes the numbers as JSON to ``--out``. Wall-clock and CPU seconds are
both reported: on a shared machine the CPU-time ratio is the steadier of the two; in any case compare
ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from digitnet.augment import STRENGTHS, Augmenter, Strength
from digitnet.nn import SoftmaxCrossEntropy, build_mlp
from digitnet.nn.architectures import build_network
from digitnet.optim import Adam
from digitnet.parallel import DataParallel
from digitnet.train import pixel_statistics

EPOCH_IMAGES = 55_000


def load_images(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Normalised MNIST training images (random noise if the dataset cannot be loaded)."""
    from digitnet.errors import DigitnetError

    try:
        from digitnet.data import load_dataset

        data = load_dataset("mnist")
        images, labels = data.train_images[:count], data.train_labels[:count].astype(np.int64)
        mean, std = pixel_statistics(data.train_images)
        x = ((images / 255 - mean) / std).astype(np.float32).reshape(-1, 1, 28, 28)
        return x, labels
    except (ImportError, OSError, DigitnetError) as error:  # speed does not depend on pixel values
        print(f"(MNIST not available: {error}; timing on random images)")
        return rng.standard_normal((count, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, count)


def numpy_cnn_steps(x, labels, batch_size: int, batches: int, warmup: int, model: str = "cnn", workers: int = 1):
    """Generator: one NumPy CNN training step per ``next``; finally returns the timings.

    Records the wall-clock and CPU seconds of each step. With one worker it also records the
    forward and backward time per layer; with more, each step runs as ``digitnet train`` runs it
    then (:class:`digitnet.parallel.DataParallel`: each thread a share of the batch, one BLAS
    thread each) and only the whole forward-and-backward is timed.
    """
    rng = np.random.default_rng(0)
    network = build_network(model, input_shape=(1, 28, 28), num_classes=10, rng=rng)
    optimizer = Adam([(p, g) for _, p, g in network.parameters()], lr=1e-3)  # as digitnet.train does
    if workers > 1:
        parallel = DataParallel(network, workers)
        parallel.new_epoch(np.random.default_rng(1))  # not rng: the batches stay those of the others

        def forward_backward(xb, yb) -> dict[str, float]:
            return {"forward and backward, shared": _timed(parallel.forward_backward, xb, yb)}

    else:
        forward_backward = partial(_forward_backward_per_layer, network, SoftmaxCrossEntropy())
    per_layer: dict[str, float] = defaultdict(float)
    step_seconds, step_cpu_seconds = [], []
    try:
        for step in range(warmup + batches):
            index = rng.integers(0, len(x), batch_size)
            xb, yb = x[index], labels[index]
            with threadpool_limits(1 if workers > 1 else None, user_api="blas"):
                started, cpu_started = time.perf_counter(), time.process_time()
                timings = forward_backward(xb, yb)
                t = time.perf_counter()
                optimizer.step()
                timings["adam step"] = time.perf_counter() - t
                if step >= warmup:
                    step_seconds.append(time.perf_counter() - started)
                    step_cpu_seconds.append(time.process_time() - cpu_started)
                    for key, value in timings.items():
                        per_layer[key] += value / batches
            yield
    finally:
        if workers > 1:
            parallel.close()
    return {
        "seconds_per_batch": float(np.median(step_seconds)),
        "cpu_seconds_per_batch": float(np.median(step_cpu_seconds)),
        "per_layer_seconds_per_batch": dict(per_layer),
    }


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def _forward_backward_per_layer(network, loss, xb, yb) -> dict[str, float]:
    """One forward and backward pass on the calling thread, timed layer by layer."""
    steps = network.training_steps()  # the layers as training runs them (the first stage fused)
    names = [f"{i}:{type(layer).__name__}" for i, layer in enumerate(steps)]
    timings = {}
    h = xb
    for name, layer in zip(names, steps):
        t = time.perf_counter()
        h = layer.forward(h, training=True)
        timings[f"forward {name}"] = time.perf_counter() - t
    t = time.perf_counter()
    loss.forward(h, yb)
    grad = loss.backward()
    timings["loss"] = time.perf_counter() - t
    for name, layer in zip(reversed(names), reversed(steps)):
        t = time.perf_counter()
        grad = layer.backward(grad)
        timings[f"backward {name}"] = time.perf_counter() - t
        if grad is None:
            break
    return timings


def torch_cnn(model: str = "cnn"):
    """PyTorch's copy of digitnet's ``cnn`` or ``cnn-padded`` (same layers, same order)."""
    from torch import nn

    if model == "cnn-padded":
        return nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(16, 32, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10),
        )  # fmt: skip
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.BatchNorm2d(20), nn.ReLU(),
        nn.Conv2d(20, 40, 5), nn.MaxPool2d(2), nn.BatchNorm2d(40), nn.ReLU(),
        nn.Flatten(), nn.Linear(40 * 4 * 4, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10),
    )  # fmt: skip


def torch_cnn_steps(x, labels, batch_size: int, batches: int, warmup: int, threads: int, model: str = "cnn"):
    """Generator: one PyTorch training step of the same CNN per ``next``; finally returns the timings."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn = torch.nn
    model = torch_cnn(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(labels)
    rng = np.random.default_rng(0)
    step_seconds, step_cpu_seconds = [], []
    for step in range(warmup + batches):
        index = torch.from_numpy(rng.integers(0, len(x), batch_size))
        started, cpu_started = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x_t[index]), y_t[index])
        loss.backward()
        optimizer.step()
        if step >= warmup:
            step_seconds.append(time.perf_counter() - started)
            step_cpu_seconds.append(time.process_time() - cpu_started)
        yield
    return {
        "seconds_per_batch": float(np.median(step_seconds)),
        "cpu_seconds_per_batch": float(np.median(step_cpu_seconds)),
        "version": torch.__version__,
    }


def run_alternating(*steppers) -> list:
    """Advance the generators one step each in turn, so that both frameworks see the same machine
    load (other processes come and go); return their final values."""
    results: list = [None] * len(steppers)
    active = dict(enumerate(steppers))
    while active:
        for i, stepper in list(active.items()):
            try:
                next(stepper)
            except StopIteration as done:
                results[i] = done.value
                del active[i]
    return results


def augmentation_variants() -> dict[str, Strength]:
    """Every named strength, plus light with bilinear sampling to show what nearest sampling saves."""
    return {**STRENGTHS, "light-bilinear": replace(STRENGTHS["light"], interpolation="bilinear")}


def time_augmentation(x, labels, batch_size: int) -> dict:
    """Seconds per epoch of each augmentation strength, and of one epoch of the seed MLP for scale."""
    rng = np.random.default_rng(0)
    repeats = int(np.ceil(EPOCH_IMAGES / len(x)))
    order = np.concatenate([rng.permutation(len(x)) for _ in range(repeats)])[:EPOCH_IMAGES]
    batches = [order[i : i + batch_size] for i in range(0, EPOCH_IMAGES, batch_size)]

    network = build_mlp((128,), rng=rng)
    loss = SoftmaxCrossEntropy()
    optimizer = Adam([(p, g) for _, p, g in network.parameters()], lr=1e-3)  # as digitnet.train does
    started = time.perf_counter()
    for index in batches:
        loss.forward(network.forward(x[index], training=True), labels[index])
        network.backward(loss.backward())
        optimizer.step()
    result = {"mlp_epoch_seconds": time.perf_counter() - started}

    started = time.perf_counter()
    for index in batches:
        x[index]
    gather = time.perf_counter() - started
    for name, strength in augmentation_variants().items():
        augment = Augmenter(strength, background=float(x.min()))  # a blank pixel, normalised
        started = time.perf_counter()
        for index in batches:
            augment(x[index], rng)
        result[f"augment_{name}_epoch_seconds"] = time.perf_counter() - started - gather
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / PyTorch threads")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", choices=["cnn", "cnn-padded"], default="cnn", help="which CNN")
    parser.add_argument("--batches", type=int, default=30, help="timed training steps per framework")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x, labels = load_images(10_000, rng)
    batches_per_epoch = int(np.ceil(EPOCH_IMAGES / args.batch_size))
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    with threadpool_limits(args.threads):
        steppers = [numpy_cnn_steps(x, labels, args.batch_size, args.batches, args.warmup, args.model, args.threads)]
        if have_torch:
            steppers.append(
                torch_cnn_steps(x, labels, args.batch_size, args.batches, args.warmup, args.threads, args.model)
            )
        numpy_cnn, torch_cnn = (run_alternating(*steppers) + [None])[:2]
        augmentation = time_augmentation(x, labels, args.batch_size)

    numpy_epoch = numpy_cnn["seconds_per_batch"] * batches_per_epoch
    torch_epoch = torch_cnn["seconds_per_batch"] * batches_per_epoch if torch_cnn else None
    numpy_cpu = numpy_cnn["cpu_seconds_per_batch"] * batches_per_epoch
    torch_cpu = torch_cnn["cpu_seconds_per_batch"] * batches_per_epoch if torch_cnn else None
    results = {
        "threads": args.threads,
        "batch_size": args.batch_size,
        "timed_batches": args.batches,
        "machine": platform.processor() or platform.machine(),
        "numpy_version": np.__version__,
        "numpy_cnn_epoch_seconds": numpy_epoch,
        "torch_cnn_epoch_seconds": torch_epoch,
        "numpy_over_torch": numpy_epoch / torch_epoch if torch_epoch else None,
        "numpy_cnn_epoch_cpu_seconds": numpy_cpu,
        "torch_cnn_epoch_cpu_seconds": torch_cpu,
        "numpy_over_torch_cpu": numpy_cpu / torch_cpu if torch_cpu else None,
        "numpy_cnn": numpy_cnn,
        "torch_cnn": torch_cnn,
        "augmentation": augmentation,
    }

    print(
        f"\n### CNN training, seconds per epoch of {EPOCH_IMAGES:,} images "
        f"(batch {args.batch_size}, {args.threads} threads)\n"
    )
    print("| framework | wall s / epoch | ratio | CPU s / epoch | ratio |")
    print("|---|---:|---:|---:|---:|")
    if torch_epoch:
        print(
            f"| digitnet (NumPy) | {numpy_epoch:.1f} | {numpy_epoch / torch_epoch:.2f}x | "
            f"{numpy_cpu:.1f} | {numpy_cpu / torch_cpu:.2f}x |"
        )
        print(f"| PyTorch {torch_cnn['version']} | {torch_epoch:.1f} | 1.00x | {torch_cpu:.1f} | 1.00x |")
    else:
        print(f"| digitnet (NumPy) | {numpy_epoch:.1f} | - | {numpy_cpu:.1f} | - |")
        print("| PyTorch | not installed | | | |")

    print("\n### Where the NumPy CNN's time goes (seconds per epoch)\n")
    print("| step | s / epoch | share |")
    print("|---|---:|---:|")
    per_layer = numpy_cnn["per_layer_seconds_per_batch"]
    total = sum(per_layer.values())
    for key, value in sorted(per_layer.items(), key=lambda item: -item[1]):
        if value / total >= 0.005:
            print(f"| {key} | {value * batches_per_epoch:.2f} | {value / total:.0%} |")

    print(
        f"\n### Augmentation, seconds per epoch of {EPOCH_IMAGES:,} images (1 batch of {args.batch_size} at a time)\n"
    )
    print("| strength | sampling | s / epoch | vs one MLP epoch |")
    print("|---|---|---:|---:|")
    mlp_epoch = augmentation["mlp_epoch_seconds"]
    print(f"| (MLP 784-128-10 training epoch) | | {mlp_epoch:.2f} | 1.00x |")
    for name, strength in augmentation_variants().items():
        seconds = augmentation[f"augment_{name}_epoch_seconds"]
        print(f"| {name} | {strength.interpolation} | {seconds:.2f} | {seconds / mlp_epoch:.2f}x |")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"\nWrote {args.out}")


if __name__ == "__main__":
    main()
