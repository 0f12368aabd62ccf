"""The server scenario's search: the highest Poisson arrival rate whose p99 latency stays within the bound.

Each step is one LoadGen server run at a target QPS (`run(qps)`); a run *holds* when LoadGen's
performance constraint is met (its p99 latency is within the bound) and the system under test did not
fail. The search brackets the answer and halves the bracket:

1. the first run is at half the capacity estimate (the pool's measured images/s: no server sustains
   more than that, and queueing makes the p99 grow long before it);
2. while no run has failed, the next rate goes halfway up to just above the capacity; while none has
   held, the rate halves;
3. once both are known, the next rate is the middle of (highest held, lowest failed);
4. it stops when the bracket is within `precision` of the highest held rate, when the next rate would
   be no higher than the highest held one by that much, when halving a rate that failed did not bring the
   p99 down by 10 % (the queue is not what exceeds the bound: one image alone does), or after `max_runs` runs.

The answer is the highest rate that held (None when none did); every run is kept for the report.
Only the logic lives here: what a run is, is the caller's (a LoadGen run, or a model of one in tests).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

CEILING = 1.05  # the search never asks for more than this times the capacity estimate
FLAT = 0.9  # halving the rate that failed cut the p99 by less than 10 %: the load is not what holds it up


@dataclass
class ServerRun:
    """One server run: the offered rate, what came of it, and whether it held the bound."""

    target_qps: float
    p99_ms: float | None
    held: bool
    completed_qps: float | None = None
    verdict: str | None = None  # LoadGen's VALID / INVALID
    reason: str | None = None  # LoadGen's reason for INVALID
    failed: str | None = None  # the system under test failed (no figure counts)
    folder: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    """The highest rate that held (`max_qps`, None if none did), its run, every run in order, and why it stopped."""

    max_qps: float | None
    best: ServerRun | None
    runs: list[ServerRun]
    stopped: str

    def to_dict(self) -> dict:
        return {"max_qps": self.max_qps, "best": None if self.best is None else self.best.to_dict(),
                "runs": [r.to_dict() for r in self.runs], "stopped": self.stopped}


def search_max_qps(run: Callable[[float], ServerRun], capacity_qps: float, max_runs: int = 6,
                   precision: float = 0.1) -> SearchResult:
    """Find the highest target QPS whose run holds (see the module docstring).

    Args:
        run: one server run at a target QPS.
        capacity_qps: the system's measured throughput (images/s with every lane busy).
        max_runs: runs at most.
        precision: stop when (lowest failed - highest held) <= precision x highest held.
    """
    if not capacity_qps > 0:
        raise ValueError(f"the capacity estimate must be > 0 images/s, got {capacity_qps}")
    ceiling = CEILING * capacity_qps
    runs: list[ServerRun] = []
    held: ServerRun | None = None
    lowest_failed: float | None = None
    qps = 0.5 * capacity_qps
    stopped = f"{max_runs} run(s), the most allowed"
    for _ in range(max_runs):
        r = run(qps)
        runs.append(r)
        if r.failed:
            stopped = f"the system under test failed at {qps:.3g} QPS: {r.failed}"
            break
        if r.held:
            if held is None or qps > held.target_qps:
                held = r
        else:
            lowest_failed = qps if lowest_failed is None else min(lowest_failed, qps)
        lo = held.target_qps if held is not None else None
        if lo is not None and lowest_failed is not None:
            if lowest_failed - lo <= precision * lo:
                stopped = f"bracketed within {100 * precision:g} %: {lo:.3g} held, {lowest_failed:.3g} did not"
                break
            qps = 0.5 * (lo + lowest_failed)
        elif lo is not None:
            nxt = 0.5 * (lo + ceiling)
            if nxt - lo <= precision * lo:
                stopped = f"held up to the capacity estimate ({capacity_qps:.3g} images/s)"
                break
            qps = nxt
        else:
            previous = next((p for p in reversed(runs[:-1]) if p.p99_ms is not None), None)
            if previous is not None and r.p99_ms is not None and r.p99_ms >= FLAT * previous.p99_ms:
                stopped = (f"p99 did not come down with the load ({previous.p99_ms:.1f} ms at "
                           f"{previous.target_qps:.3g} QPS, {r.p99_ms:.1f} ms at {qps:.3g}): one image takes longer "
                           "than the bound at any rate")
                break
            qps = 0.5 * qps
    return SearchResult(max_qps=None if held is None else held.target_qps, best=held, runs=runs, stopped=stopped)
