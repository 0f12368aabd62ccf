"""LoadGen drives real systems under test: a deliberately slow backend, one that breaks under concurrency.

The runners here are test engines, not stand-ins for a supported backend: a Runner whose `infer` sleeps
a fixed time (so what it can serve is known: one call at a time, 1 / delay calls per second) and one that
raises when two calls overlap (an engine that is not safe to call from several threads).
"""
import threading
import time

import numpy as np
import pytest

from vpdsr.bench.scenarios.config import OFFLINE, SERVER, SINGLE_STREAM, ScenarioConfig
from vpdsr.bench.scenarios.loadgen import DETAIL, SUMMARY
from vpdsr.bench.scenarios.run import run_offline, run_pooled, run_server, server_row, why_disagree
from vpdsr.bench.scenarios.sut import InlineSUT, OutputCheck, PoolSUT, SampleLibrary
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.tiling import TileConfig
from vpdsr.runtimes.upscale import Upscaler

pytest.importorskip("mlperf_loadgen", reason="needs MLPerf LoadGen (pip install 'vpdsr[loadgen]')")
DELAY = 0.04  # seconds per call of the slow backend: it serves 25 images/s at most


class SlowRunner(Runner):
    """x4 nearest-neighbour upscaling that takes `delay` seconds per call, one call at a time."""

    backend = "slow"

    def __init__(self, delay: float = DELAY, exclusive: bool = False):
        super().__init__("slow")
        self.delay, self.exclusive = delay, exclusive
        self._busy = threading.Lock()
        self.calls = 0

    def activate_impl(self):
        pass

    def input_metadata_impl(self):
        return {"lr": ("float32", ("B", 3, "h", "w"))}

    def infer_impl(self, feed):
        if not self._busy.acquire(blocking=not self.exclusive):
            raise RuntimeError("called from two threads at once")
        try:
            time.sleep(self.delay)
            self.calls += 1
            return {"sr": feed["lr"].repeat(4, axis=2).repeat(4, axis=3)}
        finally:
            self._busy.release()


def _images(n=2, size=8):
    return [np.full((size, size, 3), (i + 1) / (n + 1), np.float32) for i in range(n)]


def _lane(runner):
    return Upscaler(runner.activate(), TileConfig(tile=None), seed=0)


def test_server_search_lands_below_what_the_slow_backend_serves(tmp_path):
    qsl = SampleLibrary(_images())
    cfg = ScenarioConfig(scenarios=(SERVER,), min_duration_s=1.0, min_queries=8, server_runs=4, server_precision=0.25)
    with PoolSUT([_lane(SlowRunner())], qsl) as sut:
        # a p90 of 2x the engine's time: the default bound (2x p90) leaves room for queueing at low rates
        result = run_pooled(sut, cfg, [SERVER], None, {"p90": 2000 * DELAY, "mean": 1000 * DELAY}, tmp_path, "lg")
    search = result["server_search"]
    assert SERVER not in result["scenarios"] and search["failed"] is None
    assert search["bound_ms"] == pytest.approx(4 * 1000 * DELAY)  # default: 2x the single-stream p90
    row = server_row({"throughput": search}, search["bound_ms"], "lg/server")
    assert row["status"] == "ok" and row["configuration"] == "throughput", row
    capacity = 1.0 / DELAY
    assert search["capacity_qps"] <= capacity * 1.02  # the warm-up measured what one slow lane serves
    assert all(r["target_qps"] <= 1.05 * search["capacity_qps"] for r in search["runs"])
    assert row["max_qps"] is not None and row["max_qps"] < capacity  # found, and below what the backend serves
    assert row["p99_ms"] <= row["bound_ms"] and row["p99_ms"] >= 1000 * DELAY
    for r in search["runs"]:  # every run's LoadGen logs are kept and its verdict reported
        folder = tmp_path / r["folder"].removeprefix("lg/")
        assert (folder / SUMMARY).is_file() and (folder / DETAIL).is_file()
        assert r["verdict"] in ("VALID", "INVALID") and (r["verdict"] == "VALID") == (r["reason"] is None)
    over = [r for r in search["runs"] if r["target_qps"] > capacity]  # overloaded: the queue grows, p99 fails
    assert all(not r["held"] for r in over)


def test_an_overloaded_server_run_fails_the_bound(tmp_path):
    qsl = SampleLibrary(_images())
    cfg = ScenarioConfig(scenarios=(SERVER,), min_duration_s=1.0, min_queries=8, server_runs=1)
    with PoolSUT([_lane(SlowRunner())], qsl) as sut:
        search = run_server(sut, cfg, 3.0 / DELAY, 2000 * DELAY, tmp_path, "lg")  # first run: 1.5x capacity
    assert search["runs"][0]["target_qps"] > 1.0 / DELAY and not search["runs"][0]["held"]
    row = server_row({"throughput": search}, 2000 * DELAY, "lg/server")
    assert row["max_qps"] is None and "no target QPS held" in row["verdict_reason"]


def test_the_latency_configuration_serves_one_image_at_a_time_on_the_callers_thread(tmp_path):
    import threading

    seen = set()

    class Where(SlowRunner):
        def infer_impl(self, feed):
            seen.add(threading.get_ident())
            return super().infer_impl(feed)

    qsl = SampleLibrary(_images())
    cfg = ScenarioConfig(scenarios=(SERVER,), min_duration_s=0.5, min_queries=4, server_runs=1)
    search = run_server(InlineSUT(_lane(Where(delay=0.01)), qsl), cfg, 20.0, 100.0, tmp_path, "lg")
    assert seen == {threading.get_ident()} and search["runs"][0]["extra"]["queries"] >= 4


def test_a_backend_that_breaks_under_concurrent_requests_fails(tmp_path):
    shared = SlowRunner(delay=0.01, exclusive=True)  # one engine object called by two lanes
    qsl = SampleLibrary(_images())
    cfg = ScenarioConfig(scenarios=(OFFLINE,), min_duration_s=0.2)
    with PoolSUT([_lane(shared), _lane(shared)], qsl) as sut:
        result = run_pooled(sut, cfg, [OFFLINE], None, {"p90": 10.0, "mean": 10.0}, tmp_path, "lg")
    row = result["scenarios"][OFFLINE]
    assert row["status"] == "failed" and "two threads at once" in row["reason"]


def test_an_error_during_a_loadgen_run_ends_it_and_fails_the_scenario(tmp_path):
    runner = SlowRunner(delay=0.005)
    qsl = SampleLibrary(_images())
    calls = [0]

    def lane(image):  # fine for the first few samples, then broken
        calls[0] += 1
        if calls[0] > 3:
            raise RuntimeError("engine lost")
        return up(image)

    up = _lane(runner)
    cfg = ScenarioConfig(scenarios=(OFFLINE,), min_duration_s=0.5)
    t0 = time.perf_counter()
    with PoolSUT([lane], qsl) as sut:
        row = run_offline(sut, cfg, 200.0, tmp_path / "off", "lg/off")  # ~110 samples asked for in one query
    assert row["status"] == "failed" and "engine lost" in row["reason"]
    assert time.perf_counter() - t0 < 5  # the outstanding samples were answered at once


def test_wrong_output_under_concurrency_fails():
    qsl = SampleLibrary(_images())
    up = _lane(SlowRunner(delay=0.0))
    expected = [up(im) for im in qsl.images]
    with PoolSUT([lambda im: up(im) * 0.5], qsl, OutputCheck(expected)) as sut:
        with pytest.raises(Exception, match="differs from its single-stream output"):
            sut.run_direct([0, 1])


def test_the_batcher_merges_calls_of_one_shape_and_keeps_each_answer():
    from vpdsr.bench.scenarios.lanes import BatchingRunner

    inner = SlowRunner(delay=0.02, exclusive=True).activate()  # it would raise if two lanes reached it at once
    batcher = BatchingRunner(inner, max_batch=4, clients=4).activate()
    images = _images(2) + [np.full((12, 8, 3), 0.9, np.float32)]  # two 8x8 images and one of another shape
    qsl = SampleLibrary(images)
    expected = [_lane(SlowRunner(delay=0.0))(im) for im in images]
    lanes = [Upscaler(batcher, TileConfig(tile=None), seed=0) for _ in range(4)]
    with PoolSUT(lanes, qsl, OutputCheck(expected), serve=batcher.serve) as sut:
        sut.run_direct([0, 1, 0, 1, 2, 0, 1, 2])
    assert sut.error is None and sut.samples == 8 and sut.check.worst_psnr_db == float("inf")
    assert batcher.samples == 8 and batcher.calls < 8  # merged: fewer engine calls than images
    assert inner.calls == batcher.calls


def test_single_stream_inline(tmp_path):
    from vpdsr.bench.scenarios import loadgen

    qsl = SampleLibrary(_images())
    sut = InlineSUT(_lane(SlowRunner(delay=0.01)), qsl)
    cfg = ScenarioConfig(scenarios=(SINGLE_STREAM,), min_duration_s=0.3, min_queries=10)
    r = loadgen.run_test(sut.issue, sut.flush, len(qsl), loadgen.test_settings(SINGLE_STREAM, cfg,
                         expected_latency_s=0.01), tmp_path, SINGLE_STREAM, qsl.load, qsl.unload, serve=sut.serve)
    assert sut.error is None and sut.samples >= 10
    assert r.figures["result_percentile"] == 90.0
    assert 10.0 <= r.figures["result_ms"] < 1000.0  # at least the engine's own 10 ms
    assert qsl.asked == {0, 1} and qsl.loaded == set()  # LoadGen loaded both samples, and unloaded them at the end


def test_a_disagreement_is_split_into_its_factors():
    own = {"all": {"p90": 80.0}, "per_image": {"big": {"p90": 100.0}, "small": {"p90": 50.0}}}
    why = why_disagree(84.0, 100.0, own, "big")  # LoadGen 0.84x the column: the small image pulls the p90 down
    assert why.startswith("0.84x = 0.80 the image mix") and why.endswith("mostly the image mix")
    assert "1.05 LoadGen's time" in why and "1.00 the backend's own speed" in why
