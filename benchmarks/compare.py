#!/usr/bin/env python
"""digitnet against PyTorch, scikit-learn and the notebook's textbook NumPy, side by side on the CPU.

One command, one machine, one run::

    python benchmarks/compare.py                 # full: 3 rounds (seeds), the recipe's epochs
    python benchmarks/compare.py --quick         # 2 rounds of 2 epochs, under two minutes
    python benchmarks/compare.py --out results.json --markdown table.md

Every system trains the same 784-128-10 network on the same 60,000 MNIST images (loaded with
``digitnet.data.load_dataset``, normalised the same way), with the same batch size, number of epochs,
thread count and dtype (float32; the notebook baseline is float64, as the original was). Each system
runs in its own subprocess, so its peak resident memory (``VmHWM``) is its own, and the systems take
turns (A B C D ... A B C D ...) so that drift of a shared machine hits them all alike; every figure is
a median over those rounds (the round number is the seed).

Per system it reports seconds per epoch (median, min, max over all epochs of all rounds), training
time to 97.5% and 98.0% test accuracy (test accuracy is measured after every epoch, outside the timed
part), final test accuracy, the time to classify the 10,000 test images, peak memory, and ratios
against digitnet. In the same run it measures the machine's float32 GEMM peak, the GEMMs of a digitnet
epoch timed alone, and derives digitnet's distance to that physical limit. Finally it checks the
targets of the performance issue and prints them as a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.975, 0.98)
HIDDEN = 128
RESULT_MARK = "@@RESULT@@ "
#: The clock every timing uses; ``--clock cpu`` switches it to this process's CPU time, which a
#: single-threaded run on a busy shared machine measures far more steadily than the wall clock.
clock = time.perf_counter

# name -> (label, recipe as shown in the table, like-for-like digitnet row)
SYSTEMS: dict[str, tuple[str, str, str | None]] = {
    "digitnet": ("digitnet", "default recipe", None),
    "digitnet-adam": ("digitnet", "Adam 1e-3, constant", None),
    "digitnet-sgd": ("digitnet", "SGD 0.1, constant", None),
    "torch-tensors": ("PyTorch, loop over tensors", "Adam 1e-3, constant", "digitnet-adam"),
    "torch-dataloader": ("PyTorch, DataLoader", "Adam 1e-3, constant", "digitnet-adam"),
    "sklearn": ("scikit-learn MLPClassifier", "adam 1e-3, alpha 1e-4", "digitnet-adam"),
    "notebook": ("notebook NumPy (float64)", "SGD 0.1, constant", "digitnet-sgd"),
    "gemm-peak": ("float32 GEMM peak", "-", None),
}


# ==================================================================================================
# Workers: each runs in its own process and prints one JSON result line.
# ==================================================================================================


def import_digitnet():
    try:
        import digitnet  # noqa: F401
    except ImportError:  # running from a checkout without `pip install -e .`
        sys.path.insert(0, str(ROOT / "src"))


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_mnist() -> tuple[Any, float]:
    import_digitnet()
    from digitnet.data import load_dataset

    started = time.perf_counter()  # always the wall clock: loading waits on the disk, not the CPU
    data = load_dataset("mnist")
    return data, time.perf_counter() - started


def mnist_statistics() -> tuple[float, float]:
    """Mean and standard deviation of MNIST's training pixels, as digitnet's experiments measure them."""
    from digitnet.train import pixel_statistics

    return pixel_statistics(load_mnist()[0].train_images)


def flat_float(images, dtype):
    """uint8 images -> normalised ``(N, 784)`` rows, the same numbers every system sees."""
    import numpy as np

    mean, std = mnist_statistics()
    x = images.reshape(len(images), -1).astype(dtype)
    x *= 1 / (255 * std)
    x -= mean / std
    return np.ascontiguousarray(x)


def median_time(function, repeats: int = 7) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = clock()
        function()
        times.append(clock() - started)
    return statistics.median(times)


class EpochLog:
    """Training seconds and test accuracy per epoch; the evaluation is outside the timed part."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.accuracy: list[float] = []

    def add(self, seconds: float, accuracy: float) -> None:
        self.seconds.append(seconds)
        self.accuracy.append(accuracy)

    def result(self) -> dict[str, Any]:
        return {"epoch_seconds": self.seconds, "test_accuracy": self.accuracy}


def epoch_gemms(batch_sizes: list[int], sizes: tuple[int, ...], dtype, repeats: int = 3) -> float:
    """Seconds for the matrix products of one training epoch, and nothing else.

    Per batch of ``B``: the forward products ``x @ W`` per layer, the weight gradients
    ``x.T @ g`` per layer, and the input gradients ``g @ W.T`` of every layer but the first
    (digitnet skips that one, and so does this count).
    """
    import numpy as np

    rng = np.random.default_rng(0)
    largest = max(batch_sizes)
    weights = [rng.standard_normal((a, b)).astype(dtype) for a, b in itertools.pairwise(sizes)]
    grads_w = [np.empty_like(w) for w in weights]
    acts = [rng.standard_normal((largest, s)).astype(dtype) for s in sizes]
    deltas = [rng.standard_normal((largest, s)).astype(dtype) for s in sizes]

    def run() -> None:
        for batch in batch_sizes:
            a = [act[:batch] for act in acts]
            d = [delta[:batch] for delta in deltas]
            for i, w in enumerate(weights):
                np.matmul(a[i], w, out=a[i + 1])
            for i in reversed(range(len(weights))):
                np.matmul(a[i].T, d[i + 1], out=grads_w[i])
                if i > 0:
                    np.matmul(d[i + 1], weights[i].T, out=d[i])

    return median_time(run, repeats)


def epoch_flops(n: int, sizes: tuple[int, ...]) -> int:
    """Multiply-add FLOPs (2 per MAC) of one epoch, counted as in :func:`epoch_gemms`."""
    macs = [a * b for a, b in itertools.pairwise(sizes)]
    return 2 * n * (2 * sum(macs) + sum(macs[1:]))


def worker_digitnet(args, recipe: str) -> dict[str, Any]:
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    data, load_seconds = load_mnist()
    from dataclasses import replace

    from digitnet.nn import build_mlp
    from digitnet.recipes import default_config
    from digitnet.train import Reporter, accuracy_of, train

    config = default_config()
    if recipe == "adam":
        config = replace(config, optimizer="adam", lr=1e-3, schedule="constant", warmup_epochs=0)
    elif recipe == "sgd":
        config = replace(config, optimizer="sgd", lr=0.1, schedule="constant", warmup_epochs=0)
    config = replace(config, batch_size=args.batch_size or config.batch_size, epochs=args.epochs or config.epochs)
    rng = np.random.default_rng(args.seed)
    mean, std = mnist_statistics()
    network = build_mlp((HIDDEN,), rng=rng, mean=mean, std=std)
    x = network.prepare(data.train_images)
    y = data.train_labels.astype(np.int64)
    x_test = network.prepare(data.test_images)
    y_test = data.test_labels.astype(np.int64)
    log = EpochLog()

    class Log(Reporter):  # times the epoch itself (train's own record uses the wall clock)
        def epoch_started(self, epoch, epochs, batches):
            self.started = clock()

        def epoch_done(self, record, epochs):
            log.add(clock() - self.started, accuracy_of(network, x_test, y_test))

    result: dict[str, Any] = {"load_seconds": load_seconds, "config": config.to_dict()}
    with threadpool_limits(args.threads):
        train(network, x, y, config, rng, reporter=Log())
        result.update(log.result())
        flat_test = x_test.reshape(len(x_test), -1)
        w1 = network.layers[1].params["W"]
        big = np.empty((len(flat_test), w1.shape[1]), dtype=w1.dtype)
        result["inference_seconds"] = median_time(lambda: network.forward(x_test).argmax(axis=1))
        result["predict_uint8_seconds"] = median_time(lambda: network.predict(data.test_images))
        result["big_gemm_seconds"] = median_time(lambda: np.matmul(flat_test, w1, out=big))
        n, b = len(x), config.batch_size
        batches = [b] * (n // b) + ([n % b] if n % b else [])
        sizes = (784, HIDDEN, 10)
        result["gemm_epoch_seconds"] = epoch_gemms(batches, sizes, np.float32)
        result["epoch_flops"] = epoch_flops(n, sizes)
        result["blas"] = numpy_blas(threadpool_info())
    return result


def worker_torch(args, loader: str) -> dict[str, Any]:
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    data, load_seconds = load_mnist()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    X = torch.from_numpy(flat_float(data.train_images, np.float32))
    Y = torch.from_numpy(data.train_labels.astype(np.int64))
    X_test = torch.from_numpy(flat_float(data.test_images, np.float32))
    y_test = torch.from_numpy(data.test_labels.astype(np.int64))
    model = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch_size, n = args.batch_size or 128, len(X)
    generator = torch.Generator().manual_seed(args.seed)
    if loader == "dataloader":
        from torch.utils.data import DataLoader, TensorDataset

        batches = DataLoader(TensorDataset(X, Y), batch_size=batch_size, shuffle=True, generator=generator)

    def step(xb, yb) -> float:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        return loss.item()

    def test_accuracy() -> float:
        with torch.inference_mode():
            return float((model(X_test).argmax(dim=1) == y_test).float().mean())

    log = EpochLog()
    for _ in range(args.epochs):
        started = clock()
        model.train()
        running = 0.0
        if loader == "dataloader":
            for xb, yb in batches:
                running += step(xb, yb)
        else:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                running += step(X[index], Y[index])
        seconds = clock() - started
        model.eval()
        log.add(seconds, test_accuracy())

    def infer():
        with torch.inference_mode():
            return model(X_test).argmax(dim=1)

    return {
        "load_seconds": load_seconds,
        **log.result(),
        "inference_seconds": median_time(infer),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def worker_sklearn(args) -> dict[str, Any]:
    import warnings

    import numpy as np
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    data, load_seconds = load_mnist()
    X, y = flat_float(data.train_images, np.float32), data.train_labels.astype(np.int64)
    X_test, y_test = flat_float(data.test_images, np.float32), data.test_labels.astype(np.int64)
    model = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        solver="adam",
        learning_rate_init=1e-3,
        batch_size=args.batch_size or 128,
        random_state=args.seed,
        shuffle=True,
    )
    log = EpochLog()
    classes = np.arange(10)
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.epochs):
            started = clock()
            model.partial_fit(X, y, classes=classes)  # one epoch, shuffled, Adam state kept
            seconds = clock() - started
            log.add(seconds, float((model.predict(X_test) == y_test).mean()))
        inference = median_time(lambda: model.predict(X_test))
    return {
        "load_seconds": load_seconds,
        **log.result(),
        "inference_seconds": inference,
        "dtype": str(model.coefs_[0].dtype),
    }


def worker_notebook(args) -> dict[str, Any]:
    """The original notebook's hand-built network, as a beginner writes it: float64, plain SGD."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    data, load_seconds = load_mnist()
    X, y = flat_float(data.train_images, np.float64), data.train_labels.astype(np.int64)
    X_test, y_test = flat_float(data.test_images, np.float64), data.test_labels.astype(np.int64)
    rng = np.random.default_rng(args.seed)
    params = {
        "W1": rng.standard_normal((784, HIDDEN)) * np.sqrt(2 / 784),
        "b1": np.zeros(HIDDEN),
        "W2": rng.standard_normal((HIDDEN, 10)) * np.sqrt(2 / HIDDEN),
        "b2": np.zeros(10),
    }

    def one_hot(labels):
        Y = np.zeros((len(labels), 10))
        Y[np.arange(len(labels)), labels] = 1
        return Y

    def forward(X):
        Z1 = X @ params["W1"] + params["b1"]
        A1 = np.maximum(Z1, 0)
        Z2 = A1 @ params["W2"] + params["b2"]
        shifted = Z2 - Z2.max(axis=1, keepdims=True)
        P = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        return {"X": X, "Z1": Z1, "A1": A1, "Z2": Z2, "P": P}

    def backward(cache, Y):
        delta2 = (cache["P"] - Y) / len(Y)
        grads = {"W2": cache["A1"].T @ delta2, "b2": delta2.sum(axis=0)}
        delta1 = delta2 @ params["W2"].T * (cache["Z1"] > 0)
        grads["W1"] = cache["X"].T @ delta1
        grads["b1"] = delta1.sum(axis=0)
        return grads

    batch_size, lr = args.batch_size or 128, 0.1
    log = EpochLog()
    with threadpool_limits(args.threads):
        for _ in range(args.epochs):
            started = clock()
            order = rng.permutation(len(X))
            for start in range(0, len(X), batch_size):
                index = order[start : start + batch_size]
                cache, Y = forward(X[index]), one_hot(y[index])
                loss = -(Y * np.log(cache["P"] + 1e-12)).sum() / len(Y)  # noqa: F841 (the notebook logs it)
                grads = backward(cache, Y)
                for name in params:
                    params[name] -= lr * grads[name]
            seconds = clock() - started
            log.add(seconds, float((forward(X_test)["Z2"].argmax(axis=1) == y_test).mean()))
        inference = median_time(lambda: forward(X_test)["Z2"].argmax(axis=1))
    return {"load_seconds": load_seconds, **log.result(), "inference_seconds": inference}


def worker_gemm_peak(args) -> dict[str, Any]:
    """The machine's float32 matrix-multiply rate: a large square product, best of several."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    n = 1536 if args.quick else 2048
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    c = np.empty_like(a)
    with threadpool_limits(args.threads):
        np.matmul(a, b, out=c)
        best = min(timed(lambda: np.matmul(a, b, out=c)) for _ in range(3 if args.quick else 6))
    return {"gflops": 2 * n**3 / best / 1e9, "n": n}


def timed(function) -> float:
    started = clock()
    function()
    return clock() - started


def run_worker(args) -> None:
    global clock
    if args.clock == "cpu":
        clock = time.process_time
    name = args.worker
    workers = {
        "digitnet": lambda: worker_digitnet(args, "default"),
        "digitnet-adam": lambda: worker_digitnet(args, "adam"),
        "digitnet-sgd": lambda: worker_digitnet(args, "sgd"),
        "torch-tensors": lambda: worker_torch(args, "tensors"),
        "torch-dataloader": lambda: worker_torch(args, "dataloader"),
        "sklearn": lambda: worker_sklearn(args),
        "notebook": lambda: worker_notebook(args),
        "gemm-peak": lambda: worker_gemm_peak(args),
    }
    result = workers[name]()
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_MARK + json.dumps(result), flush=True)


# ==================================================================================================
# The conductor: runs the workers in turn, aggregates, checks the targets, prints and saves.
# ==================================================================================================


def numpy_blas(info: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The BLAS that NumPy itself loaded (SciPy, pulled in by other imports, may bring its own)."""
    blas = [entry for entry in info if entry.get("user_api") == "blas"]
    own = [entry for entry in blas if "numpy" in str(entry.get("filepath", ""))] or blas
    return [
        {
            k: entry.get(k)
            for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
        }
        for entry in own
    ]


def machine_facts(threads: int) -> dict[str, Any]:
    import numpy as np
    from threadpoolctl import threadpool_info

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(module: str) -> str | None:
        try:
            return __import__(module).__version__
        except ImportError:
            return None

    def git(*command: str) -> str:
        try:
            return subprocess.run(
                ["git", *command], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git_head": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": version("torch"),
        "sklearn": version("sklearn"),
        "numpy_blas": numpy_blas(threadpool_info()),
        "load_average_start": os.getloadavg(),
    }


def launch(name: str, seed: int, args) -> dict[str, Any]:
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        env[variable] = str(args.threads)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--seed",
        str(seed),
        "--epochs",
        str(args.epochs),
        "--threads",
        str(args.threads),
        "--clock",
        args.clock,
    ]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    if args.quick:
        command.append("--quick")
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=args.worker_timeout)
    for line in process.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
            result["process_seconds"] = time.perf_counter() - started
            return result
    error = (process.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": error}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def time_to(result: dict[str, Any], threshold: float) -> float | None:
    """Training seconds until the first epoch that ends at ``threshold`` test accuracy or above."""
    total = 0.0
    for seconds, accuracy in zip(result["epoch_seconds"], result["test_accuracy"]):
        total += seconds
        if accuracy >= threshold:
            return total
    return None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [run for run in runs if "error" not in run]
    if not good:
        return {"error": runs[0].get("error") if runs else "not run"}
    summary: dict[str, Any] = {"rounds": len(good), "peak_rss_mb": max(r["peak_rss_mb"] for r in good)}
    if "epoch_seconds" in good[0]:
        epochs = [s for r in good for s in r["epoch_seconds"]]
        summary.update(
            epoch_median=statistics.median(epochs),
            epoch_min=min(epochs),
            epoch_max=max(epochs),
            final_accuracy=median(r["test_accuracy"][-1] for r in good),
            inference_seconds=median(r["inference_seconds"] for r in good),
            load_seconds=median(r["load_seconds"] for r in good),
        )
        for threshold in THRESHOLDS:
            times = [time_to(r, threshold) for r in good]
            reached = [t for t in times if t is not None]
            # A median over seeds: reached by more than half of them, or it is "not reached".
            # (an unreached seed counts as infinitely slow; median_low never averages it in)
            summary[f"time_to_{threshold}"] = (
                statistics.median_low([math.inf if t is None else t for t in times])
                if len(reached) * 2 > len(times)
                else None
            )
            summary[f"time_to_{threshold}_per_seed"] = times
    for key in ("gemm_epoch_seconds", "big_gemm_seconds", "predict_uint8_seconds", "gflops"):
        if key in good[0]:
            summary[key] = median(r[key] for r in good)
    if "epoch_flops" in good[0]:
        summary["epoch_flops"] = good[0]["epoch_flops"]
    return summary


def fmt(value, unit: str = "s", digits: int = 3) -> str:
    if value is None:
        return "not reached" if unit == "s" else "n/a"
    if unit == "ms":
        return f"{value * 1000:.1f} ms"
    if unit == "%":
        return f"{value:.2%}"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.{digits}f} s"


def ratio(a, b):
    return a / b if a is not None and b else None


def report(facts: dict[str, Any], summary: dict[str, dict[str, Any]], args) -> tuple[str, dict[str, Any]]:
    ref = summary.get("digitnet", {})
    lines = [
        f"## Side by side on {facts['cpu']} ({facts['cores_usable']} cores, "
        f"{facts['threads']} thread{'s' if facts['threads'] > 1 else ''})",
        "",
        f"{facts['date_utc']}, git {facts['git_head'][:12]}{' (dirty tree)' if facts['git_dirty'] else ''}, "
        f"Python {facts['python']}, NumPy {facts['numpy']}, PyTorch {facts['torch']}, "
        f"scikit-learn {facts['sklearn']}; NumPy BLAS: "
        + ", ".join(
            f"{b['internal_api']} {b['version']} ({b['architecture']} kernel, "
            f"{b['threading_layer']}; {b['num_threads']} threads by default, "
            f"{facts['threads']} used)"
            for b in facts["numpy_blas"]
        )
        + f". Load average {facts['load_average_start'][0]:.1f} at the start, "
        f"{facts['load_average_end'][0]:.1f} at the end. "
        f"{args.repeats} interleaved rounds (seeds 0..{args.repeats - 1}), {args.epochs} epochs each, "
        f"60,000 training images, 784-128-10, float32, timed with the {args.clock} clock"
        f"{', --quick' if args.quick else ''}.",
        "",
        "| system | recipe | s/epoch median (min-max) | vs digitnet | vs digitnet, same recipe "
        "| to 97.5% | to 98.0% | final test acc | inference 10k | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (label, recipe, twin) in SYSTEMS.items():
        s = summary.get(name)
        if name == "gemm-peak" or s is None:  # the machine row, or a system left out by --systems
            continue
        if "error" in s:
            lines.append(f"| {label} | {recipe} | skipped: {s['error'][:80]} | | | | | | | |")
            continue
        twin_ratio = fmt(ratio(s["epoch_median"], summary.get(twin, {}).get("epoch_median")), "x") if twin else "-"
        lines.append(
            f"| {label} | {recipe} | {s['epoch_median']:.3f} ({s['epoch_min']:.3f}-{s['epoch_max']:.3f}) "
            f"| {fmt(ratio(s['epoch_median'], ref.get('epoch_median')), 'x')} | {twin_ratio} "
            f"| {fmt(s['time_to_0.975'], digits=2)} | {fmt(s['time_to_0.98'], digits=2)} "
            f"| {fmt(s['final_accuracy'], '%')} | {fmt(s['inference_seconds'], 'ms')} "
            f"| {s['peak_rss_mb']:.0f} MB |"
        )

    lines += [
        "",
        "Each system against digitnet with its default recipe (above 1: digitnet is ahead):",
        "",
        "| system | recipe | s/epoch | time to 97.5% | time to 98.0% | inference 10k | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (label, recipe, _) in SYSTEMS.items():
        s = summary.get(name)
        if name in ("digitnet", "gemm-peak") or s is None or "error" in s or "error" in ref:
            continue
        cells = [
            fmt(ratio(s.get(key), ref.get(key)), "x").replace("n/a", "-")
            for key in ("epoch_median", "time_to_0.975", "time_to_0.98", "inference_seconds", "peak_rss_mb")
        ]
        lines.append(f"| {label} | {recipe} | " + " | ".join(cells) + " |")

    checks = targets(summary)
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    for check in checks:
        met = "n/a" if check["met"] is None else ("yes" if check["met"] else "**no**")
        lines.append(f"| {check['target']} | {check['measured']} | {check['goal']} | {met} |")
    return "\n".join(lines) + "\n", {"checks": checks}


def targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    d, adam = summary.get("digitnet", {}), summary.get("digitnet-adam", {})
    torch_loop, peak = summary.get("torch-tensors", {}), summary.get("gemm-peak", {})
    checks = []

    def check(target, value, goal, ok, unit="x"):
        checks.append(
            {
                "target": target,
                "value": value,
                "measured": fmt(value, unit) if value is not None else "n/a",
                "goal": goal,
                "met": None if value is None else bool(ok(value)),
            }
        )

    check(
        "s/epoch, Adam batch 128: digitnet / PyTorch tensor loop",
        ratio(adam.get("epoch_median"), torch_loop.get("epoch_median")),
        "<= 0.40x",
        lambda v: v <= 0.4,
    )
    overhead = (1 - d["gemm_epoch_seconds"] / d["epoch_median"]) if "gemm_epoch_seconds" in d else None
    check("non-GEMM share of a default epoch (1 - GEMMs alone / epoch)", overhead, "<= 25%", lambda v: v <= 0.25, "%")
    fraction = (
        d["epoch_flops"] / d["epoch_median"] / 1e9 / peak["gflops"] if "epoch_flops" in d and "gflops" in peak else None
    )
    check(
        f"default epoch's FLOP rate / float32 GEMM peak ({peak.get('gflops', 0):.0f} GFLOP/s)",
        fraction,
        ">= 60%",
        lambda v: v >= 0.6,
        "%",
    )
    check(
        "time to 97.5%: digitnet default / PyTorch usual recipe",
        ratio(d.get("time_to_0.975"), torch_loop.get("time_to_0.975")),
        "<= 0.30x",
        lambda v: v <= 0.3,
    )
    check("time to 98.0%, digitnet default (median of seeds)", d.get("time_to_0.98"), "<= 3 s", lambda v: v <= 3, "s")
    check(
        "inference on 10k prepared images / its one big GEMM",
        ratio(d.get("inference_seconds"), d.get("big_gemm_seconds")),
        "<= 1.3x",
        lambda v: v <= 1.3,
    )
    check(
        "predict(uint8 images), 10k / its one big GEMM",
        ratio(d.get("predict_uint8_seconds"), d.get("big_gemm_seconds")),
        "(<= 1.3x)",
        lambda v: v <= 1.3,
    )
    check("load MNIST from the cache", d.get("load_seconds"), "< 0.3 s", lambda v: v < 0.3, "s")
    check("peak memory of a default training run (MB)", d.get("peak_rss_mb"), "< 600 MB", lambda v: v < 600, "x")
    if checks[-1]["value"] is not None:
        checks[-1]["measured"] = f"{checks[-1]['value']:.0f} MB"
    return checks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 epochs (under two minutes)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds [3; quick: 2]")
    parser.add_argument("--epochs", type=int, default=None, help="[the default recipe's; quick: 2]")
    parser.add_argument("--batch-size", type=int, default=None, help="[128, the default recipe's]")
    parser.add_argument("--threads", type=int, default=None, help="BLAS/torch threads [usable cores]")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time with the wall clock, or with each process's CPU time (steadier on a "
        "busy machine with --threads 1; with more threads it counts every core) [wall]",
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=None, help="write every raw number as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--worker-timeout", type=float, default=1800)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.worker:
        return run_worker(args)

    import_digitnet()
    from digitnet.recipes import default_config

    args.repeats = args.repeats or (2 if args.quick else 3)
    args.epochs = args.epochs or (2 if args.quick else default_config().epochs)
    names = [name for name in args.systems.split(",") if name]
    unknown = set(names) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    facts = machine_facts(args.threads)
    print(
        f"{facts['cpu']}: {facts['cores_usable']} usable cores, {args.threads} threads; numpy BLAS "
        f"{facts['numpy_blas']}",
        file=sys.stderr,
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    started = time.perf_counter()
    for round_ in range(args.repeats):
        for name in names:  # A B C D, A B C D, ...: drift of a shared machine hits every system alike
            result = launch(name, round_, args)
            runs[name].append(result)
            if "error" in result:
                brief = f"failed: {result['error']}"
            elif "epoch_seconds" in result:
                brief = f"{statistics.median(result['epoch_seconds']):.3f} s/epoch"
            else:
                brief = f"{result['gflops']:.0f} GFLOP/s"
            print(f"round {round_ + 1}/{args.repeats} {name:16s} {brief}", file=sys.stderr)
    facts["load_average_end"] = os.getloadavg()
    facts["total_seconds"] = time.perf_counter() - started
    summary = {name: summarise(runs[name]) for name in names}
    record = {"facts": facts, "settings": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "runs": runs}
    if args.out:  # the raw numbers first, so that they survive whatever happens below
        args.out.write_text(json.dumps(record, indent=1))
    markdown, extra = report(facts, summary, args)
    print(markdown)
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.out:
        args.out.write_text(json.dumps({**record, **extra}, indent=1))


if __name__ == "__main__":
    main()
