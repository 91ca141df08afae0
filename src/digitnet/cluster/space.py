"""The search space of a sweep, declared in a small TOML file and checked before anything starts.

::

    # sweep.toml
    dataset = "mnist"
    search = "random"          # random, grid or optuna
    trials = 16                # samples to draw [16]; grid: repeats of the whole grid [1]

    [space]
    model = "mlp"                                  # a fixed value
    lr = { loguniform = [1e-4, 1e-2] }             # a range
    batch_size = { choice = [64, 128, 256] }       # a list to choose from
    epochs = { randint = [4, 12] }                 # whole numbers, both ends included
    hidden = { choice = ["128", "256,128"] }
    augment = { choice = ["none", "light"] }

Every key is checked by pydantic with unknown keys forbidden, so a typo (``lerning_rate``) or an
impossible range (``loguniform = [0, 1]``) is reported in one sentence naming the key.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..augment import STRENGTHS
from ..errors import DigitnetError
from ..nn.architectures import ARCHITECTURES
from ..optim import OPTIMIZERS, SCHEDULES
from ..schema import first_problem

MAX_HIDDEN_UNITS = 65_536


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dist(_Strict):
    """One hyperparameter: a fixed ``value``, a ``choice`` list, or a range (both ends included)."""

    value: Any = None
    choice: list[Any] | None = Field(default=None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_a_value(cls, data: Any) -> Any:
        return data if isinstance(data, dict) else {"value": data}

    @model_validator(mode="after")
    def _one_kind(self) -> Dist:
        given = [
            name for name in ("value", "choice", "uniform", "loguniform", "randint") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of value, choice, uniform, loguniform or randint, not {given or 'none'}"
            )
        low_high = self.uniform or self.loguniform or self.randint
        if low_high is not None and not low_high[0] < low_high[1]:
            raise ValueError(f"the range {list(low_high)} is empty: the low end must be below the high end")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"a loguniform range must be above 0, not start at {self.loguniform[0]:g}")
        return self

    @property
    def kind(self) -> str:
        """Which form this dimension takes: ``value``, ``choice``, ``uniform``, ``loguniform`` or ``randint``."""
        return next(
            name for name in ("value", "choice", "uniform", "loguniform", "randint") if getattr(self, name) is not None
        )

    def candidates(self) -> list[Any]:
        """Every value the sweep could try that can be checked up front (range ends included)."""
        if self.value is not None:
            return [self.value]
        return list(self.choice or self.uniform or self.loguniform or self.randint or ())

    def to_tune(self, grid: bool) -> Any:
        """The Ray Tune search-space object (Ray is imported here, not at module import)."""
        from ray import tune

        if self.value is not None:
            return self.value
        if self.choice is not None:
            return tune.grid_search(self.choice) if grid else tune.choice(self.choice)
        if self.uniform is not None:
            return tune.uniform(*self.uniform)
        if self.loguniform is not None:
            return tune.loguniform(*self.loguniform)
        assert self.randint is not None
        return tune.randint(self.randint[0], self.randint[1] + 1)  # Tune's upper end is exclusive


def _check(name: str, dist: Dist, rule, what: str, *, ranges: tuple[str, ...] = ()) -> Dist:
    if dist.kind in ("uniform", "loguniform", "randint") and dist.kind not in ranges:
        allowed = ", ".join(("value", "choice", *ranges))
        raise ValueError(f"{name} cannot be a {dist.kind} range; give one of {allowed}")
    for candidate in dist.candidates():
        if not rule(candidate):
            raise ValueError(f"{candidate!r} is not {what}")
    return dist


def _number(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    def rule(x: Any) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            return False
        return (x > low if low_open else x >= low) and (x < high if high_open else x <= high)

    return rule


def _whole(low: int, high: int):
    return lambda x: isinstance(x, int) and not isinstance(x, bool) and low <= x <= high


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"256,128"`` -> ``(256, 128)``; ``""`` is no hidden layer."""
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if any(not 1 <= size <= MAX_HIDDEN_UNITS for size in sizes):
        raise ValueError(text)
    return sizes


def _hidden_rule(x: Any) -> bool:
    try:
        parse_hidden(x)
    except (ValueError, AttributeError):
        return False
    return True


class Space(_Strict):
    """The hyperparameters a sweep varies; those left out take the model's recipe."""

    model: Dist = Dist(value="mlp")
    hidden: Dist = Dist(value="128")
    augment: Dist = Dist(value="none")
    lr: Dist | None = None
    batch_size: Dist | None = None
    epochs: Dist | None = None
    optimizer: Dist | None = None
    schedule: Dist | None = None
    weight_decay: Dist | None = None
    label_smoothing: Dist | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, d: Dist) -> Dist:
        return _check("model", d, lambda x: x in ARCHITECTURES, f"a model ({', '.join(ARCHITECTURES)})")

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, d: Dist) -> Dist:
        return _check("hidden", d, _hidden_rule, 'a list of layer sizes such as "256,128"')

    @field_validator("augment")
    @classmethod
    def _augment(cls, d: Dist) -> Dist:
        return _check("augment", d, lambda x: x in ("none", *STRENGTHS), f"none or one of {', '.join(STRENGTHS)}")

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, d: Dist) -> Dist:
        return _check("optimizer", d, lambda x: x in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, d: Dist) -> Dist:
        return _check("schedule", d, lambda x: x in SCHEDULES, f"one of {', '.join(SCHEDULES)}")

    @field_validator("lr")
    @classmethod
    def _lr(cls, d: Dist) -> Dist:
        rule = _number(0, 10, low_open=True)
        return _check("lr", d, rule, "a learning rate in (0, 10]", ranges=("uniform", "loguniform"))

    @field_validator("weight_decay")
    @classmethod
    def _weight_decay(cls, d: Dist) -> Dist:
        return _check("weight_decay", d, _number(0, 1), "a weight decay in [0, 1]", ranges=("uniform", "loguniform"))

    @field_validator("label_smoothing")
    @classmethod
    def _label_smoothing(cls, d: Dist) -> Dist:
        rule = _number(0, 1, high_open=True)
        return _check("label_smoothing", d, rule, "a label smoothing in [0, 1)", ranges=("uniform",))

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, d: Dist) -> Dist:
        return _check("batch_size", d, _whole(1, 65_536), "a batch size from 1 to 65536", ranges=("randint",))

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, d: Dist) -> Dist:
        return _check("epochs", d, _whole(1, 1000), "a number of epochs from 1 to 1000", ranges=("randint",))

    def given(self) -> dict[str, Dist]:
        """The parameters set in the file (and the three with defaults), by name."""
        return {name: dist for name in type(self).model_fields if (dist := getattr(self, name)) is not None}

    def varied(self) -> list[str]:
        """Names of the parameters that take more than one value."""
        return [name for name, dist in self.given().items() if dist.kind != "value"]

    def max_epochs(self) -> int | None:
        """The most epochs any trial may train (ASHA's horizon); ``None`` if the recipe decides."""
        return None if self.epochs is None else max(int(x) for x in self.epochs.candidates())


class SweepSpec(_Strict):
    """A whole sweep: the search, its budget, early stopping, and the space."""

    dataset: str = "mnist"
    search: Literal["random", "grid", "optuna"] = "random"
    trials: int | None = Field(default=None, ge=1, le=10_000)
    seed: int = Field(default=0, ge=0)
    val_size: int | None = Field(default=None, ge=1)
    early_stopping: bool = True
    grace_epochs: int = Field(default=1, ge=1)
    threads_per_trial: int = Field(default=1, ge=1, le=1024)
    space: Space = Space()

    @property
    def effective_trials(self) -> int:
        """Samples to draw: ``trials``, or 16 (random, optuna) or the whole grid once (grid)."""
        return self.trials if self.trials is not None else (1 if self.search == "grid" else 16)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, name: str) -> str:
        from ..data import DATASETS

        if name not in DATASETS:
            raise ValueError(f"{name!r} is not a dataset ({', '.join(sorted(DATASETS))})")
        return name

    @model_validator(mode="after")
    def _grid_needs_lists(self) -> SweepSpec:
        if self.search == "grid":
            ranged = [name for name, d in self.space.given().items() if d.kind not in ("value", "choice")]
            if ranged:
                kind = self.space.given()[ranged[0]].kind
                raise ValueError(f"grid search needs choice lists, but space.{ranged[0]} is a {kind} range")
        return self


def load_spec(path: str | Path | None, **overrides: Any) -> SweepSpec:
    """The sweep in the TOML file at ``path`` (or the defaults), with ``overrides`` on top.

    Raises
    ------
    DigitnetError
        For a file that cannot be read, is not TOML, or breaks the schema, naming the key.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 takes the backport from the cluster extra
        import tomli as tomllib
    raw: dict[str, Any] = {}
    source = "the sweep options"
    if path is not None:
        source = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise DigitnetError(f"{path}: cannot be read ({error.strerror or error}).") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise DigitnetError(
                f"{path}: not a TOML file ({error}); see `digitnet sweep --help` for an example."
            ) from None
    space = raw.get("space", {})
    if isinstance(space, dict):  # anything else is left for the schema to name
        space = {**space, **overrides.pop("space", {})}
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}, "space": space}
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as error:
        raise DigitnetError(f"{source}: {first_problem(error)}; nothing was started.") from None
