"""Default training recipes: the settings ``digitnet train`` uses when no option overrides them.

Each recipe was chosen on the validation split (never the test set); README.md gives the figures.
Augmented data is harder to fit, so augmented recipes train for more epochs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .train import TrainConfig


def _fast_cnn(epochs: int, lr: float = 6e-3) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=128, optimizer="adam", lr=lr, schedule="cosine", warmup_epochs=0.5)


#: (model, augmentation) -> recipe. ``None`` means no augmentation. How each was chosen, and the
#: accuracies it reaches, are in BENCHMARKS.md (one section per `digitnet train` command).
RECIPES: dict[tuple[str, str | None], TrainConfig] = {
    # 784-128-10: Adam with a cosine decay won on validation against Nesterov momentum, other rates,
    # batches and epoch counts; L2 and label smoothing moved validation by less than its noise.
    ("mlp", None): TrainConfig(epochs=8, batch_size=128, optimizer="adam", lr=3e-3, schedule="cosine"),
    # Distorted digits are harder to fit: more epochs (60 scored lower on validation than 40).
    ("mlp", "light"): TrainConfig(epochs=40, batch_size=128, optimizer="adam", lr=3e-3, schedule="cosine"),
    ("mlp", "medium"): TrainConfig(epochs=40, batch_size=128, optimizer="adam", lr=3e-3, schedule="cosine"),
    ("mlp", "strong"): TrainConfig(epochs=40, batch_size=128, optimizer="adam", lr=3e-3, schedule="cosine"),
    # The CNN of digitnet.nn.architectures.build_cnn (unpadded convolutions, batch normalisation).
    # Batch normalisation takes a rate twice the first CNN's and gets there in a few epochs; the
    # warm-up keeps the first steps from overshooting. Chosen on validation: BENCHMARKS.md, issue 12.
    ("cnn", None): _fast_cnn(epochs=4),
    # The default (`--model cnn`): three epochs are what fits in a minute on two cores; among the
    # three-epoch rates, 1.2e-2 scored best on validation (seeds 0 and 1), level with four at 6e-3.
    ("cnn", "light"): _fast_cnn(epochs=3, lr=1.2e-2),
    # Not tuned: stronger distortions take longer to fit, as for the first CNN below.
    ("cnn", "medium"): _fast_cnn(epochs=8),
    ("cnn", "strong"): _fast_cnn(epochs=8),
    # The reader (PRESETS): a 12-epoch trial scored 99.26% on validation against the first CNN's
    # 99.18% in 20 (the shipped seed 0: 99.34%).
    ("cnn", "reader"): _fast_cnn(epochs=12),
    # digitnet's first CNN ("same" padding, no batch normalisation), on which the 12-CNN ensemble
    # is built; stronger dropout with label smoothing scored lower on validation.
    ("cnn-padded", None): TrainConfig(epochs=12, batch_size=128, optimizer="adam", lr=2e-3, schedule="cosine"),
    ("cnn-padded", "light"): TrainConfig(epochs=12, batch_size=128, optimizer="adam", lr=2e-3, schedule="cosine"),
    # Elastic distortions need longer.
    ("cnn-padded", "medium"): TrainConfig(epochs=20, batch_size=128, optimizer="adam", lr=2e-3, schedule="cosine"),
    ("cnn-padded", "strong"): TrainConfig(epochs=20, batch_size=128, optimizer="adam", lr=2e-3, schedule="cosine"),
    ("mlp", "reader"): TrainConfig(epochs=40, batch_size=128, optimizer="adam", lr=3e-3, schedule="cosine"),
    ("cnn-padded", "reader"): TrainConfig(epochs=20, batch_size=128, optimizer="adam", lr=2e-3, schedule="cosine"),
}

#: Named experiments for ``digitnet train --recipe NAME``: settings of
#: :class:`~digitnet.experiment.ExperimentConfig` that options given next to it still override.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # The model digitnet ships for reading people's digits (``digitnet predict`` without a model):
    # the CNN trained on digits redrawn with other slants, widths, pens and scanners.
    "reader": {"model": "cnn", "augment": "reader"},
}

#: The augmentation each model trains with when ``--augment`` is not given: the CNNs pass 99.3%
#: only with light distortions; the MLP stays the plain textbook run.
DEFAULT_AUGMENT: dict[str, str | None] = {"mlp": None, "cnn": "light", "cnn-padded": "light"}

#: Learning rates that suit each optimiser when only ``--optimizer`` is changed.
DEFAULT_LR = {"adam": 3e-3, "sgd": 0.1, "momentum": 0.05, "nesterov": 0.05}


def default_config(model: str = "mlp", augment: str | None = None) -> TrainConfig:
    """The recipe for ``model`` with ``augment``; falls back to the model's plain recipe."""
    recipe = RECIPES.get((model, augment)) or RECIPES.get((model, None)) or RECIPES[("mlp", None)]
    return replace(recipe)


def resolve_recipe(model: str = "mlp", augment: str | None = None, **overrides: Any) -> TrainConfig:
    """The recipe for ``model`` and ``augment`` with ``overrides`` (``None`` values ignored).

    Changing only the optimiser also changes the learning rate to one that suits it
    (:data:`DEFAULT_LR`): Adam's rate would make plain SGD crawl.
    """
    recipe = default_config(model, augment)
    overrides = {key: value for key, value in overrides.items() if value is not None}
    optimizer = overrides.get("optimizer", recipe.optimizer)
    if "lr" not in overrides and optimizer != recipe.optimizer:
        overrides["lr"] = DEFAULT_LR[optimizer]
    return replace(recipe, **overrides)


def _twelve(model: str, light_recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The README's twelve members: medium-distortion seeds 0-6, light seeds 0-3, plain seed 0;
    ``light_recipe`` (recipe settings) pins the light members' training."""

    def light(seed: int) -> dict[str, Any]:
        member = {"model": model, "augment": "light", "seed": seed}
        return member | ({"recipe": dict(light_recipe)} if light_recipe else {})

    return [
        *({"model": model, "augment": "medium", "seed": seed} for seed in range(7)),
        *(light(seed) for seed in range(4)),
        {"model": model, "augment": "none", "seed": 0},
    ]


#: Named ensembles for ``digitnet ensemble --recipe NAME``: one dict of
#: :class:`~digitnet.experiment.ExperimentConfig` settings per member, each trained with one BLAS
#: thread. ``cnn12`` is the README's 99.6% ensemble of the first CNN (``cnn-padded``; BENCHMARKS.md:
#: 99.63% run by hand, 99.62% as one command); ``cnn12-fast`` is the same twelve on the default
#: CNN: 99.59% in about a quarter of the time, measured with light members of four epochs (the
#: default CNN's recipe before it was fitted to a minute), which it keeps.
ENSEMBLES: dict[str, list[dict[str, Any]]] = {
    "cnn12": _twelve("cnn-padded"),
    "cnn12-fast": _twelve("cnn", light_recipe={"epochs": 4, "lr": 6e-3}),
}
