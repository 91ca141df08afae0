#!/usr/bin/env python
"""How close the default CNN gets to 99.0% on part of an epoch (issue 12's time-to-99.0% target).

PyTorch's usual recipe reaches 99.0% test after two epochs; 0.3x of its time would leave digitnet
about 0.58 of an epoch. Each trial trains :func:`digitnet.nn.architectures.build_cnn` (the default
``--model cnn``) for one pass over the first ``--images`` images of the training split (Adam, a
warm-up then cosine decay, no distortions, two threads on shares of each batch) and prints its
validation accuracy, which judges the settings, and its test accuracy, for the record::

    python benchmarks/part_epoch.py                          # the grid of BENCHMARKS.md (~2 min)
    python benchmarks/part_epoch.py --images 27500 --lr 1.2e-2 --warmup 0.2 --batch 128

Prints one JSON line per trial.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from digitnet.data import load_dataset
from digitnet.experiment import ExperimentConfig, build_for, prepare_split, split_validation, validation_size
from digitnet.train import TrainConfig, accuracy_of, train


def trial(data, seed: int, images: int, lr: float, warmup: float, batch: int) -> dict[str, float]:
    config = ExperimentConfig(model="cnn", seed=seed)
    rng = np.random.default_rng(seed)
    train_index, val_index = split_validation(len(data.train_labels), validation_size(config, data), rng)
    network = build_for(config, data, train_index, rng)
    split = prepare_split(network, data, train_index, val_index)
    recipe = TrainConfig(epochs=1, batch_size=batch, optimizer="adam", lr=lr, schedule="cosine", warmup_epochs=warmup)
    with threadpool_limits(1):  # two shares of each batch, one BLAS thread each, as `digitnet train`
        history = train(network, split.x_train[:images], split.y_train[:images], recipe, rng, workers=2)
    test_x, test_labels = network.prepare(data.test_images), data.test_labels.astype(np.int64)
    return {
        "seed": seed,
        "images": images,
        "lr": lr,
        "warmup": warmup,
        "batch": batch,
        "train_seconds": round(history.train_seconds, 2),
        "validation": accuracy_of(network, split.x_val, split.y_val),
        "test": accuracy_of(network, test_x, test_labels),
    }


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` above zero."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above zero, not {text}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=positive(int), nargs="+", default=[33000], help="training images [33000]")
    parser.add_argument("--lr", type=positive(float), nargs="+", default=[6e-3, 1.2e-2])
    parser.add_argument("--warmup", type=float, nargs="+", default=[0.2, 0.5], help="warm-up, fraction of the pass")
    parser.add_argument("--batch", type=positive(int), nargs="+", default=[128])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    if any(not 0 <= warmup <= 1 for warmup in args.warmup):
        parser.error("--warmup is a fraction of the pass, from 0 to 1")
    data = load_dataset("mnist")
    for images, lr, warmup, batch, seed in itertools.product(args.images, args.lr, args.warmup, args.batch, args.seeds):
        print(json.dumps(trial(data, seed, images, lr, warmup, batch)), flush=True)


if __name__ == "__main__":
    main()
