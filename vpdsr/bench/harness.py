"""The benchmark: every backend over the same images and noise, quality then latency, one report.

Order of work (so that bad input costs nothing): :func:`vpdsr.bench.plan.make_plan` reads the config
once and decides the run (images read and checked, backends and their tilings, threads, metrics, the
gates checked against them, the model and the teacher loaded once); then per backend: load it (memory sampling
starts), upscale every image tiled with the same :class:`NoiseField` seed, score the outputs against
the reference's, then time repeated upscales of the first image. The reference runs first; its
outputs are kept for the comparisons, the others' are scored as they come and dropped (only crops are
kept). Then the gates and the verdict; then the baselines (what a user would ship instead, outside the
gates) and, with `--teacher-artifacts`, the teacher's engines, timed as the backends were.

Roofline figures (:mod:`vpdsr.bench.roofline`): the machine's matmul peaks are measured once per
machine and thread count (cached, :mod:`vpdsr.bench.peak`), the model's FLOPs are counted from the
torch graph per call shape (:mod:`vpdsr.bench.flops`), and every row gets GFLOP per image, effective
GFLOP/s, % of the peak for its precision, ms per output megapixel and its tiling overhead. An INT8
row slower than its backend's fp32 row is flagged with the reason (:mod:`vpdsr.bench.int8_flags`).

What it changes: nothing the caller holds (the config is frozen), and no report is written here (that
is :func:`vpdsr.bench.report.write_report`). It sets torch's thread count to the run's (the torch
backends and the metrics use it), and two caches in the user's cache folder may be filled on the way:
the machine peaks (:mod:`vpdsr.bench.peak`) and a preset's foreign weights, converted once
(:mod:`vpdsr.models.presets`).

Example:
    >>> result = run_bench(BenchConfig(model="tiny", artifacts="artifacts", images="samples:holdout"))
    >>> result.report["backends"][0]["latency_ms"]["p50"]
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vpdsr.bench.backends import BackendSpec, one_line, open_runner, set_torch_threads
from vpdsr.bench.baselines import bicubic_row, other_baselines
from vpdsr.bench.config import BenchConfig
from vpdsr.bench.flops import FlopCounter
from vpdsr.bench.gates import apply_required, evaluate, latency_change_pct, verdict
from vpdsr.bench.inputs import BenchImage
from vpdsr.bench.int8_flags import collect_kernels, flag_int8_rows
from vpdsr.bench.latency import (
    LatencyConfig,
    LatencyStats,
    PeakMemory,
    cuda_peak_mb,
    cuda_peak_reset,
    measure,
    summarize,
)
from vpdsr.bench.peak import machine_peaks
from vpdsr.bench.plan import BackendPlan, BenchModel, BenchPlan, make_plan
from vpdsr.bench.plane_report import plane_section
from vpdsr.bench.quality import MetricSuite, aggregate, image_scores
from vpdsr.bench.roofline import roofline
from vpdsr.bench.scenarios import hook as scenarios
from vpdsr.errors import CapabilityError, VpdsrError
from vpdsr.runtimes.upscale import Upscaler

log = logging.getLogger(__name__)
SCHEMA = 1
CROP_SIZE = 96  # SR pixels of the side-by-side crops


@dataclass
class BenchResult:
    """The report (JSON-ready apart from inf values) and the crops for the HTML page."""

    report: dict
    crops: dict[str, np.ndarray]
    crop_box: tuple[int, int, int] | None = None  # (y, x, size) in SR pixels of the first image
    loadgen_dir: Path | None = None  # LoadGen's logs of the scenarios (write_report moves them into the report)

    @property
    def failed_gates(self) -> list[dict]:
        """Every check that failed the run: failed backends (``backend-ran``) and threshold gates."""
        return [g for g in self.report["gates"] if not g["passed"]]


@dataclass(frozen=True)
class _Reference:
    """What every other row is compared with: the reference backend's outputs and per-image scores."""

    outputs: list[np.ndarray]
    per_image: list[dict]


@dataclass(frozen=True)
class _Roofline:
    """The roofline's inputs: machine peaks per thread count (None where they could not be had) and the
    model's FLOP counter (None: no FLOPs)."""

    peaks: dict
    threads: int | None = None  # the run's own
    flops: FlopCounter | None = None
    layers: object | None = None  # vpdsr.bench.layers.LayerCounter: the attainable time

    @property
    def run_peaks(self) -> dict | None:
        return self.peaks.get(self.threads)

    @property
    def flops_fn(self):
        return self.flops.flops if self.flops is not None else None

    @property
    def layers_fn(self):
        return self.layers.layers if self.layers is not None else None


def run_bench(cfg: BenchConfig) -> BenchResult:
    """Run the benchmark and build the report (module docstring: what it changes and writes).

    Raises:
        InputError: a corrupt image, an unknown backend, a gate that cannot be evaluated.
        VpdsrError: the reference backend could not run.
    """
    plan = make_plan(cfg)
    set_torch_threads(plan.latency.threads)
    suite = plan.suite
    log.info(f"bench: {len(plan.images)} image(s), backends: {', '.join(b.spec.name for b in plan.backends)}; "
             f"CLIPIQA {'on' if suite.clip else 'off'}, LPIPS {'on' if suite.lpips else 'off'}, "
             f"PIQE {'on' if suite.reason('piqe') is None else 'off'}")
    bicubic, bicubic_out = bicubic_row(plan.images, suite)
    crops = {"bicubic": bicubic_out[0], **({"hr": plan.images[0].hr} if plan.images[0].hr is not None else {})}
    roof = _roofline_inputs(plan)
    logs = scenarios.log_folder(plan.scenarios)
    rows, crop_box = _run_backends(plan, roof, crops, logs)
    _compare_latency(rows, plan.policy.baseline)
    flag_int8_rows(rows, roof.run_peaks)
    scenarios.fail_rows(rows)
    apply_required(rows, plan.policy.require)
    gates = evaluate(rows, plan.reference, plan.policy)
    gates += scenarios.scenario_gates(rows, plan.scenarios, plan.policy.min_offline_ips,
                                      plan.policy.max_server_p99_ms)
    outcome = verdict(rows, gates, plan.policy)
    # what a user would ship instead (bicubic, a GAN, the teacher) and HR itself, scored like the backends
    baselines = [bicubic, *other_baselines(plan.baselines, plan.model.source, plan.images, suite, plan.baseline_tile,
                                           plan.tiling.overlap, plan.teacher_model), *_teacher_engines(plan.teacher)]
    report = {
        "schema": SCHEMA,
        "model": _model_info(plan.model),
        "artifacts": str(cfg.artifacts) if cfg.artifacts else None,
        "images": len(plan.images),
        "image_names": [im.name for im in plan.images],
        "hr": cfg.hr is not None,
        "reference": plan.reference,
        "seed": plan.seed,
        "tiling": {"tile": cfg.tile, "overlap": cfg.overlap, "batch": cfg.batch},
        "roofline": _roofline_summary(roof),
        "scenarios": plan.scenarios.summary() if plan.scenarios is not None else None,
        "latency_config": asdict(plan.latency),
        "metrics": suite.availability(),
        "bicubic": bicubic["quality"],
        "backends": rows,
        "baselines": baselines,
        "plane": plane_section(rows, baselines),
        "gates": [g.to_dict() for g in gates],
        "passed": outcome["passed"],
        "verdict": outcome,
        "baseline": cfg.baseline_path,
        "environment": {**environment(plan.latency.threads), "threads_probe": plan.threads_probe,
                        "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return BenchResult(report=report, crops=crops, crop_box=crop_box, loadgen_dir=logs)


def _run_backends(plan: BenchPlan, roof: _Roofline, crops: dict,
                  logs: Path | None = None) -> tuple[list[dict], tuple[int, int, int]]:
    """Every row in order, the reference first (it must run); each row's first output goes into `crops`.
    Returns the rows and the crop box (the most detailed square of the reference's first output)."""
    from tqdm.auto import tqdm

    rows, reference, box = [], None, None
    for bp in tqdm(plan.backends, desc="bench", unit="backend", disable=None):  # a bar on a terminal only
        outputs: list[np.ndarray] = []
        rows.append(_run_backend(bp, plan, roof, reference, outputs, logs))
        if outputs:
            crops[bp.spec.name] = outputs[0]
        if reference is None:
            if rows[-1]["status"] != "ok":
                raise VpdsrError(f"the reference backend {bp.spec.name} {rows[-1]['status']}: {rows[-1]['reason']}")
            reference, box = _Reference(outputs, rows[-1]["quality"]["per_image"]), choose_crop(outputs[0], CROP_SIZE)
    return rows, box


def _teacher_engines(plan: BenchPlan | None) -> list[dict]:
    """The teacher's engines timed and scored exactly as the backends, their drift against the teacher's own
    torch fp32: baseline rows `teacher:<backend>`."""
    if plan is None:
        return []
    rows, _ = _run_backends(plan, _roofline_inputs(plan), {})
    return [{**r, "name": f"teacher:{r['name']}", "kind": "teacher", "source": plan.model.source} for r in rows]


def _compare_latency(rows: list[dict], baseline: dict | None) -> None:
    """`latency_change_pct` of every row the `--baseline` report has too."""
    base_rows = {b.get("name"): b for b in (baseline or {}).get("backends", [])}
    for row in rows:
        if row["name"] in base_rows:
            row["latency_change_pct"] = latency_change_pct(row, base_rows[row["name"]])


def _empty_row(spec: BackendSpec) -> dict:
    return {
        "name": spec.name, "target": spec.target, "backend": spec.backend, "precision": spec.precision,
        "device": spec.device, "stages": spec.stages, "status": spec.status, "reason": spec.reason,
        "latency_ms": None, "throughput_ips": None, "peak_mem_mb": None, "peak_gpu_mem_mb": None,
        "call_latency_ms": None, "stage_latency_ms": None, "load_s": None, "tiling": None, "quality": None,
        "roofline": None, "flags": [], "kept": spec.kept,  # kept: a failed export artifact measured anyway
        "sensitivity": spec.extra.get("sensitivity"),  # the export's per-layer INT8 table and plot, if any
    }


def _not_run(row: dict, status: str, exc: BaseException, when: str) -> dict:
    """Mark a row skipped (CapabilityError: cannot run here) or failed (anything else), logged once."""
    why = one_line(exc) if status == "skipped" else f"{when}: {one_line(exc)}"
    if row.get("kept"):  # a kept failed artifact that then did not run: both reasons, and no figures
        status, why, row["kept"] = "failed", f"{row['reason']}; {why}", False
    row.update(status=status, reason=why, latency_ms=None, quality=None)
    if status == "skipped":
        log.info(f"bench: {row['name']}: skipped ({row['reason']})")
    else:  # the traceback goes to the log file: a backend that breaks may be a bug
        log.warning(f"bench: {row['name']}: FAILED ({row['reason']})")
        log.debug(f"bench: {row['name']}: {when} failed", exc_info=exc)
    return row


def _run_backend(bp: BackendPlan, plan: BenchPlan, roof: _Roofline, reference: _Reference | None,
                 outputs: list[np.ndarray], logs: Path | None = None) -> dict:
    """One backend's row: ok with figures, skipped (cannot run here) or failed (should run and did not).

    `outputs` receives its outputs as they come: every image's for the reference, else the first (the crop).
    """
    spec, row = bp.spec, _empty_row(bp.spec)
    if not spec.runs:
        log.log(logging.WARNING if spec.status == "failed" else logging.INFO,
                f"bench: {spec.name}: {'FAILED' if spec.status == 'failed' else 'skipped'} ({spec.reason})")
        return row
    cuda_peak_reset(spec.device)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        try:
            runner = open_runner(spec, plan.latency.threads, plan.model.checked() if spec.backend == "torch" else None)
            runner.activate()
        except CapabilityError as e:
            return _not_run(row, "skipped", e, "load error")
        except Exception as e:  # noqa: BLE001 - a tampered, corrupt or unloadable artifact is a failed backend
            return _not_run(row, "failed", e, "load error")
        row["load_s"] = time.perf_counter() - t0
        row["device"] = getattr(runner, "device", spec.device)
        try:
            _measure_backend(runner, bp, plan, roof, reference, row, mem, outputs, logs)
        except CapabilityError as e:
            _not_run(row, "skipped", e, "runtime error")
        except Exception as e:  # noqa: BLE001 - a backend that breaks mid-run fails, the others still run
            _not_run(row, "failed", e, "runtime error")
        finally:
            if hasattr(runner, "describe"):  # the torch GPU path: compile mode, CUDA graphs captured or why not
                row["runner_options"] = runner.describe()
            runner.deactivate()
    if row["status"] == "ok" or row["kept"]:
        row["peak_mem_mb"] = mem.peak_mb
        row["peak_gpu_mem_mb"] = cuda_peak_mb(spec.device)
    return row


class _EngineTimes:
    """The engine's own time of every call, and of each stage of a split artifact (StagedRunner)."""

    def __init__(self) -> None:
        self.calls: list[float | None] = []
        self.stages: dict[str, list[float]] = {}

    def record(self, runner) -> None:
        self.calls.append(runner.last_inference_time())
        for k, v in (getattr(runner, "stage_times", None) or {}).items():  # each stage's time of the last call
            self.stages.setdefault(k, []).append(v)

    def clear(self) -> None:
        self.calls.clear()
        self.stages.clear()


def _measure_backend(runner, bp: BackendPlan, plan: BenchPlan, roof: _Roofline, reference: _Reference | None,
                     row: dict, mem: PeakMemory, outputs: list[np.ndarray], logs: Path | None = None) -> None:
    """Quality over every image, latency of the first, roofline, then the MLPerf scenarios on the same runner and
    tiling (LoadGen's logs into `logs`); the figures go into `row`."""
    times = _EngineTimes()
    upscaler = Upscaler(runner, bp.tiles, plan.seed, on_call=times.record, flops=roof.flops_fn,
                        noise_cache_mb=bp.noise_cache_mb)
    row["quality"] = _score(upscaler, bp.spec.name, plan.images, plan.suite, reference, mem, outputs)
    stats, calls = _time(upscaler, plan.images[0], plan.latency, mem, times, row)
    tiles = upscaler.last_plan  # the timed image's: chosen once, when it was first upscaled
    row["tiling"] = {"mode": "auto" if upscaler.auto else "fixed", "config": asdict(upscaler.last_tiles),
                     "plan": tiles.to_dict(), "auto": upscaler.auto.choices if upscaler.auto else None}
    if bp.spec.precision == "int8":
        try:
            row["kernels"] = collect_kernels(runner)
        except (VpdsrError, RuntimeError, OSError) as e:  # evidence for a flag only: never fails the row
            log.warning(f"bench: {bp.spec.name}: no kernel summary ({one_line(e)})")
    if plan.roofline:
        engine_ms = 1000.0 * sum(calls) / stats.n if len(calls) == tiles.calls * stats.n else None
        row["roofline"] = roofline(row, tiles, roof.flops_fn, roof.peaks.get(bp.peak_threads), runner.scale,
                                   engine_ms, single_call_ms(runner, tiles, calls), roof.layers_fn)
    scenarios.run_for_row(plan.scenarios, bp.spec, runner, upscaler, plan.images, row, logs, plan.seed)
    _log_figures(bp.spec, row, stats, is_ref=reference is None)


def _score(upscaler: Upscaler, name: str, images: tuple[BenchImage, ...], suite: MetricSuite,
           reference: _Reference | None, mem: PeakMemory, outputs: list[np.ndarray]) -> dict:
    """Every image upscaled and scored (against the reference's output of it, when this is not the reference);
    the row's `quality`. Outputs kept go into `outputs`: all for the reference, else the first."""
    per_image = []
    for i, im in enumerate(images):
        sr = upscaler(im.lr)
        mem.sample_now()
        per_image.append({"name": im.name, **image_scores(sr, None if reference is None else reference.outputs[i],
                                                          im.hr, suite)})
        if reference is None or i == 0:
            outputs.append(sr)
        log.debug(f"bench: {name}: quality {i + 1}/{len(images)} ({im.name})")
    return aggregate(per_image, None if reference is None else reference.per_image, suite)


def _time(upscaler: Upscaler, image: BenchImage, latency: LatencyConfig, mem: PeakMemory, times: _EngineTimes,
          row: dict) -> tuple[LatencyStats, list[float]]:
    """Repeated upscales of `image`: the row's latency figures; returns the stats and the engine call times."""
    times.clear()

    def after_call(done: int, planned: int) -> None:
        mem.sample_now()
        if done == latency.warmup:  # engine timings of the timed calls only
            times.clear()

    stats = summarize(measure(lambda: upscaler(image.lr), latency, after_call), images_per_call=1)
    row["latency_ms"] = stats.latency_dict()
    row["throughput_ips"] = stats.throughput_ips
    calls = [t for t in times.calls if t is not None]
    tiles = upscaler.last_plan
    if calls:
        tile = tiles.tile_h if tiles.tile_h == tiles.tile_w else [tiles.tile_h, tiles.tile_w]
        row["call_latency_ms"] = {**summarize(calls, tiles.batch).latency_dict(), "tiles_per_call": tiles.batch,
                                  "tile": tile}
    if times.stages:
        row["stage_latency_ms"] = {k: summarize(v).latency_dict() for k, v in times.stages.items()}
    return stats, calls


def _log_figures(spec: BackendSpec, row: dict, stats: LatencyStats, is_ref: bool) -> None:
    """The row's one line on the terminal: latency, throughput, fidelity to the reference, PIQE and its drift."""
    q = row["quality"]
    fidelity = "" if is_ref else f", PSNR vs ref {q['psnr_vs_ref']:.2f} dB"
    if q.get("piqe") is not None:
        drift = q.get("piqe_drift")
        fidelity += f", PIQE {q['piqe']:.2f}" + ("" if is_ref or drift is None else f" ({drift:+.2f} vs ref)")
    figures = f"p50 {stats.p50_ms:.1f} ms/image over {stats.n} runs, {stats.throughput_ips:.2f} images/s{fidelity}"
    if spec.kept:  # measured, and still failed: the export's reason goes with the figures
        log.warning(f"bench: {spec.name}: FAILED ({spec.reason}), measured anyway (--keep-failed): {figures}")
    else:
        log.info(f"bench: {spec.name}: ok, {figures}")


def single_call_ms(runner, plan, calls: list[float]) -> float | None:
    """ms of one batch-1 call of the plan's tile shape: the timed calls' median when that is what they were,
    else the median of 3 calls on random inputs (after one untimed)."""
    if plan.batch == 1 and calls:
        return float(np.median(calls)) * 1000.0
    rng = np.random.default_rng(0)
    feed = {"lr": rng.random((1, 3, plan.tile_h, plan.tile_w), dtype=np.float32)}
    if runner.noise_channels:
        feed["noise"] = rng.standard_normal((1, runner.noise_channels, plan.tile_h, plan.tile_w), dtype=np.float32)
    runner.infer(feed)
    times = []
    for _ in range(3):
        runner.infer(feed)
        times.append(runner.last_inference_time())
    return float(np.median(times)) * 1000.0


def _roofline_inputs(plan: BenchPlan) -> _Roofline:
    """The machine's peaks (cached) at each thread count a row is measured against, and a FLOP counter of the
    model; each is None, with a warning, when it cannot be had (the rest of the benchmark does not need them)."""
    if not plan.roofline:
        return _Roofline(peaks={})
    peaks = {plan.peak_threads: _peaks(plan.peak_threads, "no peak figures")}
    for bp in plan.backends:  # @untuned rows: the engines' own thread count (a 1-thread peak under a 2-thread
        if bp.spec.runs and bp.peak_threads not in peaks:  # row read above 100 %)
            peaks[bp.peak_threads] = _peaks(bp.peak_threads, f"no {bp.peak_threads}-thread peak figures for the "
                                                             "@untuned rows")
    counter = None
    try:
        counter = FlopCounter(plan.model.module) if plan.model.module is not None else None
    except (VpdsrError, OSError, RuntimeError) as e:
        log.warning(f"bench: no FLOP count of {plan.model.source} ({one_line(e)})")
    if plan.model.error is not None:
        log.warning(f"bench: no FLOP count of {plan.model.source} ({one_line(plan.model.error)})")
    layers = None
    if counter is not None:
        from vpdsr.bench.layers import LayerCounter

        layers = LayerCounter(counter.model, counter.noise_channels)  # counter.model: the meta copy, no weights
    return _Roofline(peaks=peaks, threads=plan.peak_threads, flops=counter, layers=layers)


def _peaks(threads: int, missing: str) -> dict | None:
    try:
        return machine_peaks(threads)
    except Exception as e:  # noqa: BLE001 - an engine failing in an unforeseen way must not cost the benchmark
        log.warning(f"bench: {missing} ({one_line(e)})")
        return None


def _roofline_summary(roof: _Roofline) -> dict | None:
    peaks = roof.run_peaks
    if peaks is None and roof.flops is None:
        return None
    peaks = peaks or {}
    return {"peak": peaks.get("peak"), "figures": peaks.get("figures"), "threads": peaks.get("threads"),
            "size": peaks.get("size"),
            "measured": peaks.get("measured"), "loadavg": peaks.get("loadavg"), "cached": peaks.get("cached"),
            "bandwidth": peaks.get("bandwidth"),
            "flops_error": roof.flops.error if roof.flops is not None else "no model to count"}


def choose_crop(image: np.ndarray, size: int) -> tuple[int, int, int]:
    """(y, x, size) of the most detailed square of ``image`` (highest gradient energy on a grid)."""
    h, w = image.shape[:2]
    size = min(size, h, w)
    gray = image.mean(axis=2)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    best, box = -1.0, (0, 0)
    step = max(1, size // 2)
    for y in range(0, max(1, h - size + 1), step):
        for x in range(0, max(1, w - size + 1), step):
            e = float(energy[y : y + size - 1, x : x + size - 1].sum())
            if e > best:
                best, box = e, (y, x)
    return box[0], box[1], size


def _model_info(model: BenchModel) -> dict:
    """Where the model came from, its preset, and its parameters and GFLOP per LR 64x64 (when it loaded)."""
    info: dict = {"source": model.source}
    try:
        from vpdsr.models.checkpoint import load_config

        p = Path(model.source)
        info["preset"] = load_config(p).preset if p.is_dir() else model.source
    except (VpdsrError, OSError):
        pass
    from vpdsr.bench.model_stats import model_stats

    return {**info, **(model_stats(model.module) if model.module is not None else {})}


def environment(threads: int | None) -> dict:
    """Where the numbers were measured: versions, CPU, GPUs, threads."""
    import torch

    from vpdsr import env

    return {**env.machine(), "threads": threads, "torch_threads": torch.get_num_threads(),
            "versions": env.versions(installed_only=True)}
