"""Data-parallel training steps on threads: each thread runs the whole network on its share of a batch.

Why: NumPy runs every pass that is not a matrix product (im2col and col2im, pooling, batch
normalisation, ReLU) on one core, and BLAS threads split only the products. On the default CNN
those passes are about 45% of a step, so with two BLAS threads the second core idled for much of
each step (BENCHMARKS.md, issue 12). Here each thread takes a share of the batch's examples and
runs forward and backward through a :meth:`~digitnet.nn.Network.replica` of the network with one
BLAS thread; NumPy releases the GIL inside its loops and BLAS calls, so the shares run at once.
The step's gradient is the mean of the replicas' gradients weighted by their shares, which for
layers that treat examples independently is the whole batch's gradient up to rounding.

Two layers see the batch as a whole and so see only their share here:

* batch normalisation standardises each share with its own mean and variance, as data-parallel
  training on several GPUs does by default (PyTorch's DistributedDataParallel without
  SyncBatchNorm); the running averages of the replicas are averaged after every step;
* dropout in each extra replica draws its masks from a generator of its own, seeded from the run's
  generator at the start of every epoch, so that a run repeats bit for bit with the same number of
  threads, resumed from a checkpoint or not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .nn import Network
from .nn.losses import SoftmaxCrossEntropy
from .nn.regularization import Dropout


class DataParallel:
    """Forward and backward passes of one batch on ``workers`` threads.

    Parameters
    ----------
    network : Network
        Runs the first share, on the calling thread; its gradients receive the combined gradient.
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
        self.pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="digitnet-share")
        self._pairs = [replica.parameters() for replica in self.replicas]

    def close(self) -> None:
        """Stop the threads (waits for a share still running, as after Ctrl+C)."""
        self.pool.shutdown(wait=True)

    def new_epoch(self, rng: np.random.Generator) -> None:
        """Before an epoch: seed the extra replicas' dropout from ``rng`` (one draw each), and give
        them the first network's buffers (which a resumed run has just loaded)."""
        for replica in self.replicas[1:]:
            seed = int(rng.integers(2**63))
            for layer, own in zip(replica.layers, self.replicas[0].layers):
                if isinstance(layer, Dropout):
                    layer.rng = np.random.default_rng(seed)
                for name, value in own.buffers.items():
                    layer.buffers[name][...] = value

    def forward_backward(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """The batch's mean loss and number of correct answers; unless the loss is not finite,
        the first network's gradients then hold the gradient of that mean loss."""
        bounds = _share_bounds(len(x), len(self.replicas))
        futures = [
            self.pool.submit(self._share, index, x[start:stop], labels[start:stop])
            for index, (start, stop) in enumerate(bounds[1:], start=1)
        ]
        results = [self._share(0, x[: bounds[0][1]], labels[: bounds[0][1]])]
        results += [future.result() for future in futures]
        weights = [(stop - start) / len(x) for start, stop in bounds]
        loss = sum(weight * share_loss for weight, (share_loss, _) in zip(weights, results))
        if math.isfinite(loss):
            self._combine(weights)
        return loss, sum(correct for _, correct in results)

    def _share(self, index: int, x: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        replica, loss_fn = self.replicas[index], self.losses[index]
        with np.errstate(over="ignore", invalid="ignore"):  # per thread: see digitnet.train._Step
            logits = replica.forward(x, training=True)
            loss = loss_fn.forward(logits, labels)
        if math.isfinite(loss):
            replica.backward(loss_fn.backward())
        return loss, int(np.count_nonzero(logits.argmax(axis=1) == labels))

    def _combine(self, weights: list[float]) -> None:
        """Weighted means of the replicas' gradients (into the first's) and of their buffers
        (into all of them)."""
        if len(weights) < len(self.replicas):  # a batch smaller than the number of workers
            weights = weights + [0.0] * (len(self.replicas) - len(weights))
        for shared in zip(*self._pairs):
            total = shared[0][2]
            total *= weights[0]
            for (_, _, grad), weight in zip(shared[1:], weights[1:]):
                if weight:
                    total += weight * grad
        for layers in zip(*(replica.layers for replica in self.replicas)):
            for name, total in layers[0].buffers.items():
                total *= weights[0]
                for layer, weight in zip(layers[1:], weights[1:]):
                    if weight:
                        total += weight * layer.buffers[name]
                for layer in layers[1:]:
                    layer.buffers[name][...] = total

    def map_shares(self, function: Callable[[int, int], float], n: int) -> list[float]:
        """``function(start, stop)`` for each share of ``n`` examples, one share per thread: for
        work that changes no layer, such as scoring the validation images (inference is stateless)."""
        bounds = _share_bounds(n, len(self.replicas))
        futures = [self.pool.submit(function, start, stop) for start, stop in bounds[1:]]
        return [function(*bounds[0])] + [future.result() for future in futures]


def _share_bounds(n: int, workers: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each non-empty share of ``n`` examples, as equal as can be."""
    edges = np.linspace(0, n, min(workers, n) + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))
