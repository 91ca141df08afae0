"""How many BLAS threads a training run uses: ``--threads auto`` (the default) or a fixed number.

Multi-threaded BLAS pays only for products large enough to split. On small ones (the 784-128-10
MLP's are about 26 MFLOP) the threads spend their time waiting for one another, and when another
process takes one of the cores, every product waits for the thread that lost its core: a run that
takes 5 s on a quiet machine took 68-184 s beside other training jobs, against 5-10 s with one
thread. So ``auto`` first counts the cores other processes keep busy (a short probe cannot see
them: over a few milliseconds the scheduler still hands a thread its share) and uses only the idle
ones; then it measures the network's largest matrix product of one training step with one thread
and with those cores, interleaved, and keeps the extra threads only when they make it clearly
faster. The probe multiplies random arrays of its own and draws nothing
from the run's generator. The number of threads can still change the last bits of a product
(OpenBLAS splits the work differently), so a run repeats bit for bit with the same number of
threads; the model file records the number used.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from .nn import Network
from .nn.conv import Conv2D
from .nn.layers import Dense

#: Extra threads are kept only when they make the probed product at least this much faster: a
#: thread that barely pays on a quiet machine is the one that collapses on a busy one.
MIN_GAIN = 1.3


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity and container limits where visible)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_threads(value: int | str | None) -> int | None:
    """``None`` for automatic (``None``, ``"auto"``), else a positive thread count."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    count = int(value)
    if count < 1:
        raise ValueError(f"threads must be 'auto' or a positive integer, not {value!r}")
    return count


def largest_product(network: Network, batch_size: int) -> tuple[int, int, int]:
    """``(m, k, n)`` of the largest matrix product in one training step of ``network``."""
    shape: tuple[int, ...] = network.input_shape
    best = (1, 1, 1)
    for layer in network.layers:
        if isinstance(layer, Dense):
            product = (batch_size, layer.in_features, layer.out_features)
        elif isinstance(layer, Conv2D):
            out = layer.output_shape(shape)
            kh, kw = layer.kernel_size
            product = (layer.out_channels, layer.in_channels * kh * kw, batch_size * out[1] * out[2])
        else:
            product = (1, 1, 1)
        if np.prod(product) > np.prod(best):
            best = product
        shape = layer.output_shape(shape)
    return best


def probe_threads(m: int, k: int, n: int, max_threads: int, rounds: int = 5, dtype=np.float32) -> int:
    """1 or ``max_threads``: whichever runs the products of a layer ``(m, k) @ (k, n)`` faster.

    Times the forward product and the weight gradient's ``(m, n) @ (n, k)`` together, ``rounds``
    times interleaved, and compares medians; the extra threads must gain :data:`MIN_GAIN`.
    """
    if max_threads <= 1:
        return 1
    rng = np.random.default_rng(0)  # not the run's generator: the probe must not change the run
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out, grad = np.empty((m, n), dtype=dtype), np.empty((m, k), dtype=dtype)
    timings: dict[int, list[float]] = {1: [], max_threads: []}
    for round_ in range(rounds + 1):
        for threads in timings:
            with threadpool_limits(limits=threads, user_api="blas"):
                started = time.perf_counter()
                np.matmul(a, b, out=out)
                np.matmul(out, b.T, out=grad)
                if round_:  # the first round only warms up the threads and caches
                    timings[threads].append(time.perf_counter() - started)
    one, many = (float(np.median(timings[t])) for t in (1, max_threads))
    return max_threads if one >= MIN_GAIN * many else 1


def busy_elsewhere(samples: int = 5, interval: float = 0.02) -> int:
    """Threads of other processes running or waiting for a core now: the median of ``samples``
    readings ``interval`` seconds apart of Linux's runnable count (``/proc/loadavg``) less this
    process's own runnable threads (0 where they cannot be read).

    Own threads are left out because BLAS threads spin for a moment after a product; the median,
    because a competitor that keeps a core busy is runnable in every reading while a process that
    runs for a moment is in one or two.
    """
    counts = []
    for sample in range(samples):
        if sample:
            time.sleep(interval)
        try:
            with open("/proc/loadavg", encoding="ascii") as file:
                runnable = int(file.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(runnable - _own_runnable_threads())
    # The count is the whole host's: leave out what may run on cores this process cannot use.
    outside = max(0, (os.cpu_count() or 1) - cpu_count())
    return max(0, int(statistics.median_low(counts)) - outside)


def _own_runnable_threads() -> int:
    """This process's threads in the running state ("R" in ``/proc/self/task/*/stat``)."""
    count = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            state = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # a thread that ended between listing and reading
        count += state == "R"
    return max(1, count)  # at least the thread reading


def splits_batches(network: Network) -> bool:
    """Whether training should use its threads on shares of each batch (:mod:`digitnet.parallel`,
    one BLAS thread each) rather than inside each matrix product: yes for networks with a
    convolution. Why: their passes between the products (im2col, pooling, normalisation) are
    about half a step and run on one core; on the default CNN, two shares made an epoch 0.93x as
    long as two BLAS threads did. The MLP's products are small, and there two shares took twice
    as long as two BLAS threads (BENCHMARKS.md, issue 12)."""
    return any(isinstance(layer, Conv2D) for layer in network.layers)


def choose_threads(requested: int | None, network: Network, batch_size: int, dtype=np.float32) -> int:
    """The threads a run uses: ``requested`` if given, else what :func:`probe_threads` finds on the
    cores no other process keeps busy (:func:`busy_elsewhere`). A CNN gives them to shares of each
    batch (:func:`splits_batches`); the probe still times a BLAS product, as a test of whether a
    second core pays for this network's size at all."""
    if requested is not None:
        return requested
    idle = max(1, cpu_count() - busy_elsewhere())
    return probe_threads(*largest_product(network, batch_size), max_threads=idle, dtype=dtype)
