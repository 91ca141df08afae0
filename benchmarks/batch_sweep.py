#!/usr/bin/env python
"""Validation accuracy of the seed network's recipe at other batch sizes, rates and epoch counts.

Each setting trains 784-128-10 the way ``digitnet train`` does (the same 55,000 / 5,000 split of
the training set per seed, the same random draws in the same order, normalisation, initialisation
and cosine schedule) and prints one JSON line per seed with the validation accuracy after every
epoch. The test set is never touched::

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

import numpy as np
from threadpoolctl import threadpool_limits

from digitnet.data import load_dataset
from digitnet.nn.architectures import build_network
from digitnet.recipes import default_config
from digitnet.train import pixel_statistics, split_validation, train


def setting(text: str) -> tuple[int, float, int]:
    """``BATCH:RATE:EPOCHS`` -> (batch size, peak learning rate, epochs)."""
    try:
        batch, rate, epochs = text.split(":")
        return int(batch), float(rate), int(epochs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BATCH:RATE:EPOCHS such as 256:6e-3:10, got {text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="+", type=setting, metavar="BATCH:RATE:EPOCHS")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per setting [3]")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads [1]")
    args = parser.parse_args()

    data = load_dataset("mnist")
    for batch, rate, epochs in args.settings:
        config = default_config()
        config.batch_size, config.lr, config.epochs = batch, rate, epochs
        finals = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)  # the same draws, in the same order, as digitnet train
            train_index, val_index = split_validation(len(data.train_labels), len(data.train_labels) // 12, rng)
            mean, std = pixel_statistics(data.train_images[train_index])
            network = build_network("mlp", hidden=(128,), input_shape=(1, *data.image_shape),
                                    num_classes=data.num_classes, rng=rng, dtype=np.dtype("float32"),
                                    mean=mean, std=std)
            labels = data.train_labels.astype(np.int64)
            with threadpool_limits(args.threads):
                history = train(network, network.prepare(data.train_images[train_index]),
                                labels[train_index], config, rng,
                                x_val=network.prepare(data.train_images[val_index]), y_val=labels[val_index])
            validation = [record.val_accuracy for record in history.epochs]
            finals.append(validation[-1])
            print(json.dumps({"batch_size": batch, "lr": rate, "epochs": epochs, "seed": seed,
                              "val_accuracy": validation[-1], "val_per_epoch": validation}), flush=True)
        print(json.dumps({"batch_size": batch, "lr": rate, "epochs": epochs,
                          "mean_val_accuracy": statistics.mean(finals)}), flush=True)


if __name__ == "__main__":
    main()
