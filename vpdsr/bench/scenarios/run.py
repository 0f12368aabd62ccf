"""The MLPerf scenarios of one backend, run through LoadGen on the runner the latency column just timed.

Order (each scenario's figures and LoadGen verdict go into one dict per scenario):

1. single-stream: :class:`InlineSUT` with the latency column's own upscaler, on the same thread; LoadGen's
   p90 is set beside the latency column's p90 (they must agree within :data:`AGREE_PCT`; when they do not,
   :func:`why_disagree` splits the ratio into its factors from the samples' own times: the mix of image
   sizes, the backend's own speed, LoadGen's time around each sample);
2. server, *latency* configuration: the same upscaler answering one image at a time, first in first out
   (the engine tuned for one request: all threads on each image);
3. the pool (:mod:`.lanes`, the engine tuned for many requests) opens once; two untimed passes warm it up
   and give a first images/s (the offline query's size and the server search's start);
4. offline: one query of every sample; images/s and output megapixels/s, and the ratio to single-stream;
5. multi-stream: queries of `multi_stream_samples` images, one after the other; LoadGen's p99 per query;
6. server, *throughput* configuration: the same search on the pool.

The server searches (:func:`search_max_qps`) use the latency bound (default 2x the single-stream p90);
the scenario's answer is the higher of the two configurations' highest held QPS, and every run of both
is kept. Which one wins depends on the bound: the pool's lanes each have fewer threads, so one image
takes longer there, and a tight bound leaves no room for that.

LoadGen's summary and detail logs go to `<log_root>/<backend>/<scenario>/` (server: one folder per
configuration and run). A scenario whose system under test raised is ``failed`` with the error; where
LoadGen is not installed every scenario is ``skipped`` with that reason.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpdsr.bench.scenarios import loadgen
from vpdsr.bench.scenarios.config import MULTI_STREAM, OFFLINE, SERVER, SINGLE_STREAM, ScenarioConfig
from vpdsr.bench.scenarios.lanes import LaneOptions, open_lanes, plan_lanes
from vpdsr.bench.scenarios.server_search import ServerRun, search_max_qps
from vpdsr.bench.scenarios.sut import InlineSUT, OutputCheck, PoolSUT, SampleLibrary

log = logging.getLogger(__name__)
AGREE_PCT = 10.0  # single-stream: LoadGen's p90 and the latency column's p90 agree within this
BOUND_FACTOR = 2.0  # the server's default latency bound: this times the single-stream p90
OFFLINE_HEADROOM = 2.0  # the offline query's size: this times the warm-up's images/s
LATENCY, THROUGHPUT = "latency", "throughput"  # the server's two configurations


@dataclass
class BackendScenarios:
    """What the scenarios of one backend need from the harness.

    Attributes:
        spec: the backend's :class:`vpdsr.bench.backends.BackendSpec`.
        runner: its active runner; upscaler: the latency column's upscaler over it.
        images: (H, W, 3) LR arrays (the query sample library); names: theirs.
        latency_ms: the latency column's figures of this backend (its p50/p90, first image).
        log_root: LoadGen's logs go to log_root/<backend>/...; rel_root: how the report names log_root.
    """

    spec: object
    runner: object
    upscaler: object
    images: list[np.ndarray]
    names: list[str]
    latency_ms: dict
    log_root: Path
    rel_root: str = "loadgen"
    seed: int = 0


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", name)


def not_run(cfg: ScenarioConfig, status: str, reason: str) -> dict:
    """Every scenario of `cfg` skipped or failed with one reason."""
    return {"scenarios": {s: {"status": status, "reason": reason} for s in cfg.scenarios}, "lanes": None,
            "bound_ms": None, "server_search": None}


def server_bound(cfg: ScenarioConfig, ss: dict | None, today: dict | None) -> float | None:
    """`--latency-bound-ms`, else 2x LoadGen's single-stream p90 (else the latency column's p90)."""
    if cfg.latency_bound_ms is not None:
        return cfg.latency_bound_ms
    p90 = (ss or {}).get("p90_ms") or (today or {}).get("p90")
    return BOUND_FACTOR * p90 if p90 else None


def run_backend(ctx: BackendScenarios, cfg: ScenarioConfig) -> dict:
    """Run every scenario of `cfg` for one backend; see the module docstring.

    Returns:
        {"scenarios": {name: {"status", "reason", "verdict", "verdict_reason", "log", ...figures}},
         "lanes": the pool's description, "bound_ms": the server bound, "server_search": {configuration: runs}}
    """
    missing = loadgen.missing_reason()
    if missing:
        return not_run(cfg, "skipped", missing)
    qsl = SampleLibrary(ctx.images, ctx.names, scale=int(getattr(ctx.runner, "scale", 4)))
    # the single-stream output of every image: what the pool's answers are checked against (and a warm-up)
    expected = [ctx.upscaler(im) for im in ctx.images]
    root = ctx.log_root / _folder_name(ctx.spec.name)
    rel = f"{ctx.rel_root}/{_folder_name(ctx.spec.name)}"
    out: dict = {"scenarios": {}, "lanes": None, "bound_ms": None, "server_search": None}
    ss = None
    if SINGLE_STREAM in cfg.scenarios:
        ss = out["scenarios"][SINGLE_STREAM] = _single_stream(ctx, cfg, qsl, root / SINGLE_STREAM,
                                                               f"{rel}/{SINGLE_STREAM}")
    searches: dict = {}
    bound = None
    if SERVER in cfg.scenarios:
        bound = out["bound_ms"] = server_bound(cfg, ss, ctx.latency_ms)
        ss_ips = _single_stream_ips(ss, ctx.latency_ms)
        if bound is not None and ss_ips:
            searches[LATENCY] = run_server(InlineSUT(ctx.upscaler, qsl), cfg, ss_ips, bound, root / SERVER / LATENCY,
                                           f"{rel}/{SERVER}/{LATENCY}")
    pooled = [s for s in cfg.scenarios if s != SINGLE_STREAM]
    if pooled:
        try:
            plan = plan_lanes(ctx.spec, cfg.lanes)
            pool = open_lanes(ctx.spec, ctx.runner, ctx.upscaler, [im.shape[:2] for im in ctx.images],
                              LaneOptions(seed=ctx.seed), plan)
        except Exception as e:  # noqa: BLE001 - a pool that cannot open fails these scenarios, not the benchmark
            why = f"the {plan_lanes(ctx.spec, cfg.lanes).kind} pool did not open: {_one_line(e)}"
            out["scenarios"].update({s: {"status": "failed", "reason": why} for s in pooled})
            return out
        with pool, PoolSUT(pool.lanes, qsl, OutputCheck(expected), serve=pool.serve) as sut:
            pooled_out = run_pooled(sut, cfg, pooled, ss, ctx.latency_ms, root, rel, bound)
            described = pool.describe()  # before the pool closes: its lanes and the batcher's counts
        out["scenarios"].update(pooled_out["scenarios"])
        out["lanes"] = {**described, **pooled_out["lanes"]}
        if pooled_out["server_search"] is not None:
            searches[THROUGHPUT] = pooled_out["server_search"]
    if SERVER in cfg.scenarios and (out["scenarios"].get(SERVER) or {}).get("status") != "failed":
        out["scenarios"][SERVER] = server_row(searches, bound, f"{rel}/{SERVER}")
    out["server_search"] = searches or None
    return out


def run_pooled(sut: PoolSUT, cfg: ScenarioConfig, scenarios: list[str], ss: dict | None, today: dict | None,
               root: Path, rel: str, bound_ms: float | None = None) -> dict:
    """Offline, multi-stream and the server's throughput search (those of `scenarios`) on an entered
    :class:`PoolSUT`.

    Args:
        ss: the single-stream row of this backend, if it ran (its p90 sets the default server bound).
        today: the latency column's figures (p90, mean), used where single-stream did not run.
        root, rel: the LoadGen log folder of this backend, and how the report names it.
        bound_ms: the server's p99 bound (None: :func:`server_bound`).

    Returns:
        {"scenarios": {name: row}, "server_search": the throughput search or None,
         "lanes": {"output_psnr_vs_single_stream_db"}}; the server row only when it failed here.
    """
    out: dict = {"scenarios": {}, "server_search": None, "lanes": {}}
    try:
        ips = _warm_up(sut, len(sut.qsl), len(sut.lanes))
    except Exception as e:  # noqa: BLE001 - the pool crashed on its first concurrent requests
        why = f"failed under {len(sut.lanes)} concurrent request(s): {_one_line(e)}"
        out["scenarios"] = {s: {"status": "failed", "reason": why} for s in scenarios}
        return out
    ss_ips = _single_stream_ips(ss, today)
    if OFFLINE in scenarios:
        off = out["scenarios"][OFFLINE] = run_offline(sut, cfg, ips, root / OFFLINE, f"{rel}/{OFFLINE}")
        if off["status"] == "ok":
            ips = off["ips"] or ips
            off["single_stream_ips"] = ss_ips
            off["vs_single_stream"] = None if not ss_ips or not off["ips"] else off["ips"] / ss_ips
    if MULTI_STREAM in scenarios:
        out["scenarios"][MULTI_STREAM] = run_multi_stream(sut, cfg, ips, root / MULTI_STREAM, f"{rel}/{MULTI_STREAM}")
    if SERVER in scenarios:
        bound = bound_ms if bound_ms is not None else server_bound(cfg, ss, today)
        if bound is None:
            out["scenarios"][SERVER] = {"status": "failed", "reason": "no single-stream p90 to set the bound "
                                        "from (pass --latency-bound-ms)"}
        else:
            out["server_search"] = run_server(sut, cfg, ips, bound, root / SERVER / THROUGHPUT,
                                              f"{rel}/{SERVER}/{THROUGHPUT}")
    if sut.check is not None:
        out["lanes"]["output_psnr_vs_single_stream_db"] = sut.check.worst_psnr_db  # inf: identical
    return out


def server_row(searches: dict, bound_ms: float | None, rel: str) -> dict:
    """The server scenario's row from its searches ({configuration: search}): the higher highest-held QPS."""
    if bound_ms is None:
        return {"status": "failed", "reason": "no single-stream p90 to set the bound from (pass --latency-bound-ms)"}
    failed = next((f"{c}: {s['failed']}" for c, s in searches.items() if s.get("failed")), None)
    if failed:
        return {"status": "failed", "reason": f"runtime error under concurrent requests ({failed})",
                "bound_ms": bound_ms}
    held = [(s["max_qps"], c, s) for c, s in searches.items() if s.get("max_qps") is not None]
    runs = sum(len(s["runs"]) for s in searches.values())
    row = {"status": "ok", "reason": None, "bound_ms": bound_ms, "runs": runs, "log": rel,
           "per_configuration": {c: {"max_qps": s.get("max_qps"), "capacity_qps": s.get("capacity_qps"),
                                     "stopped": s.get("stopped")} for c, s in searches.items()}}
    if not held:
        lowest = min((r["target_qps"] for s in searches.values() for r in s["runs"]), default=None)
        return {**row, "max_qps": None, "configuration": None, "p99_ms": None, "verdict": None,
                "verdict_reason": f"no target QPS held the p99 bound ({runs} run(s)"
                                  + (f", lowest {lowest:.3g} QPS)" if lowest is not None else ")")}
    qps, config, search = max(held, key=lambda t: t[0])
    best = search["best"]
    return {**row, "max_qps": qps, "configuration": config, "p99_ms": best["p99_ms"], "verdict": best["verdict"],
            "verdict_reason": best["reason"], "stopped": search["stopped"]}


def _one_line(e: BaseException) -> str:
    from vpdsr.bench.backends import one_line

    return one_line(e)


def _result_fields(r: loadgen.LoadgenResult, rel: str) -> dict:
    return {"verdict": r.verdict, "verdict_reason": r.reason, "constraints": r.constraints, "log": rel,
            "loadgen": r.figures}


def _failed(sut, what: str) -> dict:
    return {"status": "failed", "reason": f"{what}: {_one_line(sut.error)}"}


def _single_stream(ctx: BackendScenarios, cfg: ScenarioConfig, qsl: SampleLibrary, folder: Path, rel: str) -> dict:
    today = ctx.latency_ms or {}
    sut = InlineSUT(ctx.upscaler, qsl)
    expected_s = (today.get("p50") or 10.0) / 1000.0
    r = loadgen.run_test(sut.issue, sut.flush, len(qsl), loadgen.test_settings(SINGLE_STREAM, cfg,
                         expected_latency_s=expected_s), folder, SINGLE_STREAM, qsl.load, qsl.unload, serve=sut.serve)
    if sut.error is not None:
        return _failed(sut, "runtime error")
    f = r.figures
    p90 = f.get("result_ms", f.get("p90_ms"))
    own = sut.own_times_ms()
    row = {"status": "ok", "reason": None, **_result_fields(r, rel), "p50_ms": f.get("p50_ms"), "p90_ms": p90,
           "p99_ms": f.get("p99_ms"), "ips": f.get("qps_without_overhead"), "queries": sut.samples,
           "today_p90_ms": today.get("p90"), "own_ms": own}
    if p90 and today.get("p90"):
        row["vs_today_pct"] = 100.0 * (p90 / today["p90"] - 1.0)
        row["agrees"] = abs(row["vs_today_pct"]) <= AGREE_PCT
        row["why"] = None if row["agrees"] else why_disagree(p90, today["p90"], own, ctx.names[0])
    return row


def why_disagree(p90: float, today: float, own: dict, first: str) -> str:
    """Why LoadGen's single-stream p90 and the latency column's p90 differ, as the product of three factors
    read from the samples' own times (`own`, :meth:`.sut._Recorder.own_times_ms`), the largest named first:

    - image mix: the p90 over every image's samples / the first image's (the column times the first only);
    - the backend's own speed: the first image's samples here / the column's p90;
    - LoadGen: its p90 / the samples' own p90 (its time around each sample, the hand-off to the thread).
    """
    one = ((own.get("per_image") or {}).get(first) or {}).get("p90")
    every = (own.get("all") or {}).get("p90")
    if not one or not every:
        return f"the first image ({first}) was not among LoadGen's samples: no split into factors"
    factors = {"the image mix (LoadGen samples every image, the column times the first)": every / one,
               "the backend's own speed during the run (the machine's load)": one / today,
               "LoadGen's time around each sample": p90 / every}
    ranked = sorted(factors.items(), key=lambda kv: -abs(np.log(kv[1])))
    return (f"{p90 / today:.2f}x = " + " x ".join(f"{v:.2f} {k}" for k, v in ranked)
            + f"; mostly {ranked[0][0].split(' (')[0]}")


def _single_stream_ips(ss: dict | None, today: dict | None) -> float | None:
    if ss and ss.get("status") == "ok" and ss.get("ips"):
        return ss["ips"]
    mean = (today or {}).get("mean")
    return 1000.0 / mean if mean else None


def _warm_up(sut: PoolSUT, images: int, lanes: int) -> float:
    """Two untimed passes of max(images, 4 x lanes) samples through the pool; images/s of the second."""
    n = max(images, 4 * lanes)
    indices = [i % images for i in range(n)]
    sut.run_direct(indices)
    seconds = sut.run_direct(indices)
    sut.reset()
    return n / seconds


def run_offline(sut: PoolSUT, cfg: ScenarioConfig, ips: float, folder: Path, rel: str) -> dict:
    sut.reset()
    # LoadGen's one query holds 1.1 x min duration x the expected rate: a rate above the warm-up's keeps a
    # faster-than-estimated pool from finishing before the minimum duration (INVALID)
    expected = OFFLINE_HEADROOM * ips
    r = loadgen.run_test(sut.issue, sut.flush, len(sut.qsl), loadgen.test_settings(OFFLINE, cfg, expected_qps=expected),
                         folder, OFFLINE, sut.qsl.load, sut.qsl.unload, serve=sut.serve)
    if sut.error is not None:
        return _failed(sut, "runtime error under concurrent requests")
    rate = r.figures.get("samples_per_s")
    return {"status": "ok", "reason": None, **_result_fields(r, rel), "ips": rate,
            "mpix_s": None if not rate or not sut.samples else rate * sut.mpix / sut.samples,
            "samples": sut.samples, "p50_ms": r.figures.get("p50_ms"), "p99_ms": r.figures.get("p99_ms")}


def run_multi_stream(sut: PoolSUT, cfg: ScenarioConfig, ips: float, folder: Path, rel: str) -> dict:
    sut.reset()
    expected = cfg.multi_stream_samples / ips
    r = loadgen.run_test(sut.issue, sut.flush, len(sut.qsl), loadgen.test_settings(MULTI_STREAM, cfg,
                         expected_latency_s=expected), folder, MULTI_STREAM, sut.qsl.load, sut.qsl.unload,
                         serve=sut.serve)
    if sut.error is not None:
        return _failed(sut, "runtime error under concurrent requests")
    f = r.figures
    return {"status": "ok", "reason": None, **_result_fields(r, rel), "samples_per_query": cfg.multi_stream_samples,
            "p99_ms": f.get("result_ms", f.get("p99_ms")), "p50_ms": f.get("p50_ms"),
            "queries": int(sut.samples / cfg.multi_stream_samples)}


def run_server(sut, cfg: ScenarioConfig, capacity: float, bound_ms: float, folder: Path, rel: str) -> dict:
    """The server search on `sut` (:class:`PoolSUT` or :class:`InlineSUT`): every run, the highest held QPS.

    Returns:
        the :class:`SearchResult` as a dict, with "bound_ms", "capacity_qps" and "failed" (the system under
        test's error, or None).
    """
    count = [0]

    def one(qps: float) -> ServerRun:
        count[0] += 1
        name = f"{count[0]:02d}-qps-{qps:.4g}"
        sut.reset()
        t0 = time.perf_counter()
        r = loadgen.run_test(sut.issue, sut.flush, len(sut.qsl), loadgen.test_settings(
            SERVER, cfg, target_qps=qps, latency_bound_s=bound_ms / 1000.0), folder / name, SERVER,
            sut.qsl.load, sut.qsl.unload, serve=sut.serve)
        failed = None if sut.error is None else _one_line(sut.error)
        held = failed is None and bool(r.constraints.get("performance"))
        log.info(f"bench: server {qps:.3g} QPS: p99 {r.figures.get('p99_ms', float('nan')):.1f} ms "
                 f"({'within' if held else 'over'} {bound_ms:.1f} ms), {time.perf_counter() - t0:.1f} s")
        return ServerRun(target_qps=qps, p99_ms=r.figures.get("p99_ms"), held=held,
                         completed_qps=r.figures.get("samples_per_s"), verdict=r.verdict, reason=r.reason,
                         failed=failed, folder=f"{rel}/{name}",
                         extra={"p50_ms": r.figures.get("p50_ms"), "scheduled_qps": r.figures.get("scheduled_per_s"),
                                "queries": sut.samples})

    result = search_max_qps(one, capacity, cfg.server_runs, cfg.server_precision)
    return {**result.to_dict(), "bound_ms": bound_ms, "capacity_qps": capacity,
            "failed": next((r.failed for r in result.runs if r.failed), None)}
