"""The settings of the MLPerf scenarios of one benchmark run: one frozen dataclass, checked when made.

Defaults are short, to suit a 2-core machine: every LoadGen run lasts at least `min_duration_s`
(3 s) and at least `min_queries` queries. MLPerf's own minimums are 600 s per run and, per
scenario, thousands of queries (its early-stopping rule needs 64 queries for a p90 and 662 for a
p99 even when none is over its bound), so a short run is usually INVALID by LoadGen's verdict
(the report prints LoadGen's reason and says the durations are shorter than MLPerf's).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from vpdsr.errors import InputError

SINGLE_STREAM, MULTI_STREAM, SERVER, OFFLINE = "single-stream", "multi-stream", "server", "offline"
SCENARIOS = (SINGLE_STREAM, OFFLINE, SERVER, MULTI_STREAM)  # the order they run and are reported in
AUTO = "auto"
# MLPerf inference rules: minimum run duration (s) of every scenario; and the fewest queries LoadGen's early
# stopping accepts when no query is over its bound, as LoadGen 6.0 prints them (single-stream p90: 64,
# multi-stream p99: 662, server p99 within the bound: 459)
MLPERF_MIN_DURATION_S = 600
MLPERF_MIN_QUERIES = {SINGLE_STREAM: 64, MULTI_STREAM: 662, SERVER: 459, OFFLINE: 1}


@dataclass(frozen=True)
class ScenarioConfig:
    """What `vpdsr bench --scenario ...` runs through LoadGen (see the module docstring for the defaults).

    Attributes:
        scenarios: scenario names in :data:`SCENARIOS` order; empty: none (today's measurement only).
        min_duration_s: every LoadGen run lasts at least this long (LoadGen's min_duration).
        max_duration_s: LoadGen stops issuing queries after this long (its max_duration).
        min_queries: queries of a single-stream, multi-stream or server run at least (offline: samples).
        latency_bound_ms: the server's p99 bound; None: 2x the backend's single-stream p90.
        server_runs: LoadGen server runs the search may make per backend.
        server_precision: the search stops when its lowest failing QPS is within this fraction of its
            highest passing QPS.
        multi_stream_samples: samples per multi-stream query (MLPerf's edge rules use 8).
        lanes: images in flight at once for offline, server and multi-stream ("auto": per engine, see
            :mod:`vpdsr.bench.scenarios.lanes`).
        backends: the backends that run the scenarios (None: every backend that runs).
    """

    scenarios: tuple[str, ...] = ()
    min_duration_s: float = 3.0
    max_duration_s: float = 60.0
    min_queries: int = 16
    latency_bound_ms: float | None = None
    server_runs: int = 5
    server_precision: float = 0.1
    multi_stream_samples: int = 4
    lanes: int | str = AUTO
    backends: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(set(self.scenarios)) != len(self.scenarios):
            raise InputError(f"`--scenario` names a scenario twice: {','.join(self.scenarios)}")
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise InputError(f"`--scenario`: unknown scenario {unknown[0]!r}; expected a comma list of "
                             f"{', '.join(SCENARIOS)}")
        object.__setattr__(self, "scenarios", tuple(s for s in SCENARIOS if s in self.scenarios))
        checks = (("--scenario-min-duration-s", self.min_duration_s, 0), ("--scenario-max-duration-s",
                  self.max_duration_s, 0), ("--server-precision", self.server_precision, 0))
        for flag, value, low in checks:
            if not value > low:
                raise InputError(f"`{flag}` must be > {low}, got {value}")
        if self.max_duration_s < self.min_duration_s:
            raise InputError(f"`--scenario-max-duration-s` ({self.max_duration_s:g}) must be >= "
                             f"`--scenario-min-duration-s` ({self.min_duration_s:g})")
        if self.latency_bound_ms is not None and not self.latency_bound_ms > 0:
            raise InputError(f"`--latency-bound-ms` must be > 0 ms, got {self.latency_bound_ms}")
        for flag, value in (("--scenario-min-queries", self.min_queries), ("--server-runs", self.server_runs),
                            ("--multi-stream-samples", self.multi_stream_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"`{flag}` must be an integer >= 1, got {value!r}")
        if self.lanes != AUTO and (isinstance(self.lanes, bool) or not isinstance(self.lanes, int) or self.lanes < 1):
            raise InputError(f"`--scenario-lanes` must be an integer >= 1 or auto, got {self.lanes!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.scenarios)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["scenarios"] = list(self.scenarios)
        out["backends"] = None if self.backends is None else list(self.backends)
        return out

    def shorter_than_mlperf(self) -> str:
        """The sentence every report with scenarios carries."""
        q = MLPERF_MIN_QUERIES
        return (f"Every LoadGen run lasted at least {self.min_duration_s:g} s and {self.min_queries} queries: shorter "
                f"than MLPerf's minimums ({MLPERF_MIN_DURATION_S} s per run; LoadGen's early stopping needs at least "
                f"{q[SINGLE_STREAM]} single-stream, {q[SERVER]} server and {q[MULTI_STREAM]} multi-stream queries), "
                "so a result is often INVALID by LoadGen's verdict; its reason is given with it.")


def parse_scenarios(text: str | None) -> tuple[str, ...]:
    """`--scenario single-stream,offline,server[,multi-stream]` (or `all`) -> the names; InputError otherwise."""
    if text is None:
        return ()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError("`--scenario` is empty; expected a comma list of " + ", ".join(SCENARIOS) + " (or all)")
    if names == ["all"]:
        return SCENARIOS
    return tuple(names)  # checked by ScenarioConfig
