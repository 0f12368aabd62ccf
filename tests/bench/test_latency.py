"""Latency statistics, the warm-up/count/budget loop and the peak-memory sampler."""
from __future__ import annotations

import numpy as np
import pytest

from vpdsr.bench.latency import LatencyConfig, PeakMemory, measure, summarize
from vpdsr.errors import ConfigError


def test_summarize_known_samples():
    samples = [i / 1000.0 for i in range(1, 101)]  # 1..100 ms
    stats = summarize(samples, images_per_call=2)
    assert stats.n == 100
    # numpy's linear interpolation: position q/100 * (n - 1) between sorted samples
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(100.0)
    assert stats.throughput_ips == pytest.approx(2 * 1000.0 / 50.5)
    assert stats.latency_dict()["p99"] == stats.p99_ms


def test_summarize_single_and_unordered_samples():
    stats = summarize([0.030, 0.010, 0.020])
    assert (stats.p50_ms, stats.mean_ms) == (pytest.approx(20.0), pytest.approx(20.0))
    assert summarize([0.004]).p99_ms == pytest.approx(4.0)
    with pytest.raises(ConfigError):
        summarize([])


def test_measure_runs_warmup_then_the_count():
    calls, progress = [], []
    samples = measure(lambda: calls.append(1), LatencyConfig(warmup=3, iters=5), lambda d, p: progress.append((d, p)))
    assert len(calls) == 8 and len(samples) == 5
    assert progress[-1] == (8, 8) and progress[2] == (3, 8)
    assert all(s >= 0 for s in samples)


class Clock:
    """Seconds that pass only when a call says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_measure_stops_at_the_time_budget():
    clock = Clock()

    def call():
        clock.now += 0.03

    samples = measure(call, LatencyConfig(warmup=2, iters=100, budget_s=0.07), clock=clock)
    assert samples == pytest.approx([0.03, 0.03, 0.03])  # 0.09 s crosses the budget: the third call is the last
    assert clock.now == pytest.approx(0.15)  # the warm-up calls ran, untimed


def test_measure_times_each_call_on_its_clock():
    clock, costs = Clock(), iter([0.5, 0.01, 0.02, 0.04])

    def call():
        clock.now += next(costs)

    assert measure(call, LatencyConfig(warmup=1, iters=3), clock=clock) == pytest.approx([0.01, 0.02, 0.04])


@pytest.mark.parametrize("kwargs", [{"warmup": -1}, {"iters": 0}, {"budget_s": 0}, {"threads": 0}])
def test_latency_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        LatencyConfig(**kwargs)


def test_peak_memory_sees_an_allocation():
    with PeakMemory(interval_s=0.001) as mem:
        block = np.ones(96 * 1024 * 1024 // 8)  # 96 MiB, touched
        mem.sample_now()
        del block
    assert 80 <= mem.peak_mb < 400
    with PeakMemory() as idle:
        pass
    assert idle.peak_mb < 40
