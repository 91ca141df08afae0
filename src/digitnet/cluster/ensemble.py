"""``digitnet ensemble``: members trained in parallel as Ray tasks, saved as one ensemble file.

Each member is one :func:`digitnet.experiment.run` in a Ray task that asks for as many cores as
its BLAS threads, so Ray runs as many members at once as the cores allow. A task returns its model
file's bytes (checked again by the driver); the driver writes the ensemble file once, atomically,
after every member has finished, so a worker killed mid-training (Ray retries its task) leaves
nothing half-written.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..data import Dataset
from ..errors import DigitnetError
from ..experiment import ExperimentConfig, run
from ..nn import Network
from ..nn.ensemble import MAX_ENSEMBLE_MEMBERS, Ensemble
from ..nn.modelfile import network_bytes, read_network
from ..threads import parse_threads

#: How often Ray may start a member's task again after its worker died (a crash, a lost node).
MEMBER_RETRIES = 3


@dataclass
class MemberResult:
    """One trained member and what it took."""

    config: ExperimentConfig
    network: Network
    seconds: float
    val_accuracy: float | None


def train_member(config: ExperimentConfig, data: Dataset) -> tuple[bytes, float]:
    """Train one member (inside a Ray task): its model file's bytes, and the wall seconds it took."""
    started = time.perf_counter()
    result = run(config, data)
    return network_bytes(result.network, f"member seed {config.seed}"), time.perf_counter() - started


def member_configs(base: ExperimentConfig, members: int) -> list[ExperimentConfig]:
    """``members`` copies of ``base`` that differ only in their seed (``base.seed`` upwards)."""
    return [replace(base, seed=base.seed + k) for k in range(members)]


def train_ensemble(
    configs: Sequence[ExperimentConfig],
    data: Dataset,
    *,
    on_member: Callable[[int, MemberResult], None] | None = None,
) -> tuple[Ensemble, list[MemberResult]]:
    """Train every configuration as a Ray task on the connected Ray; return the ensemble.

    Parameters
    ----------
    configs : sequence of ExperimentConfig
        One per member; each one's ``threads`` is the cores its task asks Ray for and trains on
        (``"auto"`` or ``None``: 1).
    data : Dataset
        Put into Ray's object store once; every task reads it from there.
    on_member : callable, optional
        Called as ``on_member(index, result)`` as each member finishes (in finishing order).
    """
    import ray

    if not 1 <= len(configs) <= MAX_ENSEMBLE_MEMBERS:
        raise DigitnetError(f"an ensemble has 1 to {MAX_ENSEMBLE_MEMBERS} members, not {len(configs)}.")
    data_ref = ray.put(data)
    task = ray.remote(max_retries=MEMBER_RETRIES)(train_member)
    # A member trains on exactly the cores its task reserves: "auto" would probe for more.
    cores = [parse_threads(config.threads) or 1 for config in configs]
    pending: dict[Any, int] = {
        task.options(num_cpus=n).remote(replace(config, threads=n), data_ref): k
        for k, (config, n) in enumerate(zip(configs, cores))
    }
    results: dict[int, MemberResult] = {}
    while pending:
        (done,), _ = ray.wait(list(pending), num_returns=1)
        k = pending.pop(done)
        blob, seconds = ray.get(done)
        network = read_network(io.BytesIO(blob), f"member {k}")
        val = (network.metadata.get("history") or [{}])[-1].get("val_accuracy")
        results[k] = MemberResult(configs[k], network, seconds, val)
        if on_member is not None:
            on_member(k, results[k])
    ordered = [results[k] for k in range(len(configs))]
    metadata = {
        "dataset": data.name,
        "combine": "mean of the members' class probabilities",
        "members": [_describe(result) for result in ordered],
    }
    return Ensemble([result.network for result in ordered], metadata), ordered


def _describe(result: MemberResult) -> dict[str, Any]:
    config = result.config
    return {
        "model": config.model,
        "hidden": list(config.hidden),
        "augment": config.augment_strength or "none",
        "seed": config.seed,
        "recipe": dict(config.recipe),
        "val_accuracy": result.val_accuracy,
        "seconds": round(result.seconds, 2),
    }
