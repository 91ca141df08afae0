"""Optimisers and schedules against hand-computed updates (PyTorch cross-checks: test_torch_crosscheck.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitnet.optim import SGD, Adam, constant, cosine, make_optimizer, make_schedule, step_decay


def pair(value, grad):
    return np.array(value, dtype=np.float64), np.array(grad, dtype=np.float64)


def test_plain_sgd_steps_against_the_gradient():
    p, g = pair([1.0, -2.0], [0.5, -1.0])
    SGD([(p, g)], lr=0.1).step()
    np.testing.assert_allclose(p, [0.95, -1.9])


def test_momentum_accumulates_velocity():
    p, g = pair([0.0], [1.0])
    opt = SGD([(p, g)], lr=0.1, momentum=0.9)
    opt.step()  # v = 1        p = -0.1
    opt.step()  # v = 1.9      p = -0.29
    np.testing.assert_allclose(p, [-0.29])


def test_nesterov_looks_ahead():
    p, g = pair([0.0], [1.0])
    opt = SGD([(p, g)], lr=0.1, momentum=0.9, nesterov=True)
    opt.step()  # v = 1, step g + 0.9 v = 1.9
    opt.step()  # v = 1.9, step 1 + 1.71 = 2.71
    np.testing.assert_allclose(p, [-0.19 - 0.271])


def test_weight_decay_adds_l2_gradient():
    p, g = pair([2.0], [1.0])
    SGD([(p, g)], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(p, [2.0 - 0.1 * (1.0 + 0.5 * 2.0)])


def test_nesterov_with_weight_decay_matches_its_formula_over_several_steps():
    p, g = pair([1.0], [1.0])
    opt = SGD([(p, g)], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.5)
    value, velocity = 1.0, 0.0
    for _ in range(3):
        grad = 1.0 + 0.5 * value
        velocity = 0.9 * velocity + grad
        value -= 0.1 * (grad + 0.9 * velocity)
        opt.step()
        np.testing.assert_allclose(p, [value], rtol=1e-12)


def test_adam_first_step_has_size_lr_whatever_the_gradient_scale():
    p, g = pair([0.0, 0.0], [1e-3, -50.0])
    Adam([(p, g)], lr=0.01).step()
    np.testing.assert_allclose(p, [-0.01, 0.01], rtol=1e-4)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_adam_matches_its_formula_over_several_steps(weight_decay):
    p, g = pair([1.0], [0.0])
    opt = Adam([(p, g)], lr=0.1, betas=(0.8, 0.9), eps=1e-8, weight_decay=weight_decay)
    m = s = 0.0
    value = 1.0
    for t in range(1, 4):
        g[:] = 2 * p  # gradient of p^2
        grad = 2 * value + weight_decay * value
        m, s = 0.8 * m + 0.2 * grad, 0.9 * s + 0.1 * grad * grad
        value -= 0.1 * (m / (1 - 0.8**t)) / (math.sqrt(s / (1 - 0.9**t)) + 1e-8)
        opt.step()
        np.testing.assert_allclose(p, [value], rtol=1e-12)


def test_make_optimizer_knows_every_name_and_rejects_others():
    p, g = pair([0.0], [0.0])
    assert isinstance(make_optimizer("adam", [(p, g)], 0.1), Adam)
    assert make_optimizer("nesterov", [(p, g)], 0.1).nesterov
    assert make_optimizer("momentum", [(p, g)], 0.1, momentum=0.8).momentum == 0.8
    assert make_optimizer("sgd", [(p, g)], 0.1).momentum == 0
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("rmsprop", [(p, g)], 0.1)


def test_schedules_follow_their_shapes():
    assert constant(0.3)(1000) == 0.3
    decay = step_decay(1.0, step_size=10, gamma=0.5)
    assert [decay(s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    curve = cosine(1.0, total_steps=110, warmup_steps=10)
    assert curve(0) == pytest.approx(0.1) and curve(9) == pytest.approx(1.0)
    assert curve(60) == pytest.approx(0.5) and curve(110) == pytest.approx(0.0, abs=1e-12)
    assert all(curve(s) >= curve(s + 1) for s in range(10, 110))


def test_make_schedule_step_counts_in_epochs():
    schedule = make_schedule("step", 1.0, 100, steps_per_epoch=10, step_epochs=2, gamma=0.1)
    assert schedule(19) == 1.0 and schedule(20) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("linear", 1.0, 100, steps_per_epoch=10)


@pytest.mark.parametrize(
    "make",
    [lambda pairs: Adam(pairs, lr=1e-3), lambda pairs: SGD(pairs, lr=1e-3, momentum=0.9)],
    ids=["adam", "momentum"],
)
def test_running_averages_of_a_gradient_that_stopped_reach_zero_not_a_subnormal(make):
    """A gradient that becomes exactly zero (a unit that no longer fires) lets the running average
    decay into float32's subnormal range, where rounding would stop it a few units above zero and
    slow every later step on Intel processors; it must become zero instead, within Adam's
    FLUSH_EVERY steps (momentum: at once), the live values untouched."""
    p = np.zeros(2, dtype=np.float32)
    g = np.array([1.0, 1.0], dtype=np.float32)
    opt = make([(p, g)])
    opt.step()
    g[0] = 0.0  # the first parameter's gradient stops; the second keeps its gradient
    average = opt.m[0] if isinstance(opt, Adam) else opt.velocity[0]
    allowed = Adam.FLUSH_EVERY if isinstance(opt, Adam) else 1
    tiny = np.finfo(np.float32).tiny
    subnormal_for = 0  # steps in a row
    for _ in range(1_500):  # 0.9 ** 1,500 is far below float32's smallest subnormal (1.4e-45)
        opt.step()
        subnormal_for = subnormal_for + 1 if 0 < abs(average[0]) < tiny else 0
        assert subnormal_for < allowed
    assert average[0] == 0.0
    assert average[1] >= tiny


OPTIMISERS = {
    "adam": lambda pairs: Adam(pairs, lr=1e-2, weight_decay=1e-3),
    "nesterov": lambda pairs: SGD(pairs, lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "momentum": lambda pairs: SGD(pairs, lr=1e-2, momentum=0.9),
    "sgd": lambda pairs: SGD(pairs, lr=1e-2),
}


@pytest.mark.parametrize("name", OPTIMISERS)
def test_parameters_updated_together_take_the_same_steps_as_each_alone(name):
    """One optimiser over four parameters (its averages one flat array, a piece for each) moves
    every parameter exactly as an optimiser over that parameter alone; state() names each
    parameter's arrays, and a fresh optimiser given them takes the same next step."""
    rng = np.random.default_rng(0)
    shapes = [(7, 5), (5,), (5, 3), (3,)]
    together = [(rng.standard_normal(shape).astype(np.float32), np.zeros(shape, np.float32)) for shape in shapes]
    alone = [(p.copy(), g.copy()) for p, g in together]
    joint, singles = OPTIMISERS[name](together), [OPTIMISERS[name]([pair]) for pair in alone]
    for _ in range(20):  # past Adam's first flush of subnormals
        for (_, g_together), (_, g_alone) in zip(together, alone):
            g_together[...] = g_alone[...] = rng.standard_normal(g_alone.shape)
        joint.step()
        for single in singles:
            single.step()
    for (p_together, _), (p_alone, _) in zip(together, alone):
        np.testing.assert_array_equal(p_together, p_alone)
    state = joint.state()
    for i, single in enumerate(singles):
        for key, value in single.state().items():
            # The single optimiser's only parameter is "0" (m0, velocity0); in the joint one it is i.
            expected = state[key] if key == "t" else state[key.removesuffix("0") + str(i)]
            np.testing.assert_array_equal(expected, value)
    # A fresh optimiser given that state takes the same next step as the one it came from.
    before = [p.copy() for p, _ in together]
    joint.step()
    after = [p.copy() for p, _ in together]
    for (p, _), value in zip(together, before):
        p[...] = value
    fresh = OPTIMISERS[name](together)
    fresh.load_state(state)
    fresh.step()
    for (p, _), value in zip(together, after):
        np.testing.assert_array_equal(p, value)


def test_a_resumed_adam_flushes_subnormals_on_the_same_steps_as_the_run_it_continues():
    tiny = np.finfo(np.float32).tiny
    p = np.zeros(2, dtype=np.float32)
    g = np.array([1.0, 1.0], dtype=np.float32)
    opt = Adam([(p, g)], lr=1e-3)
    opt.step()
    g[0] = 0.0
    # Until the stopped gradient's average is subnormal with a flush still two or more steps away.
    for _ in range(5_000):
        if 0 < abs(opt.m[0][0]) < tiny and opt.t % Adam.FLUSH_EVERY < Adam.FLUSH_EVERY - 2:
            break
        opt.step()
    else:
        pytest.fail("the first moment never stayed subnormal long enough to resume before its flush")
    p_resumed = p.copy()
    resumed = Adam([(p_resumed, g)], lr=1e-3)
    resumed.load_state(opt.state())
    for _ in range(Adam.FLUSH_EVERY):
        opt.step()
        resumed.step()
        np.testing.assert_array_equal(resumed.m[0], opt.m[0])
        np.testing.assert_array_equal(p_resumed, p)
    assert opt.m[0][0] == 0.0
