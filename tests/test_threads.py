"""``--threads auto``: one BLAS thread unless more clearly pay, chosen without touching the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from digitnet import threads as threads_module
from digitnet.cli import main
from digitnet.data import load_dataset
from digitnet.experiment import ExperimentConfig, run
from digitnet.nn import build_mlp
from digitnet.nn.architectures import build_cnn
from digitnet.threads import choose_threads, largest_product, parse_threads, probe_threads


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_auto_and_none_mean_choose_and_numbers_are_kept():
    assert parse_threads("auto") is None and parse_threads(None) is None and parse_threads(" AUTO ") is None
    assert parse_threads(3) == 3 and parse_threads("2") == 2


@pytest.mark.parametrize("value", [0, -1, "0"])
def test_a_thread_count_below_one_is_refused(value):
    with pytest.raises(ValueError, match="positive integer"):
        parse_threads(value)


def test_the_largest_product_of_the_mlp_is_its_first_dense_layer():
    network = build_mlp((128,), rng=np.random.default_rng(0))
    assert largest_product(network, 64) == (64, 784, 128)


def test_the_largest_product_of_the_cnn_is_its_second_convolution():
    network = build_cnn(rng=np.random.default_rng(0))  # 20 -> 40 channels, 5x5, 8x8 output maps
    assert largest_product(network, 10) == (40, 20 * 25, 10 * 8 * 8)


def test_an_explicit_thread_count_is_used_without_probing(monkeypatch):
    monkeypatch.setattr(threads_module, "probe_threads", lambda *a, **k: pytest.fail("probed"))
    assert choose_threads(5, build_mlp((8,), rng=np.random.default_rng(0)), 32) == 5


def test_a_core_kept_busy_by_another_process_is_not_given_a_thread(monkeypatch):
    """Beside one CPU-bound process on two cores, auto takes one thread, whatever a probe would say."""
    monkeypatch.setattr(threads_module, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads_module, "busy_elsewhere", lambda: 1)
    monkeypatch.setattr(threads_module.time, "perf_counter", lambda: pytest.fail("timed"))
    assert choose_threads(None, build_mlp((8,), rng=np.random.default_rng(0)), 32) == 1


def test_idle_cores_are_probed(monkeypatch):
    monkeypatch.setattr(threads_module, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads_module, "busy_elsewhere", lambda: 1)
    probed = []
    monkeypatch.setattr(threads_module, "probe_threads", lambda *a, max_threads, **k: probed.append(max_threads) or 1)
    choose_threads(None, build_mlp((8,), rng=np.random.default_rng(0)), 32)
    assert probed == [3]


def _cpu_ticks(pid: int) -> int:
    """User-mode clock ticks the process has run (``utime`` in ``/proc/PID/stat``)."""
    return int(open(f"/proc/{pid}/stat", encoding="ascii").read().rsplit(")", 1)[1].split()[11])


def test_busy_elsewhere_counts_a_competing_process():
    """A spinning process is runnable in every reading (Linux only: /proc/loadavg)."""
    if not os.path.exists("/proc/loadavg"):
        pytest.skip("no /proc/loadavg on this system")
    spinner = subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"])  # -S: starts at once
    try:
        started = time.monotonic()
        while _cpu_ticks(spinner.pid) < 5 and time.monotonic() - started < 10:
            time.sleep(0.05)  # until it has spun for a few ticks (a loaded machine starts it late)
        assert threads_module.busy_elsewhere() >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_one_usable_core_gives_one_thread_without_timing_anything(monkeypatch):
    monkeypatch.setattr(threads_module.time, "perf_counter", lambda: pytest.fail("timed"))
    assert probe_threads(64, 64, 64, max_threads=1) == 1


@pytest.mark.parametrize(
    ("one_thread_seconds", "expected"), [(1.0, 1), (1.2, 1), (1.5, 2)], ids=["no gain", "small gain", "clear gain"]
)
def test_extra_threads_are_kept_only_when_they_clearly_pay(monkeypatch, one_thread_seconds, expected):
    """Each timed product takes 1 s with two threads; with one it takes ``one_thread_seconds``."""
    clock = {"now": 0.0}
    current = {"threads": 1}

    class FakeLimits:
        def __init__(self, limits, user_api):
            current["threads"] = limits

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_clock():
        clock["now"] += 0.5 * (one_thread_seconds if current["threads"] == 1 else 1.0)
        return clock["now"]

    monkeypatch.setattr(threads_module, "threadpool_limits", FakeLimits)
    monkeypatch.setattr(threads_module.time, "perf_counter", fake_clock)
    assert probe_threads(8, 8, 8, max_threads=2) == expected


def test_the_probe_does_not_change_the_trained_network(digits):
    """auto and the number it chose give the same weights: the probe draws nothing from the run."""
    settings = {"dataset": "digits", "hidden": (16,), "val_size": 100, "recipe": {"epochs": 1, "batch_size": 32}}
    auto = run(ExperimentConfig(threads="auto", **settings), digits)
    fixed = run(ExperimentConfig(threads=auto.threads_used, **settings), digits)
    assert auto.threads_used in (1, threads_module.cpu_count())
    assert auto.network.metadata["training"]["threads"] == auto.threads_used
    for name, value in auto.network.state().items():
        np.testing.assert_array_equal(value, fixed.network.state()[name])


def test_train_reports_the_threads_it_chose(tmp_path):
    result = CliRunner().invoke(
        main,
        ["train", "--dataset", "digits", "--hidden", "16", "--epochs", "1", "--val-size", "100", "--json"]
        + ["--out", str(tmp_path / "m.npz")],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threads"] in (1, threads_module.cpu_count())
