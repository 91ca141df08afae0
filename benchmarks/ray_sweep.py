"""The cost of running a sweep on Ray: start-up, per-trial overhead, one node against two.

    python benchmarks/ray_sweep.py [--trials 16] [--epochs 8] [--dataset mnist]

1. Times one trial's :func:`digitnet.experiment.run` in this process (no Ray): the yardstick.
2. Starts the local Ray instance (timed) and runs the sweep: ``trials`` MLPs (784-128-10,
   learning rate 1e-3 to 1e-2, ``epochs`` epochs, by default the MLP recipe's 8, one BLAS thread
   each, no early stopping, so all trials do the same work as the yardstick); the wall time
   against ``trials x one trial / cores``. (Ray's cost per trial is fixed, so shorter trials,
   ``--epochs 2``, show it larger.)
3. Runs the same sweep on two local nodes (``ray.cluster_utils.Cluster``, cores split between them).

Prints one JSON object; BENCHMARKS.md quotes it. It says whether ``rfc3987-syntax`` is installed:
JupyterLab brings it (through ``jsonschema[format-nongpl]``), and its import builds a parser for about
3 s in every process that imports Ray, the dozen or so of Ray's own included.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from digitnet.cluster.runtime import ray_session
from digitnet.cluster.space import load_spec
from digitnet.cluster.sweep import experiment_config, param_space, run_sweep
from digitnet.data import load_dataset
from digitnet.experiment import cpu_count, run
from digitnet.recipes import default_config


def sweep_once(spec, data, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        outcome, _ = run_sweep(spec, data, Path(folder) / "sweep", concurrency=concurrency)
        wall = time.perf_counter() - started
    seconds = [row["seconds"] for row in outcome.rows if row["seconds"] is not None]
    return {
        "wall_s": round(wall, 1),
        "trials_done": sum(row["status"] == "done" for row in outcome.rows),
        "mean_trial_s_inside_ray": round(sum(seconds) / len(seconds), 2),
        "nodes_used": len({row["node"] for row in outcome.rows}),
        "best_val_accuracy": outcome.best["val_accuracy"] if outcome.best else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=default_config("mlp").epochs)
    parser.add_argument("--dataset", default="mnist")
    args = parser.parse_args()
    cores = cpu_count()
    spec = load_spec(
        None,
        dataset=args.dataset,
        trials=args.trials,
        early_stopping=False,
        space={"epochs": args.epochs, "hidden": "128", "lr": {"loguniform": [1e-3, 1e-2]}},
    )
    data = load_dataset(args.dataset)
    params = {**param_space(spec), "lr": 3e-3}
    started = time.perf_counter()
    run(experiment_config(params), data)
    one_trial = time.perf_counter() - started

    started = time.perf_counter()
    with ray_session() as resources:
        startup = time.perf_counter() - started
        one_node = sweep_once(spec, data, concurrency=int(resources["CPU"]))

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cores - cores // 2, "include_dashboard": False})
    cluster.add_node(num_cpus=cores // 2)
    try:
        with ray_session(cluster.address) as resources:
            two_nodes = sweep_once(spec, data, concurrency=int(resources["CPU"]))
    finally:
        ray.shutdown()
        cluster.shutdown()

    ideal = args.trials * one_trial / cores
    report = {
        "cores": cores,
        "trials": args.trials,
        "one_trial_s_without_ray": round(one_trial, 2),
        "ideal_wall_s": round(ideal, 1),
        "local_ray_startup_s": round(startup, 1),
        "one_node": {**one_node, "wall_over_ideal": round(one_node["wall_s"] / ideal, 2)},
        "two_local_nodes": {**two_nodes, "wall_over_ideal": round(two_nodes["wall_s"] / ideal, 2)},
        "ray_overhead_per_trial_s": round((one_node["wall_s"] * cores - args.trials * one_trial) / args.trials, 2),
        # The same from the trials' own seconds inside Ray: what is left of the cores' time is Ray's.
        "ray_overhead_per_trial_s_from_inside": round(
            one_node["wall_s"] * cores / args.trials - one_node["mean_trial_s_inside_ray"], 2
        ),
        "ray_version": ray.__version__,
        "rfc3987_syntax_installed": importlib.util.find_spec("rfc3987_syntax") is not None,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
