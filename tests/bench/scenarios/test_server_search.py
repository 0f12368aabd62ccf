"""The server search's logic on a model of a server (no LoadGen, no timing): it brackets the limit."""
import pytest

from vpdsr.bench.scenarios.server_search import CEILING, ServerRun, search_max_qps


def model(limit: float, calls: list | None = None):
    """A server whose p99 holds the bound exactly up to `limit` QPS."""
    def run(qps: float) -> ServerRun:
        if calls is not None:
            calls.append(qps)
        return ServerRun(target_qps=qps, p99_ms=10.0 if qps <= limit else 100.0 * qps / limit, held=qps <= limit)
    return run


@pytest.mark.parametrize("limit", [3.0, 7.9, 9.5, 0.6])
def test_search_brackets_the_limit(limit):
    result = search_max_qps(model(limit), capacity_qps=10.0, max_runs=20, precision=0.05)
    assert result.max_qps is not None and result.max_qps <= limit
    assert result.max_qps >= limit / 1.05 or result.max_qps >= 10.0 * CEILING / 1.05  # within the precision
    assert all(r.held == (r.target_qps <= limit) for r in result.runs)
    assert result.best.target_qps == result.max_qps


def test_every_run_is_kept_and_the_search_never_exceeds_the_ceiling():
    calls = []
    result = search_max_qps(model(100.0, calls), capacity_qps=10.0, max_runs=20, precision=0.05)
    assert [r.target_qps for r in result.runs] == calls
    assert max(calls) <= CEILING * 10.0
    assert "capacity" in result.stopped


def test_no_rate_holds():
    def slow_at_any_rate(qps):  # p99 falls as the load falls, but never below the bound
        return ServerRun(target_qps=qps, p99_ms=100.0 + 40 * qps, held=False)

    result = search_max_qps(slow_at_any_rate, capacity_qps=10.0, max_runs=4)
    assert result.max_qps is None and result.best is None and len(result.runs) == 4
    assert [r.target_qps for r in result.runs] == [5.0, 2.5, 1.25, 0.625]


def test_a_failed_system_stops_the_search():
    def run(qps):
        return ServerRun(target_qps=qps, p99_ms=None, held=False, failed="RuntimeError: boom")
    result = search_max_qps(run, capacity_qps=4.0)
    assert len(result.runs) == 1 and result.max_qps is None and "boom" in result.stopped


def test_bad_capacity():
    with pytest.raises(ValueError):
        search_max_qps(model(1.0), capacity_qps=0.0)


def test_a_p99_that_does_not_fall_with_the_load_stops_the_search():
    def cold(qps):  # every image alone takes longer than the bound
        return ServerRun(target_qps=qps, p99_ms=300.0, held=False)

    result = search_max_qps(cold, capacity_qps=10.0, max_runs=8)
    assert len(result.runs) == 2 and result.max_qps is None and "did not come down" in result.stopped
