#!/usr/bin/env python
"""The CNN recipe search behind ``digitnet train --model cnn`` (issue 12), one row per trial.

Each trial trains a variant of :func:`digitnet.nn.architectures.build_cnn` through
:func:`digitnet.experiment.run` (seed 0, light augmentation, Adam, batch 128, cosine decay after a
half-epoch warm-up, one BLAS thread) and prints its validation accuracy after every epoch, its
training seconds and, for the record, its test accuracy. The recipe was chosen on validation::

    python benchmarks/cnn_recipes.py                    # every trial of BENCHMARKS.md (about 30 min)
    python benchmarks/cnn_recipes.py --trials 20/40-bn-3ep-1.2e-2 --seed 1

Prints a Markdown table; ``--out`` writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from digitnet.data import load_dataset
from digitnet.experiment import ExperimentConfig, run
from digitnet.nn import architectures
from digitnet.nn.architectures import build_cnn

#: name -> (build_cnn settings, augmentation, epochs, peak learning rate)
TRIALS: dict[str, tuple[dict[str, Any], str, int, float]] = {
    "16/32-5ep-3e-3": ({"channels": (16, 32), "batch_norm": False}, "light", 5, 3e-3),
    "16/32-5ep-3e-3-no-augmentation": ({"channels": (16, 32), "batch_norm": False}, "none", 5, 3e-3),
    "20/40-5ep-3e-3": ({"batch_norm": False}, "light", 5, 3e-3),
    "20/40-bn-5ep-3e-3": ({}, "light", 5, 3e-3),
    "20/40-bn-3ep-3e-3": ({}, "light", 3, 3e-3),
    "16/32-bn-4ep-3e-3": ({"channels": (16, 32)}, "light", 4, 3e-3),
    "20/40-bn-4ep-6e-3": ({}, "light", 4, 6e-3),
    "20/40-bn-3ep-8e-3": ({}, "light", 3, 8e-3),
    # Three epochs are what fits in a minute on two cores (issue 12): the rate for them.
    "20/40-bn-3ep-6e-3": ({}, "light", 3, 6e-3),
    "20/40-bn-3ep-1.2e-2": ({}, "light", 3, 1.2e-2),
}


def run_trial(name: str, seed: int, data) -> dict[str, Any]:
    settings, augment, epochs, lr = TRIALS[name]
    model = f"trial-{name}"
    # A variant is registered as an architecture for the run: experiment.run builds it by name.
    architectures.ARCHITECTURES[model] = lambda hidden, **kwargs: build_cnn(hidden, **kwargs, **settings)
    recipe = {"epochs": epochs, "batch_size": 128, "optimizer": "adam", "lr": lr}
    recipe |= {"schedule": "cosine", "warmup_epochs": 0.5}
    result = run(ExperimentConfig(model=model, augment=augment, seed=seed, threads=1, recipe=recipe), data)
    history = result.history.to_list()
    return {
        "trial": name,
        "seed": seed,
        "validation": [round(record["val_accuracy"], 4) for record in history],
        "train_seconds": round(result.history.train_seconds, 1),
        "test": result.test_accuracy(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", nargs="+", choices=sorted(TRIALS), default=list(TRIALS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    data = load_dataset("mnist")
    rows = []
    print("| trial | validation after each epoch | final validation | test | training s |")
    print("|---|---|---:|---:|---:|")
    for name in args.trials:
        row = run_trial(name, args.seed, data)
        rows.append(row)
        history = " / ".join(f"{v:.2%}" for v in row["validation"])
        print(f"| {name} | {history} | {row['validation'][-1]:.2%} | {row['test']:.2%} | {row['train_seconds']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
