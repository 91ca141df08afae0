#!/usr/bin/env python
"""Validation accuracy of the seed network's recipe at other batch sizes, rates and epoch counts.

Each setting trains 784-128-10 through :func:`digitnet.experiment.run`, as ``digitnet train`` does
(so the same split, random draws, normalisation, initialisation and schedule per seed), and prints
one JSON line per seed with the validation accuracy after every epoch. The test set is never
touched::

    python benchmarks/batch_sweep.py 128:3e-3:8 256:6e-3:10 512:6e-3:12

BLAS runs on one thread unless ``--threads`` says otherwise: the sweep is about accuracy, and one
thread per run keeps a busy machine from slowing it down. The thread count changes the order of
floating-point sums inside the matrix products, so the last digits differ from a ``digitnet
train`` run with more threads (``--threads 2`` on a 2-core machine matches it).
"""

from __future__ import annotations

import argparse
import json
import statistics

from digitnet.data import load_dataset
from digitnet.experiment import ExperimentConfig, run


def setting(text: str) -> tuple[int, float, int]:
    """``BATCH:RATE:EPOCHS`` -> (batch size, peak learning rate, epochs)."""
    try:
        batch, rate, epochs = text.split(":")
        return int(batch), float(rate), int(epochs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BATCH:RATE:EPOCHS such as 256:6e-3:10, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="+", type=setting, metavar="BATCH:RATE:EPOCHS")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per setting [3]")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads [1]")
    args = parser.parse_args()

    data = load_dataset("mnist")
    for batch, rate, epochs in args.settings:
        finals = []
        for seed in range(args.seeds):
            config = ExperimentConfig(
                seed=seed, threads=args.threads, recipe={"batch_size": batch, "lr": rate, "epochs": epochs}
            )
            validation = [record.val_accuracy for record in run(config, data).history.epochs]
            finals.append(validation[-1])
            print(
                json.dumps(
                    {
                        "batch_size": batch,
                        "lr": rate,
                        "epochs": epochs,
                        "seed": seed,
                        "val_accuracy": validation[-1],
                        "val_per_epoch": validation,
                    }
                ),
                flush=True,
            )
        print(
            json.dumps(
                {"batch_size": batch, "lr": rate, "epochs": epochs, "mean_val_accuracy": statistics.mean(finals)}
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
