"""MLPerf's LoadGen (the `mlcommons-loadgen` wheel, module `mlperf_loadgen`): settings, one run, its summary.

LoadGen issues the queries and times them; the system under test only answers. One run is
:func:`run_test`: a SUT (issue and flush callbacks), a QSL (the sample count and load/unload
callbacks) and the test settings go in; LoadGen writes ``mlperf_log_summary.txt`` and
``mlperf_log_detail.txt`` into the run's folder (no trace, no accuracy log: performance mode only),
and :func:`parse_summary` turns the summary into figures and LoadGen's verdict. The verdict is
LoadGen's own: ``Result is : VALID`` needs its minimum duration, minimum query count, early-stopping
rule and (server) the latency bound at the target percentile all met; an INVALID run keeps the
constraints that failed and LoadGen's recommendation as its reason.

Example:
    >>> result = run_test(sut, len(images), test_settings("offline", cfg, expected_qps=5.0), out)
    >>> result.verdict, result.figures["samples_per_s"]  # doctest: +SKIP
    ('VALID', 5.31)
"""
from __future__ import annotations

import importlib.metadata as md
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vpdsr.bench.scenarios.config import MULTI_STREAM, OFFLINE, SERVER, SINGLE_STREAM, ScenarioConfig
from vpdsr.errors import MissingDependencyError

log = logging.getLogger(__name__)
DIST = "mlcommons-loadgen"
INSTALL = "pip install 'vpdsr[loadgen]' (the mlcommons-loadgen wheel)"
SUMMARY, DETAIL = "mlperf_log_summary.txt", "mlperf_log_detail.txt"
_NS = 1e-9


def missing_reason() -> str | None:
    """Why LoadGen cannot run here (one line), or None when it imports."""
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError as e:
        return f"MLPerf LoadGen is not installed ({str(e).splitlines()[0]}): {INSTALL}"
    return None


def version() -> str | None:
    try:
        return md.version(DIST)
    except md.PackageNotFoundError:
        return None


def _lg():
    try:
        import mlperf_loadgen as lg
    except ImportError as e:
        raise MissingDependencyError(f"the MLPerf scenarios need LoadGen ({e}): {INSTALL}") from None
    return lg


def test_settings(scenario: str, cfg: ScenarioConfig, *, expected_latency_s: float | None = None,
                  expected_qps: float | None = None, target_qps: float | None = None,
                  latency_bound_s: float | None = None, min_queries: int | None = None):
    """LoadGen's TestSettings for one performance run of `scenario` (names of :mod:`.config`).

    Args:
        expected_latency_s: single-stream / multi-stream: the expected latency of one query (LoadGen
            pre-generates enough queries from it).
        expected_qps: offline: the expected samples per second (the one query holds
            1.1 x min duration x this many samples).
        target_qps, latency_bound_s: server: the Poisson arrival rate and the latency bound at p99.
        min_queries: the run's minimum query count (default `cfg.min_queries`).
    """
    lg = _lg()
    s = lg.TestSettings()
    s.scenario = {SINGLE_STREAM: lg.TestScenario.SingleStream, MULTI_STREAM: lg.TestScenario.MultiStream,
                  SERVER: lg.TestScenario.Server, OFFLINE: lg.TestScenario.Offline}[scenario]
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms = int(cfg.min_duration_s * 1000)
    s.max_duration_ms = int(cfg.max_duration_s * 1000)
    s.min_query_count = int(min_queries or cfg.min_queries)
    if scenario == SINGLE_STREAM:
        s.single_stream_expected_latency_ns = max(1, int((expected_latency_s or 0.01) / _NS))
    elif scenario == MULTI_STREAM:
        s.multi_stream_samples_per_query = cfg.multi_stream_samples
        s.multi_stream_expected_latency_ns = max(1, int((expected_latency_s or 0.05) / _NS))
    elif scenario == SERVER:
        s.server_target_qps = float(target_qps)
        s.server_target_latency_ns = max(1, int(latency_bound_s / _NS))
    else:
        s.offline_expected_qps = float(expected_qps or 1.0)
    return s


@dataclass
class LoadgenResult:
    """One LoadGen run as its summary tells it.

    Attributes:
        scenario: our name (single-stream, ...); verdict: "VALID" or "INVALID"; reason: why INVALID
            (the constraints not met and LoadGen's recommendation), None when VALID.
        constraints: {"min duration", "min queries", "early stopping", "performance"} -> met.
        figures: latencies in ms (`p50_ms` ... `p99_9_ms`, `min_ms`, `max_ms`, `mean_ms`, and the scenario's
            `result_ms` percentile), rates (`samples_per_s`, `scheduled_per_s`, `qps_with_overhead`,
            `qps_without_overhead`), and the test parameters LoadGen used (`target_qps`, `samples_per_query`, ...).
        early_stopping: LoadGen's early-stopping lines; warnings: its warnings line(s) if any.
        folder: where the two log files are.
    """

    scenario: str
    verdict: str
    reason: str | None
    constraints: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    early_stopping: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    folder: str | None = None

    @property
    def valid(self) -> bool:
        return self.verdict == "VALID"

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "verdict": self.verdict, "reason": self.reason,
                "constraints": self.constraints, "figures": self.figures, "early_stopping": self.early_stopping,
                "warnings": self.warnings, "folder": self.folder}


_LATENCY_KEYS = {"min latency (ns)": "min_ms", "max latency (ns)": "max_ms", "mean latency (ns)": "mean_ms",
                 "50.00 percentile latency (ns)": "p50_ms", "90.00 percentile latency (ns)": "p90_ms",
                 "95.00 percentile latency (ns)": "p95_ms", "97.00 percentile latency (ns)": "p97_ms",
                 "99.00 percentile latency (ns)": "p99_ms", "99.90 percentile latency (ns)": "p99_9_ms"}
_RATE_KEYS = {"samples per second": "samples_per_s", "completed samples per second": "samples_per_s",
              "scheduled samples per second": "scheduled_per_s", "qps w/ loadgen overhead": "qps_with_overhead",
              "qps w/o loadgen overhead": "qps_without_overhead"}
_PARAM_KEYS = {"samples_per_query": "samples_per_query", "target_qps": "target_qps",
               "target_latency (ns)": "target_latency_ms", "min_duration (ms)": "min_duration_ms",
               "max_duration (ms)": "max_duration_ms", "min_query_count": "min_query_count",
               "performance_sample_count": "performance_sample_count"}
_CONSTRAINTS = {"min duration satisfied": "min duration", "min queries satisfied": "min queries",
                "early stopping satisfied": "early stopping", "performance constraints satisfied": "performance"}


def _number(text: str) -> float | None:
    try:
        return float(text.strip().split()[0])
    except (ValueError, IndexError):
        return None


def parse_summary(text: str, scenario: str) -> LoadgenResult:
    """LoadGen's mlperf_log_summary.txt -> :class:`LoadgenResult` (see there)."""
    figures: dict[str, float] = {}
    constraints: dict[str, bool] = {}
    verdict, section = "INVALID", None
    recommendations: list[str] = []
    early: list[str] = []
    warnings: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("===="):
            section = None if line.startswith("====") else section
            continue
        low = line.lower()
        if low.startswith("recommendations:"):
            section = "rec"
            continue
        if low.startswith("early stopping result:"):
            section = "early"
            continue
        if section in ("rec", "early"):
            bullets = recommendations if section == "rec" else early
            if line.startswith("*"):
                bullets.append(line.lstrip("* ").strip())
                continue
            if bullets and ":" not in line:  # a bullet wrapped onto the next line
                bullets[-1] += " " + line
                continue
            section = None
        if "warning" in low and "no warnings" not in low:
            warnings.append(line)
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "result is":
            verdict = value.upper()
        elif key in _CONSTRAINTS:
            constraints[_CONSTRAINTS[key]] = value.lower().startswith("yes")
        elif key in _LATENCY_KEYS and _number(value) is not None:
            figures[_LATENCY_KEYS[key]] = _number(value) / 1e6
        elif re.fullmatch(r"\d+(\.\d+)?th percentile latency \(ns\)", key) and _number(value) is not None:
            figures["result_ms"] = _number(value) / 1e6
            figures["result_percentile"] = float(key.split("th")[0])
        elif key in _RATE_KEYS and _number(value) is not None:
            figures[_RATE_KEYS[key]] = _number(value)
        elif key in _PARAM_KEYS and _number(value) is not None:
            v = _number(value)
            figures[_PARAM_KEYS[key]] = v / 1e6 if key == "target_latency (ns)" else v
    reason = None
    if verdict != "VALID":
        failed = [k for k, ok in constraints.items() if not ok]
        why = [f"{k} not satisfied" for k in failed] or ["LoadGen gave no constraint"]
        advice = [r for r in recommendations if r]
        if "early stopping" in failed:
            advice += [e for e in early if e and not e.lower().startswith("run unsuccessful")]
        reason = ", ".join(why) + (": " + " ".join(" ".join(a.split()) for a in advice) if advice else "")
    return LoadgenResult(scenario=scenario, verdict=verdict, reason=reason, constraints=constraints,
                         figures=figures, early_stopping=early, warnings=warnings)


def run_test(issue: Callable, flush: Callable, samples: int, settings, out: Path, scenario: str,
             load: Callable | None = None, unload: Callable | None = None,
             serve: Callable[[threading.Event], None] | None = None) -> LoadgenResult:
    """One LoadGen performance run; its summary and detail logs are written into `out`.

    With `serve`, LoadGen runs on a helper thread and the calling thread runs `serve(done)` until `done` is
    set (the test ended): the engine work then happens on the caller's thread. That matters for torch on
    CPU: its OpenMP thread team behaves differently on a thread other than the one that set it up (seen
    here: 5-20 % slower on a quiet machine, its second core idle between kernels; several times faster
    under heavy load, when the first thread's spinning team is descheduled), so the single-stream
    scenario serves on the thread the latency column was timed on.

    Args:
        issue: `issue(query_samples)`: LoadGen's IssueQuery callback (must return quickly outside
            single-stream; every sample must be completed with `mlperf_loadgen.QuerySamplesComplete`).
        flush: LoadGen's FlushQueries callback.
        samples: the query sample library's size (every sample is kept loaded).
        load, unload: the QSL's load/unload callbacks (the index lists LoadGen asks for).
        serve: the caller's loop while LoadGen runs (see above), or None: LoadGen runs on the calling thread.
    """
    lg = _lg()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    output = lg.LogOutputSettings()
    output.outdir = str(out)
    output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = output
    log_settings.enable_trace = False
    sut = lg.ConstructSUT(issue, flush)
    qsl = lg.ConstructQSL(samples, samples, load or (lambda idx: None), unload or (lambda idx: None))
    try:
        if serve is None:
            lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
        else:
            done, errors = threading.Event(), []

            def start() -> None:
                try:
                    lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
                except BaseException as e:  # noqa: BLE001 - raised again on the calling thread
                    errors.append(e)
                finally:
                    done.set()

            helper = threading.Thread(target=start, name="vpdsr-loadgen", daemon=True)
            helper.start()
            serve(done)
            helper.join()
            if errors:
                raise errors[0]
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    for extra in ("mlperf_log_accuracy.json", "mlperf_log_trace.json"):  # empty in performance mode
        (out / extra).unlink(missing_ok=True)
    result = parse_summary((out / SUMMARY).read_text(), scenario)
    result.folder = str(out)
    return result


def complete(sample_ids: list[int]) -> None:
    """Tell LoadGen these samples are done (no response data: performance mode)."""
    lg = _lg()
    lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in sample_ids])
