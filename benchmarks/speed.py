#!/usr/bin/env python
"""Training speed side by side with PyTorch: the CNN's epoch, its time to accuracy, and the MLP on a busy machine.

Four parts, each one command (run from the repository root; ``--quick`` gives a short check)::

    python benchmarks/speed.py cnn-epoch      --rounds 15 --out cnn_epoch.json
    python benchmarks/speed.py cnn-accuracy   --seeds 0,1,2 --out cnn_accuracy.json
    python benchmarks/speed.py mlp-contention --rounds 3 --out mlp_contention.json
    python benchmarks/speed.py mlp-step       --rounds 5 --out mlp_step.json

``cnn-epoch``
    digitnet's CNN (``digitnet train --model cnn``'s network) and PyTorch's same network train on
    the same batches, with the same batch size and threads: digitnet's threads each take a share
    of every batch, as ``digitnet train`` runs a CNN, and a third row gives them to BLAS instead
    (digitnet before issue 12's shares). Each round times a few steps of each system in turn
    (the order rotates, after a pause that lets the last system's idle threads stop spinning),
    and the figures are medians over rounds, so that a shared machine's load hits all alike. The
    same process measures the float32 GEMM peak (a 2048-square product) and reports the fraction
    of it each framework's epoch reaches, counting the multiply-adds of the convolutions and dense
    layers (forward, weight and input gradients).
``cnn-accuracy``
    Full training runs, seed by seed, alternating: ``digitnet train --model cnn`` (its recipe,
    through :func:`digitnet.experiment.run`) and PyTorch's same network with its usual MNIST recipe
    (Adam 1e-3, constant rate, no augmentation, batch 128, 8 epochs or ``--torch-epochs``). Test
    accuracy is measured after each epoch, outside the timed part; it reports training seconds to
    99.0% and 99.3%, and the seconds of an epoch of 55,000 images. With ``--digitnet-augment none``
    both train without distortions: whole epochs side by side (``--epochs 1 --torch-epochs 1``).
``mlp-contention``
    The default MLP (``digitnet train``) with ``--threads auto``, with every core (the old default)
    and with one thread, and PyTorch's 784-128-10 with every core, each in its own process, on the
    quiet machine and beside one CPU-bound competing process (``python -c "while True: pass"``).
    Rounds interleave every system and both conditions; figures are medians of training seconds.
``mlp-step``
    Where a training step of the default MLP goes: the batch gather, forward, loss, backward and
    optimiser update of ``digitnet train``'s step (its network, batch size and optimiser), each
    timed over a whole epoch of MNIST, with one thread and with ``--threads``, in interleaved
    rounds; medians over rounds of the milliseconds a step.

Prints Markdown tables; ``--out`` writes every raw number as JSON. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from cnn_vs_torch import load_images, numpy_cnn_steps, torch_cnn, torch_cnn_steps  # noqa: E402

from digitnet.augment import STRENGTHS  # noqa: E402

EPOCH_IMAGES = 55_000
#: Seconds cnn-epoch waits before each system's turn (see there).
IDLE_THREADS_PAUSE = 0.5
#: cnn-epoch's name for digitnet with its threads inside each matrix product (BLAS), as before issue 12's shares.
BLAS_THREADS = "digitnet, BLAS threads"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gemm_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large float32 matrix product with ``threads`` BLAS threads (best of ``repeats``)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    c = np.empty_like(a)
    with threadpool_limits(threads):
        np.matmul(a, b, out=c)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def cnn_step_flops(batch_size: int) -> int:
    """Multiply-adds x 2 of one training step of the default CNN: every product of the forward
    pass, and for backward the weight gradients plus the input gradients (none for the first layer)."""
    return sum(2 * m * k * n for _, m, k, n, _, _ in cnn_gemm_shapes(batch_size))


def cnn_gemm_shapes(batch_size: int) -> list[tuple[str, int, int, int, bool, bool]]:
    """``(name, m, k, n, a_transposed, b_transposed)`` of every matrix product in one training step
    of the default CNN, as digitnet's layers call them (im2col columns for the convolutions; a
    transposed operand is the ``.T`` view the layer passes)."""
    from digitnet.nn.architectures import build_cnn
    from digitnet.nn.conv import Conv2D
    from digitnet.nn.layers import Dense

    network = build_cnn(rng=np.random.default_rng(0))
    shape: tuple[int, ...] = network.input_shape
    shapes, first = [], True
    for index, layer in enumerate(network.layers):
        out = layer.output_shape(shape)
        if isinstance(layer, Conv2D):
            f = layer.out_channels
            k = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
            n = out[1] * out[2] * batch_size
            shapes += [(f"{index} conv forward", f, k, n, False, False)]  # W @ cols
            shapes += [(f"{index} conv weight grad", f, n, k, False, True)]  # g @ cols.T
            shapes += [] if first else [(f"{index} conv input grad", k, f, n, True, False)]  # W.T @ g
        elif isinstance(layer, Dense):
            i, o = layer.in_features, layer.out_features
            shapes += [(f"{index} dense forward", batch_size, i, o, False, False)]  # x @ W
            shapes += [(f"{index} dense weight grad", i, batch_size, o, True, False)]  # x.T @ g
            shapes += [] if first else [(f"{index} dense input grad", batch_size, o, i, False, True)]  # g @ W.T
        first = first and not isinstance(layer, (Conv2D, Dense))
        shape = out
    return shapes


def gemm_ceiling(batch_size: int, threads: int, repeats: int = 15) -> dict[str, Any]:
    """The network's own matrix products, timed alone (median of ``repeats``): the GFLOP/s this BLAS
    reaches on exactly these shapes and operand layouts, which bounds any im2col network's fraction
    of the peak."""
    from threadpoolctl import threadpool_limits

    from digitnet.nn.conv import weight_gradient

    rng = np.random.default_rng(0)

    def operand(rows: int, cols: int, transposed: bool) -> np.ndarray:
        if transposed:
            return rng.standard_normal((cols, rows), dtype=np.float32).T
        return rng.standard_normal((rows, cols), dtype=np.float32)

    products, flops, seconds = [], 0, 0.0
    with threadpool_limits(threads):
        for name, m, k, n, a_transposed, b_transposed in cnn_gemm_shapes(batch_size):
            a, b = operand(m, k, a_transposed), operand(k, n, b_transposed)
            out = np.empty((m, n), dtype=np.float32)
            # A convolution's weight gradient runs as digitnet computes it (slabs, operand order).
            product = partial(weight_gradient, a, b.T) if "conv weight grad" in name else partial(np.matmul, a, b)
            product(out=out)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                product(out=out)
                times.append(time.perf_counter() - started)
            took = statistics.median(times)
            gflops = 2 * m * k * n / took / 1e9
            products.append({"product": name, "m": m, "k": k, "n": n, "seconds": took, "gflops": gflops})
            flops, seconds = flops + 2 * m * k * n, seconds + took
    return {"products": products, "step_seconds": seconds, "gflops": flops / seconds / 1e9}


# -- cnn-epoch ------------------------------------------------------------------------------------


def cnn_epoch(args) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    x, labels = load_images(10_000, rng)
    steps = args.steps_per_round
    total = args.rounds * steps
    with threadpool_limits(args.threads):
        peak = gemm_peak(args.threads)
        pending = {"digitnet": numpy_cnn_steps(x, labels, args.batch_size, total, warmup=3, workers=args.threads)}
        if args.threads > 1:  # the way digitnet used its threads before: inside each product
            pending[BLAS_THREADS] = numpy_cnn_steps(x, labels, args.batch_size, total, warmup=3)
        pending["torch"] = torch_cnn_steps(x, labels, args.batch_size, total, warmup=3, threads=args.threads)
        results: dict[str, Any] = {}
        for round_ in range(args.rounds):  # round 0 also runs the warm-up steps
            order = list(pending)[round_ % len(pending) :] + list(pending)[: round_ % len(pending)]
            for name in order:
                # Idle threads of the system before keep spinning for a while (OpenBLAS's for
                # about 0.1 s after a product) and would take a core from this one's first steps.
                time.sleep(IDLE_THREADS_PAUSE)
                for _ in range(steps + (3 if round_ == 0 else 0)):
                    try:
                        next(pending[name])
                    except StopIteration as done:
                        results[name] = done.value
                        break
        for name, stepper in pending.items():
            if name not in results:
                try:
                    while True:
                        next(stepper)
                except StopIteration as done:
                    results[name] = done.value
        peak_end = gemm_peak(args.threads)
    ceiling = gemm_ceiling(args.batch_size, args.threads)
    batches = int(np.ceil(EPOCH_IMAGES / args.batch_size))
    flops = cnn_step_flops(args.batch_size) * batches
    peak_gflops = max(peak, peak_end)
    summary = {}
    for name, result in results.items():
        epoch = result["seconds_per_batch"] * batches
        summary[name] = {
            "epoch_seconds": epoch,
            "epoch_cpu_seconds": result["cpu_seconds_per_batch"] * batches,
            "gflops": flops / epoch / 1e9,
            "fraction_of_peak": flops / epoch / 1e9 / peak_gflops,
        }
    return {
        "threads": args.threads,
        "batch_size": args.batch_size,
        "gemm_peak_gflops": peak_gflops,
        "gemm_peak_gflops_start_end": [peak, peak_end],
        "epoch_flops": flops,
        "summary": summary,
        "per_layer_seconds_per_batch": results[BLAS_THREADS if args.threads > 1 else "digitnet"][
            "per_layer_seconds_per_batch"
        ],
        "gemm_ceiling": {**ceiling, "epoch_seconds": ceiling["step_seconds"] * batches},
    }


def print_cnn_epoch(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(
        f"\n### CNN epoch of {EPOCH_IMAGES:,} images, batch {result['batch_size']}, {result['threads']} threads "
        f"(GEMM peak {result['gemm_peak_gflops']:.0f} GFLOP/s, {result['epoch_flops'] / 1e12:.2f} TFLOP an epoch)\n"
    )
    print("| framework | s / epoch | ratio | CPU s / epoch | ratio | GFLOP/s | of GEMM peak |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in s.items():
        print(
            f"| {name} | {row['epoch_seconds']:.1f} | {row['epoch_seconds'] / s['torch']['epoch_seconds']:.2f}x | "
            f"{row['epoch_cpu_seconds']:.1f} | {row['epoch_cpu_seconds'] / s['torch']['epoch_cpu_seconds']:.2f}x | "
            f"{row['gflops']:.1f} | {row['fraction_of_peak']:.0%} |"
        )
    ceiling = result["gemm_ceiling"]
    print(
        f"\nThe same matrix products alone (no im2col, pooling or anything else): "
        f"{ceiling['epoch_seconds']:.1f} s an epoch, {ceiling['gflops']:.1f} GFLOP/s, "
        f"{ceiling['gflops'] / result['gemm_peak_gflops']:.0%} of the peak.\n"
    )
    print("| product | m x k x n | GFLOP/s |")
    print("|---|---|---:|")
    for row in ceiling["products"]:
        print(f"| {row['product']} | {row['m']} x {row['k']} x {row['n']} | {row['gflops']:.1f} |")


# -- cnn-accuracy ---------------------------------------------------------------------------------


def digitnet_cnn_run(seed: int, threads: int | str, epochs: int | None, augment: str | None = None) -> dict[str, Any]:
    """``digitnet train --model cnn`` through experiment.run, with test accuracy after each epoch."""
    from digitnet.data import load_dataset
    from digitnet.experiment import ExperimentConfig, run
    from digitnet.train import Reporter, accuracy_of

    data = load_dataset("mnist")
    seconds: list[float] = []
    accuracies: list[float] = []
    state: dict[str, Any] = {}

    class TestEachEpoch(Reporter):
        def epoch_done(self, record, epochs):  # outside the timed part of the epoch
            network = state["network"]
            x_test = network.prepare(data.test_images)
            seconds.append(record.seconds)
            accuracies.append(accuracy_of(network, x_test, data.test_labels.astype(np.int64)))

    import digitnet.experiment as experiment

    original = experiment.build_for

    def build_and_keep(*a, **k):
        state["network"] = original(*a, **k)
        return state["network"]

    experiment.build_for = build_and_keep
    try:
        recipe = {"epochs": epochs} if epochs else {}
        config = ExperimentConfig(model="cnn", seed=seed, threads=threads, recipe=recipe, augment=augment)
        result = run(config, data, reporter=TestEachEpoch())
    finally:
        experiment.build_for = original
    images = result.network.metadata["training"]["train_size"]
    return {"epoch_seconds": seconds, "test_accuracy": accuracies, "threads": result.threads_used, "images": images}


def torch_cnn_run(seed: int, threads: int, epochs: int, batch_size: int = 128) -> dict[str, Any]:
    """PyTorch's same CNN with its usual recipe: Adam 1e-3, constant rate, no augmentation."""
    import torch
    from torch import nn

    from digitnet.data import load_dataset
    from digitnet.train import pixel_statistics

    data = load_dataset("mnist")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    mean, std = pixel_statistics(data.train_images)

    def prepare(images):
        return torch.from_numpy(((images / 255 - mean) / std).astype(np.float32).reshape(-1, 1, 28, 28))

    x, y = prepare(data.train_images), torch.from_numpy(data.train_labels.astype(np.int64))
    x_test, y_test = prepare(data.test_images), torch.from_numpy(data.test_labels.astype(np.int64))
    model = torch_cnn("cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    seconds, accuracies = [], []
    for _ in range(epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
        model.eval()
        with torch.inference_mode():
            accuracies.append(float((model(x_test).argmax(dim=1) == y_test).float().mean()))
    return {"epoch_seconds": seconds, "test_accuracy": accuracies, "threads": threads, "images": len(x)}


def time_to(run: dict[str, Any], threshold: float) -> float | None:
    """Training seconds until the first epoch that ends at ``threshold`` test accuracy or above."""
    total = 0.0
    for seconds, accuracy in zip(run["epoch_seconds"], run["test_accuracy"]):
        total += seconds
        if accuracy >= threshold:
            return total
    return None


def cnn_accuracy(args) -> dict[str, Any]:
    from digitnet.recipes import default_config

    epochs = args.epochs or default_config("cnn", "light").epochs
    # PyTorch's usual recipe (constant Adam 1e-3) needs more epochs to reach 99.3%, if it does
    torch_epochs = args.torch_epochs or max(epochs, 8)
    runs: dict[str, list[dict[str, Any]]] = {"digitnet": [], "torch": []}
    for i, seed in enumerate(args.seeds):
        order = ["digitnet", "torch"] if i % 2 == 0 else ["torch", "digitnet"]
        for name in order:
            if name == "digitnet":
                result = digitnet_cnn_run(seed, args.digitnet_threads, args.epochs, args.digitnet_augment)
            else:
                result = torch_cnn_run(seed, args.threads, torch_epochs)
            result["seed"] = seed
            runs[name].append(result)
            print(
                f"seed {seed} {name}: {sum(result['epoch_seconds']):.1f} s, test {result['test_accuracy'][-1]:.2%}",
                file=sys.stderr,
            )
    return {"epochs": epochs, "torch_epochs": torch_epochs, "digitnet_augment": args.digitnet_augment, "runs": runs}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def print_cnn_accuracy(result: dict[str, Any]) -> None:
    print(
        f"\n### CNN to accuracy (median over seeds; test accuracy after each epoch; {result['epochs']} epochs "
        f"for digitnet's recipe, {result['torch_epochs']} for PyTorch's)\n"
    )
    print("| framework | final test (each seed) | training s | s an epoch of 55,000 images | s to 99.0% | s to 99.3% |")
    print("|---|---|---:|---:|---:|---:|")
    rows = {}
    for name, runs in result["runs"].items():
        finals = [r["test_accuracy"][-1] for r in runs]
        rows[name] = {
            "final": median(finals),
            "seconds": median([sum(r["epoch_seconds"]) for r in runs]),
            # digitnet trains on 55,000 images (5,000 held out for validation), PyTorch's loop on 60,000
            "epoch_55k": median([s * EPOCH_IMAGES / r["images"] for r in runs for s in r["epoch_seconds"]]),
            "to_990": median([time_to(r, 0.99) for r in runs]),
            "to_993": median([time_to(r, 0.993) for r in runs]),
        }
        fmt = lambda v: "not reached" if v is None else f"{v:.1f}"  # noqa: E731
        each = ", ".join(f"{a:.2%}" for a in finals)
        print(
            f"| {name} | {rows[name]['final']:.2%} ({each}) | {rows[name]['seconds']:.1f} | "
            f"{rows[name]['epoch_55k']:.2f} | {fmt(rows[name]['to_990'])} | {fmt(rows[name]['to_993'])} |"
        )
    print(f"\nAn epoch: digitnet / PyTorch = {rows['digitnet']['epoch_55k'] / rows['torch']['epoch_55k']:.2f}x")
    if rows["digitnet"]["to_990"] and rows["torch"]["to_990"]:
        print(f"\nTime to 99.0%: digitnet / PyTorch = {rows['digitnet']['to_990'] / rows['torch']['to_990']:.2f}x")
    result["summary"] = rows


# -- mlp-contention -------------------------------------------------------------------------------


#: system -> command line (a list) that trains the default 784-128-10 MLP and prints JSON.
def mlp_systems(threads: int, epochs: int | None) -> dict[str, list[str]]:
    digitnet = [sys.executable, "-m", "digitnet", "train", "--json"]
    if epochs:
        digitnet += ["--epochs", str(epochs)]
    torch = [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--worker", "torch-tensors"]
    torch += ["--threads", str(threads), "--epochs", str(epochs or 8)]
    return {
        "digitnet --threads auto": [*digitnet, "--threads", "auto"],
        f"digitnet --threads {threads} (old default)": [*digitnet, "--threads", str(threads)],
        "digitnet --threads 1": [*digitnet, "--threads", "1"],
        f"PyTorch, {threads} threads": torch,
        "PyTorch, 1 thread": [*torch[:-4], "--threads", "1", *torch[-2:]],
    }


def run_system(command: list[str], out: Path) -> dict[str, Any]:
    """Train in a fresh process; its training seconds and test accuracy."""
    if "digitnet" in command:
        command = [*command, "--out", str(out)]
    process = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    for line in reversed(process.stdout.splitlines()):
        line = line.removeprefix("@@RESULT@@ ").strip()
        if line.startswith("{"):
            result = json.loads(line)
            if "epoch_seconds" in result:  # compare.py's worker
                return {"train_seconds": sum(result["epoch_seconds"]), "test_accuracy": result["test_accuracy"][-1]}
            return {
                "train_seconds": result["train_seconds"],
                "test_accuracy": result["test_accuracy"],
                "threads": result.get("threads"),
            }
    return {"error": (process.stderr.strip().splitlines() or ["no output"])[-1]}


def mlp_contention(args) -> dict[str, Any]:
    systems = mlp_systems(args.threads, args.epochs)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {c: {s: [] for s in systems} for c in ("quiet", "busy")}
    competitor = [sys.executable, "-c", "while True: pass"]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "mlp.npz"
        for round_ in range(args.rounds):
            for condition in ("quiet", "busy") if round_ % 2 == 0 else ("busy", "quiet"):
                spinner = subprocess.Popen(competitor) if condition == "busy" else None
                try:
                    names = list(systems) if round_ % 2 == 0 else list(reversed(systems))
                    for name in names:
                        result = run_system(systems[name], out)
                        runs[condition][name].append(result)
                        print(f"round {round_ + 1} {condition:5s} {name}: {result}", file=sys.stderr)
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
    return {"threads": args.threads, "rounds": args.rounds, "epochs": args.epochs, "runs": runs}


def print_mlp_contention(result: dict[str, Any]) -> None:
    print(
        f"\n### Default MLP: training seconds, quiet and beside one CPU-bound process "
        f"(median of {result['rounds']} interleaved rounds)\n"
    )
    print("| system | quiet s | busy s | busy / quiet | test accuracy (quiet) |")
    print("|---|---:|---:|---:|---:|")
    summary = {}
    for name in result["runs"]["quiet"]:
        quiet = median([r.get("train_seconds") for r in result["runs"]["quiet"][name]])
        busy = median([r.get("train_seconds") for r in result["runs"]["busy"][name]])
        accuracy = median([r.get("test_accuracy") for r in result["runs"]["quiet"][name]])
        summary[name] = {"quiet_seconds": quiet, "busy_seconds": busy, "test_accuracy": accuracy}
        if quiet is None or busy is None:
            print(f"| {name} | failed | | | |")
            continue
        print(f"| {name} | {quiet:.2f} | {busy:.2f} | {busy / quiet:.2f}x | {accuracy:.2%} |")
    result["summary"] = summary


# -- mlp-step -------------------------------------------------------------------------------------

STEP_PARTS = ("gather", "forward", "loss", "backward", "update")


def mlp_step(args) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from digitnet.data import load_dataset
    from digitnet.train import pixel_statistics

    data = load_dataset("mnist")
    statistics_ = pixel_statistics(data.train_images)
    thread_counts = sorted({1, args.threads})
    runs: dict[str, list[dict[str, float]]] = {str(threads): [] for threads in thread_counts}
    for round_ in range(args.rounds):
        for threads in thread_counts if round_ % 2 == 0 else thread_counts[::-1]:
            with threadpool_limits(threads):
                runs[str(threads)].append(mlp_step_epoch(data, statistics_, seed=round_))
            print(f"round {round_ + 1} {threads} thread(s): {runs[str(threads)][-1]}", file=sys.stderr)
    return {"rounds": args.rounds, "runs": runs}


def mlp_step_epoch(data, pixel_stats: tuple[float, float], seed: int) -> dict[str, float]:
    """Two epochs of the default MLP's steps; of the second (the first warms caches and memory up),
    the milliseconds a step for each part and the epoch's seconds."""
    from digitnet.nn import SoftmaxCrossEntropy, build_mlp
    from digitnet.optim import make_optimizer
    from digitnet.recipes import default_config

    config = default_config()
    rng = np.random.default_rng(seed)
    network = build_mlp(rng=rng, mean=pixel_stats[0], std=pixel_stats[1])
    optimiser = make_optimizer(config.optimizer, [(p, g) for _, p, g in network.parameters()], config.lr)
    loss = SoftmaxCrossEntropy(config.label_smoothing)
    x, labels = network.prepare(data.train_images), data.train_labels.astype(np.int64)
    batch = np.empty((config.batch_size, *x.shape[1:]), dtype=x.dtype)
    for _ in range(2):
        order = rng.permutation(len(x))
        spent = dict.fromkeys(STEP_PARTS, 0.0)
        started = time.perf_counter()
        for first in range(0, len(x), config.batch_size):
            index = order[first : first + config.batch_size]
            times = [time.perf_counter()]
            x_batch = np.take(x, index, axis=0, out=batch[: len(index)], mode="clip")
            times.append(time.perf_counter())
            logits = network.forward(x_batch, training=True)
            times.append(time.perf_counter())
            loss.forward(logits, labels[index])
            grad_logits = loss.backward()
            times.append(time.perf_counter())
            network.backward(grad_logits)
            times.append(time.perf_counter())
            optimiser.step()
            times.append(time.perf_counter())
            for part, before, after in zip(STEP_PARTS, times, times[1:]):
                spent[part] += after - before
        seconds = time.perf_counter() - started
    steps = math.ceil(len(x) / config.batch_size)
    return {**{part: 1e3 * total / steps for part, total in spent.items()}, "epoch_s": seconds}


def print_mlp_step(result: dict[str, Any]) -> None:
    print(f"\n### The default MLP's training step, ms (median of {result['rounds']} interleaved rounds)\n")
    print("| threads | " + " | ".join(STEP_PARTS) + " | step | epoch s |")
    print("|---:|" + "---:|" * (len(STEP_PARTS) + 2))
    summary = {}
    for threads, epochs in result["runs"].items():
        row = {key: median([epoch[key] for epoch in epochs]) for key in (*STEP_PARTS, "epoch_s")}
        row["step"] = sum(row[part] for part in STEP_PARTS)
        summary[threads] = row
        cells = " | ".join(f"{row[key]:.3f}" for key in (*STEP_PARTS, "step"))
        print(f"| {threads} | {cells} | {row['epoch_s']:.3f} |")
    result["summary"] = summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", choices=["cnn-epoch", "cnn-accuracy", "mlp-contention", "mlp-step"])
    parser.add_argument("--threads", type=int, default=usable_cores(), help="threads for PyTorch and BLAS [cores]")
    parser.add_argument("--digitnet-threads", default="auto", help="cnn-accuracy: digitnet's --threads [auto]")
    parser.add_argument(
        "--digitnet-augment",
        choices=["none", *STRENGTHS],
        default=None,
        help="cnn-accuracy: digitnet's --augment [its recipe's] (none: whole epochs as PyTorch's)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="cnn-epoch [128]")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds [cnn-epoch 15, mlp-step 5, mlp-contention 3]"
    )
    parser.add_argument("--steps-per-round", type=int, default=4, help="cnn-epoch: steps per turn [4]")
    parser.add_argument("--seeds", default="0,1,2", help="cnn-accuracy: comma-separated seeds [0,1,2]")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs (a short check)")
    parser.add_argument("--torch-epochs", type=int, default=None, help="cnn-accuracy: PyTorch's epochs [8]")
    parser.add_argument("--quick", action="store_true", help="a short check: few rounds, 1-2 epochs, one seed")
    parser.add_argument("--out", type=Path, default=None, help="write every raw number as JSON here")
    args = parser.parse_args(argv)
    args.seeds = [int(seed) for seed in args.seeds.split(",") if seed]
    if args.quick:
        args.rounds = args.rounds or (4 if args.part == "cnn-epoch" else 1)
        args.epochs = args.epochs or (1 if args.part == "cnn-accuracy" else 2)
        args.torch_epochs = args.torch_epochs or args.epochs
        args.seeds = args.seeds[:1]
    args.rounds = args.rounds or {"cnn-epoch": 15, "mlp-step": 5}.get(args.part, 3)
    started = time.perf_counter()
    load = os.getloadavg()
    parts = {
        "cnn-epoch": (cnn_epoch, print_cnn_epoch),
        "cnn-accuracy": (cnn_accuracy, print_cnn_accuracy),
        "mlp-contention": (mlp_contention, print_mlp_contention),
        "mlp-step": (mlp_step, print_mlp_step),
    }
    measure, show = parts[args.part]
    result = measure(args)
    show(result)
    result["facts"] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.processor() or platform.machine(),
        "cores_usable": usable_cores(),
        "numpy": np.__version__,
        "load_average_start": load,
        "load_average_end": os.getloadavg(),
        "seconds": time.perf_counter() - started,
    }
    print(f"\nload average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
