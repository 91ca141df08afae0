"""Optimisers and learning-rate schedules.

An optimiser holds a list of ``(parameter, gradient)`` array pairs (the arrays of
:meth:`digitnet.nn.Network.parameters`) and updates the parameters in place on each ``step``. The
update rules follow the usual definitions (and PyTorch's, which the tests check step by step):

* SGD:       ``p -= lr * g``
* momentum:  ``v = mu * v + g``;  ``p -= lr * v``  (Nesterov: ``p -= lr * (g + mu * v)``)
* Adam:      ``m = b1 m + (1-b1) g``;  ``s = b2 s + (1-b2) g^2``;
             ``p -= lr * m_hat / (sqrt(s_hat) + eps)`` with bias-corrected ``m_hat``, ``s_hat``

L2 weight decay adds ``weight_decay * p`` to every gradient first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

ParamPairs = Sequence[tuple[np.ndarray, np.ndarray]]


def flush_subnormals(values: np.ndarray, work: np.ndarray) -> None:
    """Set to zero, in place, the values too small for the float type's normal range.

    Why: a running average whose gradient is exactly zero (the weights of a ReLU unit that no
    longer fires, for instance) decays by its momentum factor at every step until it reaches the
    subnormal range, where rounding stops it a few units above zero for good (``0.9 * 6e-45`` rounds
    back to ``6e-45`` in float32). Intel processors take a slow path for every arithmetic operation
    on such values: the default MLP's epochs took 1.8x as long from the third epoch on (11,130 stuck
    values of 101,770, AVX-512 host, BENCHMARKS.md issue 12). The updates they give are far below
    the rounding of any weight they would be added to, so zero changes nothing.

    Adam's second moment is left alone: it decays by 0.999 a step, so it needs about 70,000 steps
    without gradient to fall from 1e-8 into the subnormal range, eight times the longest recipe.

    Three passes and no temporaries: a 0-or-1 factor per value, then one multiplication (cheaper
    than a boolean mask and ``np.copyto(where=)``). A negative subnormal becomes ``-0.0``.
    """
    np.abs(values, out=work)
    np.greater_equal(work, np.finfo(values.dtype).tiny, out=work)  # 1.0 where normal, else 0.0
    values *= work


def subtract_update(param: np.ndarray, update: np.ndarray) -> None:
    """``param -= update``, computed into ``update`` (overwritten) and then copied into ``param``.

    Why not in place: after a product on several BLAS threads has read the parameters, an in-place
    read-modify-write of them is slow (most likely because every core's cache holds their lines,
    and each must be taken back before it is written). For the MLP's 101,770 values after a
    two-thread product: 0.13 ms in place, 0.04 ms this way; 0.01 ms slower with one thread (Intel
    AVX-512 host, BENCHMARKS.md issue 12). The numbers are the same either way.
    """
    np.subtract(param, update, out=update)
    np.copyto(param, update)


class Optimizer:
    """Base class: keeps the parameter pairs, the learning rate and the weight decay.

    The optimiser's own arrays (the running averages, the scratch space) are flat: one array as long
    as all parameters together, with a view of its piece for each parameter. Every pass of an update
    over them is one NumPy call, however many arrays the network has. Why: an update makes a dozen
    whole-array passes (Adam: the two averages, the square root, the division, ...), and one call per
    array made the MLP's 128 and 10 biases cost as many calls as its 100,352 first-layer weights.
    Only reading the gradients and writing the new parameters go array by array; the network's
    arrays stay its own (BENCHMARKS.md, issue 12).
    """

    def __init__(self, params: ParamPairs, lr: float, weight_decay: float = 0.0) -> None:
        self.params = [(p, g) for p, g in params]
        for p, g in self.params:
            if p.shape != g.shape:
                raise ValueError(f"a parameter of shape {p.shape} has a gradient of shape {g.shape}")
        dtypes = sorted({str(p.dtype) for p, _ in self.params})
        if len(dtypes) > 1:
            raise ValueError(f"the parameters must share one dtype, not {' and '.join(dtypes)}")
        self.lr = lr
        self.weight_decay = weight_decay
        # Scratch space, reused every step so that an update allocates nothing (the decayed
        # gradients' too, so that a weight decay set later still has its arrays).
        self.work, self._work_pieces = self._flat_zeros()
        self._decayed = self._flat_zeros()[1]

    def _flat_zeros(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """A zeroed flat array for all parameters, and the view of its piece for each, shaped like it."""
        dtype = self.params[0][0].dtype if self.params else np.float32
        flat = np.zeros(sum(p.size for p, _ in self.params), dtype=dtype)
        pieces, offset = [], 0
        for p, _ in self.params:
            pieces.append(flat[offset : offset + p.size].reshape(p.shape))
            offset += p.size
        return flat, pieces

    def gradients(self) -> list[np.ndarray]:
        """Each parameter's gradient, with L2 weight decay folded in when there is any (then into
        arrays of the optimiser's, overwritten at the next call). Read array by array where a pass
        needs them: copying them into one flat array first would cost a pass more."""
        if not self.weight_decay:
            return [grad for _, grad in self.params]
        for (param, grad), decayed in zip(self.params, self._decayed, strict=True):
            np.multiply(param, self.weight_decay, out=decayed)
            decayed += grad
        return self._decayed

    def work_from(self, ufunc: np.ufunc, arrays: list[np.ndarray], other: list[np.ndarray] | float) -> np.ndarray:
        """``self.work`` filled piece by piece with ``ufunc(arrays[i], other[i])`` (or ``other``
        itself, a number), and returned."""
        others = other if isinstance(other, Sequence) else [other] * len(arrays)
        for array, second, piece in zip(arrays, others, self._work_pieces, strict=True):
            ufunc(array, second, out=piece)
        return self.work

    def apply_update(self) -> None:
        """Subtract ``self.work`` (the update, overwritten) from the parameters, one by one."""
        for (param, _), update in zip(self.params, self._work_pieces, strict=True):
            subtract_update(param, update)

    def step(self) -> None:
        """Update every parameter in place from its current gradient."""
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the arrays (and step count) the next updates depend on, by name; with
        :meth:`load_state` they let training continue exactly where it stopped."""
        return {}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned (same names and shapes, checked by the caller)."""


class SGD(Optimizer):
    """Mini-batch gradient descent, optionally with (Nesterov) momentum.

    Parameters
    ----------
    params : sequence of (parameter, gradient)
    lr : float
        Learning rate.
    momentum : float, optional
        0 gives the seed's plain gradient descent.
    nesterov : bool, optional
        Look-ahead momentum.
    weight_decay : float, optional
        L2 penalty coefficient.
    """

    def __init__(
        self, params: ParamPairs, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params, lr, weight_decay)
        if nesterov and not momentum:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov
        # Flat for the step, a view per parameter for state(): the same memory.
        self.velocity_flat, self.velocity = self._flat_zeros()

    def step(self) -> None:
        grads = self.gradients()
        if not self.momentum:
            self.work_from(np.multiply, grads, self.lr)
            self.apply_update()
            return
        self.velocity_flat *= self.momentum
        for velocity, grad in zip(self.velocity, grads, strict=True):
            velocity += grad
        flush_subnormals(self.velocity_flat, self.work)
        if self.nesterov:  # g + mu * v
            direction = np.multiply(self.velocity_flat, self.momentum, out=self.work)
            for piece, grad in zip(self._work_pieces, grads, strict=True):
                piece += grad
        else:
            direction = self.velocity_flat
        np.multiply(direction, self.lr, out=self.work)
        self.apply_update()

    def state(self) -> dict[str, np.ndarray]:
        return {f"velocity{i}": v.copy() for i, v in enumerate(self.velocity)} if self.momentum else {}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        if self.momentum:
            for i, velocity in enumerate(self.velocity):
                velocity[...] = arrays[f"velocity{i}"]


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): per-parameter steps scaled by running gradient moments."""

    #: Steps between two :func:`flush_subnormals` of the first moment: a value that decays past
    #: float32's normal range stays subnormal for at most ``FLUSH_EVERY - 1`` steps, and the
    #: flush's three passes, about a sixth of the MLP's update, are paid once in eight. Counted by
    #: the step number, which checkpoints keep, so a resumed run flushes on the same steps.
    FLUSH_EVERY = 8

    def __init__(
        self,
        params: ParamPairs,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.t = 0
        # Flat for the step, a view per parameter for state(): the same memory.
        self.m_flat, self.m = self._flat_zeros()
        self.s_flat, self.s = self._flat_zeros()

    def step(self) -> None:
        self.t += 1
        # Bias corrections undo the zero start of the running averages.
        correction1 = 1 - self.beta1**self.t
        correction2 = 1 - self.beta2**self.t
        # lr / c1 * m / (sqrt(s / c2) + eps) is the same as step_size * m / (sqrt(s) + eps_hat)
        # with the two constants below: two whole-array passes fewer.
        step_size = self.lr * math.sqrt(correction2) / correction1
        eps_hat = self.eps * math.sqrt(correction2)
        grads, m, s, work = self.gradients(), self.m_flat, self.s_flat, self.work
        # m = b1 m + (1 - b1) g
        m *= self.beta1
        m += self.work_from(np.multiply, grads, 1 - self.beta1)
        if self.t % self.FLUSH_EVERY == 0:
            flush_subnormals(m, work)
        # s = b2 s + (1 - b2) g^2
        s *= self.beta2
        square = self.work_from(np.multiply, grads, grads)
        square *= 1 - self.beta2
        s += square
        # p -= step_size * m / (sqrt(s) + eps_hat)
        update = np.sqrt(s, out=work)
        update += eps_hat
        np.divide(m, update, out=update)
        update *= step_size
        self.apply_update()

    def state(self) -> dict[str, np.ndarray]:
        moments = {f"m{i}": m.copy() for i, m in enumerate(self.m)} | {f"s{i}": s.copy() for i, s in enumerate(self.s)}
        return {"t": np.array(self.t, dtype=np.int64), **moments}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.t = int(arrays["t"])
        for i, (m, s) in enumerate(zip(self.m, self.s)):
            m[...], s[...] = arrays[f"m{i}"], arrays[f"s{i}"]


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def make_optimizer(
    name: str, params: ParamPairs, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0
) -> Optimizer:
    """Build an optimiser by name: ``sgd``, ``momentum``, ``nesterov`` or ``adam``."""
    if name == "sgd":
        return SGD(params, lr, weight_decay=weight_decay)
    if name == "momentum":
        return SGD(params, lr, momentum=momentum, weight_decay=weight_decay)
    if name == "nesterov":
        return SGD(params, lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


# -- learning-rate schedules --------------------------------------------------------------------
# A schedule maps the step number (0-based, counted over the whole run) to a learning rate.

Schedule = Callable[[int], float]
SCHEDULES = ("constant", "step", "cosine")


def constant(lr: float) -> Schedule:
    """The same learning rate at every step."""
    return lambda step: lr


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """Multiply the rate by ``gamma`` every ``step_size`` steps."""
    return lambda step: lr * gamma ** (step // step_size)


def cosine(lr: float, total_steps: int, warmup_steps: int = 0, final_lr: float = 0.0) -> Schedule:
    """Linear warm-up to ``lr``, then a half cosine down to ``final_lr`` at ``total_steps``.

    Warm-up lets a large rate start safely; the slow cosine tail anneals into a good minimum.
    """

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_lr + (lr - final_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    return schedule


def make_schedule(
    name: str,
    lr: float,
    total_steps: int,
    *,
    steps_per_epoch: int,
    warmup_steps: int = 0,
    step_epochs: int = 3,
    gamma: float = 0.1,
) -> Schedule:
    """Build a schedule by name: ``constant``, ``step`` (every ``step_epochs`` epochs) or ``cosine``."""
    if name == "constant":
        return constant(lr)
    if name == "step":
        return step_decay(lr, step_epochs * steps_per_epoch, gamma)
    if name == "cosine":
        return cosine(lr, total_steps, warmup_steps)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
