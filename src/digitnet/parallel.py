"""Data-parallel training steps on threads: each thread runs the whole network on its share of a batch.

Why: NumPy runs every pass that is not a matrix product (im2col and col2im, pooling, batch
normalisation, ReLU) on one core, and BLAS threads split only the products. On the default CNN
those passes are about 45% of a step, so with two BLAS threads the second core idled for much of
each step (BENCHMARKS.md, issue 12). Here each thread takes a share of the batch's examples and
runs forward and backward through a :meth:`~digitnet.nn.Network.replica` of the network with one
BLAS thread; NumPy releases the GIL inside its loops and BLAS calls, so the shares run at once.
Each replica's gradient is that of its share's part of the batch's mean loss, so their sum is
the whole batch's gradient, up to rounding.

Two layers see the batch as a whole:

* batch normalisation takes the whole batch's statistics: each thread adds its share's sums to the
  others' (:class:`ShareSums`, a barrier) in forward and in backward, so the step computes what
  one thread would, up to rounding, and a recipe chosen on one thread means the same on two
  (data-parallel training on several GPUs normalises each share by itself by default);
* dropout in each extra replica draws its masks from a generator of its own, seeded from the run's
  generator at the start of every epoch, so that a run repeats bit for bit with the same number of
  threads, resumed from a checkpoint or not.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import numpy as np

from .nn import Network
from .nn.losses import SoftmaxCrossEntropy
from .nn.regularization import BatchNorm, Dropout


class ShareSums:
    """Sums arrays over the threads that share a batch: each thread hands in its part and gets the
    total, added in share order, so every thread gets the same bits.

    The parts of consecutive calls go to alternate slots, so one barrier per call suffices: a thread
    can hand in a part for the call after next only once every thread has reached the next call,
    that is, has read this one's total. A thread that fails calls :meth:`abort`, so that the others
    stop waiting for it.
    """

    def __init__(self, parties: int) -> None:
        self.slots: list[list[np.ndarray]] = [[np.zeros(0)] * parties for _ in range(2)]
        self.calls = [0] * parties  # per thread: how many totals it has asked for
        self.barrier = threading.Barrier(parties)

    def total(self, index: int, part: np.ndarray) -> np.ndarray:
        """Hand in share ``index``'s ``part``; returns the sum of every share's part, once all
        have handed theirs in."""
        parts = self.slots[self.calls[index] % 2]
        self.calls[index] += 1
        parts[index] = part
        self.barrier.wait()
        return sum(parts[1:], start=parts[0].copy())

    def abort(self) -> None:
        """Break the barrier for good: every waiting and later call raises BrokenBarrierError."""
        self.barrier.abort()


class DataParallel:
    """Forward and backward passes of one batch on ``workers`` threads.

    Parameters
    ----------
    network : Network
        Runs the first share, on the calling thread; its gradients receive the whole batch's.
    workers : int
        Threads (shares of each batch), at least 2.
    label_smoothing : float
        Of the loss, as :class:`~digitnet.nn.losses.SoftmaxCrossEntropy` takes it.
    """

    def __init__(self, network: Network, workers: int, label_smoothing: float = 0.0) -> None:
        if workers < 2:
            raise ValueError(f"data-parallel steps need at least 2 workers, not {workers}")
        self.replicas = [network] + [network.replica() for _ in range(workers - 1)]
        self.losses = [SoftmaxCrossEntropy(label_smoothing) for _ in self.replicas]
        self.sums = ShareSums(workers)
        self._share_batch_norm(True)
        self.pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="digitnet-share")
        self._pairs = [replica.parameters() for replica in self.replicas]

    def close(self) -> None:
        """Stop the threads, and leave the network's batch normalisation to itself again."""
        try:
            self.sums.abort()  # a share still waiting for the others (after Ctrl+C) gives up
            self.pool.shutdown(wait=True)
        finally:
            self._share_batch_norm(False)

    def _share_batch_norm(self, shared: bool) -> None:
        for index, replica in enumerate(self.replicas):
            for layer in replica.layers:
                if isinstance(layer, BatchNorm):
                    layer.share_sums = partial(self.sums.total, index) if shared else None

    def new_epoch(self, rng: np.random.Generator) -> None:
        """Before an epoch: seed the extra replicas' dropout from ``rng`` (one draw each). (Their
        running statistics are never read: every replica computes the same, the first keeps them.)"""
        for replica in self.replicas[1:]:
            seed = int(rng.integers(2**63))
            for layer in replica.layers:
                if isinstance(layer, Dropout):
                    layer.rng = np.random.default_rng(seed)

    def forward_backward(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """The batch's mean loss and number of correct answers; unless the loss is not finite,
        the first network's gradients then hold the gradient of that mean loss."""
        if len(x) < len(self.replicas):  # too few examples to give every thread a share
            self._share_batch_norm(False)
            try:
                return self._share(0, x, labels, 1.0)
            finally:
                self._share_batch_norm(True)
        bounds = _share_bounds(len(x), len(self.replicas))
        shares = [
            (index, x[start:stop], labels[start:stop], (stop - start) / len(x))
            for index, (start, stop) in enumerate(bounds)
        ]
        futures = [self.pool.submit(self._share, *share) for share in shares[1:]]
        try:
            first = self._share(*shares[0])
        except threading.BrokenBarrierError:
            raise _first_failure(futures) from None
        results = [first] + [future.result() for future in futures]
        loss = sum(share_loss for share_loss, _ in results)
        if math.isfinite(loss):
            for shared in zip(*self._pairs):  # each replica's gradient is its part of the batch's
                total = shared[0][2]
                for _, _, grad in shared[1:]:
                    total += grad
        return loss, sum(correct for _, correct in results)

    def _share(self, index: int, x: np.ndarray, labels: np.ndarray, weight: float) -> tuple[float, int]:
        """Forward and backward of one share; its part of the batch's mean loss, and its correct answers.

        ``weight`` is the share's fraction of the batch: its gradient is that of its part of the
        batch's mean loss, so that the replicas' gradients add up to the batch's.
        """
        replica, loss_fn = self.replicas[index], self.losses[index]
        try:
            # Per thread (see digitnet.train._Step). Every share goes backward even when a loss is
            # not finite, because batch normalisation waits for all; the caller then drops the step.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                logits = replica.forward(x, training=True)
                loss = weight * loss_fn.forward(logits, labels)
                grad_logits = loss_fn.backward()
                grad_logits *= weight
                replica.backward(grad_logits)
        except BaseException:
            self.sums.abort()  # the other shares would wait for this one for ever
            raise
        return loss, int(np.count_nonzero(logits.argmax(axis=1) == labels))

    def map_shares(self, function: Callable[[int, int], int], n: int) -> list[int]:
        """``function(start, stop)`` for each share of ``n`` examples, one share per thread: for
        work that changes no layer, such as scoring the validation images (inference is stateless)."""
        bounds = _share_bounds(n, len(self.replicas))
        futures = [self.pool.submit(function, start, stop) for start, stop in bounds[1:]]
        return [function(*bounds[0])] + [future.result() for future in futures]


def _first_failure(futures: list[Future]) -> BaseException:
    """The error of the share that broke the barrier (the others only saw it broken)."""
    errors = [future.exception() for future in futures]  # waits for every share
    failures = [e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)]
    return failures[0] if failures else threading.BrokenBarrierError()


def _share_bounds(n: int, workers: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each of ``workers`` shares of ``n`` examples, as equal as can be."""
    edges = np.linspace(0, n, workers + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))
