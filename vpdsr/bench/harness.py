"""The benchmark: every backend over the same images and noise, quality then latency, one report.

Order of work (so that bad input costs nothing): read and check every image, resolve the
backends and the metrics, then per backend: load it (memory sampling starts), upscale every
image tiled with the same :class:`NoiseField` seed, score the outputs against the reference's,
then time repeated upscales of the first image. The reference runs first; its outputs are kept
for the comparisons, the others' are scored as they come and dropped (only crops are kept).

Roofline figures (:mod:`vpdsr.bench.roofline`): the machine's matmul peaks are measured once per
machine and thread count (cached, :mod:`vpdsr.bench.peak`), the model's FLOPs are counted from the
torch graph per call shape (:mod:`vpdsr.bench.flops`), and every row gets GFLOP per image, effective
GFLOP/s, % of the peak for its precision, ms per output megapixel and its tiling overhead. An INT8
row slower than its backend's fp32 row is flagged with the reason (:mod:`vpdsr.bench.int8_flags`).
`tile="auto"` (the default) lets each backend choose its own tiling (:mod:`vpdsr.runtimes.autotile`);
`threads="auto"` takes the thread count from a short probe (:func:`vpdsr.env.probe_threads`).

Example:
    >>> result = run_bench(BenchConfig(model="tiny", artifacts="artifacts", images="samples:holdout"))
    >>> result.report["backends"][0]["latency_ms"]["p50"]
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from vpdsr import env
from vpdsr.bench.backends import (
    UNTUNED,
    UNTUNED_TILING,
    BackendSpec,
    one_line,
    open_runner,
    resolve_backends,
    resolve_names,
    set_torch_threads,
)
from vpdsr.bench.baselines import DEFAULT_GAN, BaselineConfig, bicubic_row, other_baselines
from vpdsr.bench.flops import FlopCounter
from vpdsr.bench.gates import GateConfig, apply_required, evaluate, latency_change_pct, verdict
from vpdsr.bench.inputs import BenchImage, load_bench_images
from vpdsr.bench.int8_flags import collect_kernels, flag_int8_rows
from vpdsr.bench.latency import LatencyConfig, PeakMemory, cuda_peak_mb, cuda_peak_reset, measure, summarize
from vpdsr.bench.peak import machine_peaks
from vpdsr.bench.plane_report import plane_section
from vpdsr.bench.quality import MetricSuite, aggregate, image_scores
from vpdsr.bench.roofline import roofline
from vpdsr.bench.scenarios import hook as scenarios
from vpdsr.bench.scenarios.config import ScenarioConfig
from vpdsr.bench.scenarios.plan import check_gates, plan_scenarios
from vpdsr.env import probe_threads
from vpdsr.errors import CapabilityError, InputError, MissingWeightsError, VpdsrError
from vpdsr.runtimes.autotile import AutoTileConfig
from vpdsr.runtimes.tiling import TileConfig
from vpdsr.runtimes.upscale import AUTO, Upscaler

log = logging.getLogger(__name__)
SCHEMA = 1
CROP_SIZE = 96  # SR pixels of the side-by-side crops


@dataclass
class BenchConfig:
    """Everything `vpdsr bench` takes (see its --help)."""

    model: str
    images: str
    artifacts: str | None = None
    hr: str | None = None
    backends: list[str] | None = None
    reference: str = "torch-fp32"
    device: str = "cpu"
    torch_compile: str | None = None  # torch.compile mode for the non-reference torch backends
    cuda_graphs: bool = False  # CUDA graphs for the non-reference torch backends
    seed: int = 0
    tile: int | str | None = "auto"
    overlap: int = 8
    batch: int = 4
    max_images: int | None = None
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    clip_weights: str | None = None
    lpips_weights: str | None = None
    baseline_path: str | None = None
    gan_baseline: str | None = DEFAULT_GAN  # a noise-free SR network's row (None: none), see bench/baselines.py
    teacher: str | None = None  # a diffusion model whose T-step samples are a row
    roofline: bool = True
    scenarios: ScenarioConfig = field(default_factory=ScenarioConfig)  # MLPerf scenarios (vpdsr.bench.scenarios)


@dataclass
class BenchResult:
    """The report (JSON-ready apart from inf values) and the crops for the HTML page."""

    report: dict
    crops: dict[str, np.ndarray]
    crop_box: tuple[int, int, int] | None = None  # (y, x, size) in SR pixels of the first image
    loadgen_dir: Path | None = None  # LoadGen's logs (report.write_report moves them into the report folder)

    @property
    def failed_gates(self) -> list[dict]:
        """Every check that failed the run: failed backends (``backend-ran``) and threshold gates."""
        return [g for g in self.report["gates"] if not g["passed"]]


def run_bench(cfg: BenchConfig) -> BenchResult:
    """Run the benchmark and build the report (nothing is written here).

    Raises:
        InputError: a corrupt image, an unknown backend, a gate that cannot be evaluated.
        VpdsrError: the reference backend could not run.
    """
    if cfg.tile != AUTO:
        TileConfig(cfg.tile, cfg.overlap, cfg.batch)  # a bad tiling is a user error before anything runs
    images = load_bench_images(cfg.images, cfg.hr, max_images=cfg.max_images)
    specs = resolve_backends(cfg.model, cfg.artifacts, cfg.backends, cfg.reference, cfg.device,
                             cfg.torch_compile, cfg.cuda_graphs)
    policy = replace(cfg.gates, require=resolve_names(cfg.gates.require, specs, "--require"),
                     allow_failed=resolve_names(cfg.gates.allow_failed, specs, "--allow-failed"))
    check_gates(cfg.scenarios, cfg.gates.min_offline_ips, cfg.gates.max_server_p99_ms)
    scenario_plan = plan_scenarios(cfg.scenarios, specs, gated=cfg.gates.min_offline_ips is not None
                                   or cfg.gates.max_server_p99_ms is not None)
    probe = None
    if cfg.latency.threads == AUTO:  # after the input checks: bad input costs nothing
        probe = probe_threads()
        cfg.latency = replace(cfg.latency, threads=probe["threads"])
        log.debug(f"bench: {probe['threads']} thread(s) (probe: {probe['ms']} ms per 512^2 matmul, "
                  f"load average {probe['loadavg'][0] if probe['loadavg'] else '?'})")
    set_torch_threads(cfg.latency.threads)
    suite = MetricSuite.build(cfg.clip_weights, cfg.lpips_weights)
    check_gates_can_run(policy, suite, images)
    log.info(f"bench: {len(images)} image(s), backends: {', '.join(s.name for s in specs)}; "
        f"CLIPIQA {'on' if suite.clip else 'off'}, LPIPS {'on' if suite.lpips else 'off'}, "
        f"PIQE {'on' if suite.reason('piqe') is None else 'off'}")

    bicubic, bicubic_out = bicubic_row(images, suite)
    state = _RunState(images=images, suite=suite, cfg=cfg, scenarios=scenario_plan)
    if scenario_plan.backends and not scenario_plan.skipped:
        import tempfile

        state.loadgen_dir = Path(tempfile.mkdtemp(prefix="vpdsr-loadgen-"))
    if cfg.roofline:
        state.peaks, state.flops = _roofline_inputs(cfg)
        if state.flops is not None:
            from vpdsr.bench.layers import LayerCounter

            state.layers = LayerCounter(state.flops.model, state.flops.noise_channels)
    state.crops["bicubic"] = bicubic_out[0]
    if images[0].hr is not None:
        state.crops["hr"] = images[0].hr
    from tqdm.auto import tqdm

    rows = []
    for spec in tqdm(specs, desc="bench", unit="backend", disable=None):  # a bar on a terminal only
        rows.append(_run_backend(spec, state))
        if spec.name == specs[0].name and rows[-1]["status"] != "ok":
            raise VpdsrError(f"the reference backend {spec.name} {rows[-1]['status']}: {rows[-1]['reason']}")

    baseline = cfg.gates.baseline
    if baseline is not None:
        base_rows = {b.get("name"): b for b in baseline.get("backends", [])}
        for row in rows:
            if row["name"] in base_rows:
                row["latency_change_pct"] = latency_change_pct(row, base_rows[row["name"]])
    flag_int8_rows(rows, state.peaks)
    scenarios.fail_rows(rows)
    apply_required(rows, policy.require)
    gates = evaluate(rows, cfg.reference, policy)
    gates += scenarios.scenario_gates(rows, scenario_plan, policy.min_offline_ips, policy.max_server_p99_ms)
    outcome = verdict(rows, gates, policy)
    # what a user would ship instead (bicubic, a GAN, the teacher) and HR itself, scored like the backends
    # `--tile auto` chooses per engine; the baselines' torch runs then pick their own (whole image when small)
    baseline_tile = None if cfg.tile == AUTO else cfg.tile
    baselines = [bicubic, *other_baselines(BaselineConfig(cfg.gan_baseline, cfg.teacher, cfg.seed), cfg.model,
                                           images, suite, baseline_tile, cfg.overlap)]
    report = {
        "schema": SCHEMA,
        "model": _model_info(cfg.model),
        "artifacts": str(cfg.artifacts) if cfg.artifacts else None,
        "images": len(images),
        "image_names": [im.name for im in images],
        "hr": cfg.hr is not None,
        "reference": cfg.reference,
        "seed": cfg.seed,
        "tiling": {"tile": cfg.tile, "overlap": cfg.overlap, "batch": cfg.batch},
        "roofline": _roofline_summary(state),
        "scenarios": scenario_plan.summary(),
        "latency_config": asdict(cfg.latency),
        "metrics": suite.availability(),
        "bicubic": bicubic["quality"],
        "backends": rows,
        "baselines": baselines,
        "plane": plane_section(rows, baselines),
        "gates": [g.to_dict() for g in gates],
        "passed": outcome["passed"],
        "verdict": outcome,
        "baseline": cfg.baseline_path,
        "environment": {**environment(cfg.latency.threads), "threads_probe": probe,
                        "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return BenchResult(report=report, crops=state.crops, crop_box=state.crop_box, loadgen_dir=state.loadgen_dir)


@dataclass
class _RunState:
    images: list[BenchImage]
    suite: MetricSuite
    cfg: BenchConfig
    ref_outputs: list[np.ndarray] | None = None
    ref_rows: list[dict] | None = None
    crops: dict = field(default_factory=dict)
    crop_box: tuple[int, int, int] | None = None
    peaks: dict | None = None
    flops: FlopCounter | None = None
    peaks_at: dict = field(default_factory=dict)  # {threads: machine_peaks} of rows at another count
    layers: object | None = None  # vpdsr.bench.layers.LayerCounter (the attainable time)
    scenarios: object | None = None  # vpdsr.bench.scenarios.plan.ScenarioPlan
    loadgen_dir: Path | None = None


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


def _run_backend(spec: BackendSpec, st: _RunState) -> dict:
    """One backend's row: ok with figures, skipped (cannot run here) or failed (should run and did not)."""
    row = _empty_row(spec)
    if not spec.runs:
        log.log(logging.WARNING if spec.status == "failed" else logging.INFO,
                f"bench: {spec.name}: {'FAILED' if spec.status == 'failed' else 'skipped'} ({spec.reason})")
        return row
    cuda_peak_reset(spec.device)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        try:
            runner = open_runner(spec, st.cfg.latency.threads)
            runner.activate()
        except CapabilityError as e:
            return _not_run(row, "skipped", e, "load error")
        except Exception as e:  # noqa: BLE001 - a tampered, corrupt or unloadable artifact is a failed backend
            return _not_run(row, "failed", e, "load error")
        row["load_s"] = time.perf_counter() - t0
        row["device"] = getattr(runner, "device", spec.device)
        try:
            _measure_backend(runner, spec, st, row, mem)
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


def check_gates_can_run(gates: GateConfig, suite: MetricSuite, images: list[BenchImage], scale: int = 4) -> None:
    """A gate on a metric that cannot be computed here is bad input, found before any backend runs."""
    if gates.max_clipiqa_drift is not None and suite.clip is None:
        raise MissingWeightsError(f"`--max-clipiqa-drift` needs CLIPIQA, which is {suite.clip_reason}")
    for flag, metric, value in (("--max-piqe-drift", "piqe", gates.max_piqe_drift),
                                ("--min-ms-ssim-vs-ref", "ms_ssim", gates.min_ms_ssim_vs_ref)):
        if value is None:
            continue
        if suite.reason(metric):
            raise InputError(f"`{flag}` needs {metric}, which is {suite.reason(metric)}")
        metric_set = suite.no_ref if metric in suite.no_ref.names else suite.full_ref
        for im in images:
            problem = metric_set.size_problem(metric, im.lr.shape[0] * scale, im.lr.shape[1] * scale)
            if problem:
                raise InputError(f"`{flag}` cannot be evaluated on {im.name} (its x{scale} output): {problem}")


def _measure_backend(runner, spec: BackendSpec, st: _RunState, row: dict, mem: PeakMemory) -> None:
    cfg = st.cfg
    call_times: list[float] = []
    stage_times: dict[str, list[float]] = {}

    def record(r) -> None:
        call_times.append(r.last_inference_time())
        # split artifacts (StagedRunner) keep each stage's time of the last call in `stage_times`
        for k, v in (getattr(r, "stage_times", None) or {}).items():
            stage_times.setdefault(k, []).append(v)

    flops_fn = st.flops.flops if st.flops is not None else None
    untuned = bool(spec.extra.get(UNTUNED))
    if untuned:  # the tiling and noise from before the tuning (see vpdsr.bench.backends)
        wanted = TileConfig(*UNTUNED_TILING)
    elif cfg.tile == AUTO:
        wanted = AutoTileConfig(overlap=cfg.overlap, max_batch=cfg.batch)
    else:
        wanted = TileConfig(cfg.tile, cfg.overlap, cfg.batch)
    upscaler = Upscaler(runner, wanted, cfg.seed, on_call=record, flops=flops_fn, noise_cache_mb=0 if untuned else 64)
    is_ref = st.ref_outputs is None
    per_image, outputs = [], []
    for i, im in enumerate(st.images):
        sr = upscaler(im.lr)
        mem.sample_now()
        ref = None if is_ref else st.ref_outputs[i]
        per_image.append({"name": im.name, **image_scores(sr, ref, im.hr, st.suite)})
        if is_ref:
            outputs.append(sr)
        if i == 0:
            if is_ref:
                st.crop_box = choose_crop(sr, CROP_SIZE)
            st.crops[spec.name] = sr
        log.debug(f"bench: {spec.name}: quality {i + 1}/{len(st.images)} ({im.name})")
    if is_ref:
        st.ref_outputs, st.ref_rows = outputs, per_image
    row["quality"] = aggregate(per_image, None if is_ref else st.ref_rows, st.suite)

    first = st.images[0]
    plan = upscaler.plan(*first.lr.shape[:2])
    row["tiling"] = {"mode": "auto" if upscaler.auto else "fixed",
                     "config": asdict(upscaler.tiles_for_size(*first.lr.shape[:2])), "plan": plan.to_dict(),
                     "auto": upscaler.auto.choices if upscaler.auto else None}
    call_times.clear()
    stage_times.clear()

    def after_call(done: int, planned: int) -> None:
        mem.sample_now()
        if done == cfg.latency.warmup:  # engine timings of the timed calls only
            call_times.clear()
            stage_times.clear()

    samples = measure(lambda: upscaler(first.lr), cfg.latency, after_call)
    stats = summarize(samples, images_per_call=1)
    row["latency_ms"] = stats.latency_dict()
    row["throughput_ips"] = stats.throughput_ips
    calls = [t for t in call_times if t is not None]
    if calls:
        row["call_latency_ms"] = {**summarize(calls, plan.batch).latency_dict(),
                                  "tiles_per_call": plan.batch,
                                  "tile": plan.tile_h if plan.tile_h == plan.tile_w else [plan.tile_h, plan.tile_w]}
    if stage_times:
        row["stage_latency_ms"] = {k: summarize(v).latency_dict() for k, v in stage_times.items()}
    if spec.precision == "int8":
        try:
            row["kernels"] = collect_kernels(runner)
        except (VpdsrError, RuntimeError, OSError) as e:  # evidence for a flag only: never fails the row
            log.warning(f"bench: {spec.name}: no kernel summary ({one_line(e)})")
    if cfg.roofline:
        engine_ms = 1000.0 * sum(calls) / stats.n if len(calls) == plan.calls * stats.n else None
        peaks = _engine_default_peaks(st) if untuned else st.peaks
        row["roofline"] = roofline(row, plan, flops_fn, peaks, runner.scale, engine_ms,
                                   single_call_ms(runner, plan, calls),
                                   st.layers.layers if st.layers is not None else None)
    scenarios.run_for_row(st.scenarios, spec, runner, upscaler, st.images, row, st.loadgen_dir, cfg.seed)
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


def _engine_default_peaks(st: _RunState) -> dict | None:
    """The peaks an `@untuned` row is measured against: the engines' own thread count is every CPU this
    process has, not the run's `--threads` (a 1-thread peak under a 2-thread row read above 100 %)."""
    n = env.available_cpus()
    if st.peaks is not None and st.peaks.get("threads") == n:
        return st.peaks
    if n not in st.peaks_at:
        try:
            st.peaks_at[n] = machine_peaks(n)
        except Exception as e:  # noqa: BLE001 - as in _roofline_inputs: no figure, never a lost benchmark
            log.warning(f"bench: no {n}-thread peak figures for the @untuned rows ({one_line(e)})")
            st.peaks_at[n] = None
    return st.peaks_at[n]


def _roofline_inputs(cfg: BenchConfig) -> tuple[dict | None, FlopCounter | None]:
    """The machine's peaks (cached) and a FLOP counter of the model; either is None, with a warning, when
    it cannot be had (the rest of the benchmark does not depend on them)."""
    peaks = counter = None
    try:
        peaks = machine_peaks(cfg.latency.threads)
    except Exception as e:  # an engine failing in an unforeseen way must not cost the benchmark
        log.warning(f"bench: no peak figures ({one_line(e)})")
    try:
        from vpdsr.models import from_pretrained

        counter = FlopCounter(from_pretrained(cfg.model))
    except (VpdsrError, OSError, RuntimeError) as e:
        log.warning(f"bench: no FLOP count of {cfg.model} ({one_line(e)})")
    return peaks, counter


def _roofline_summary(st: _RunState) -> dict | None:
    if st.peaks is None and st.flops is None:
        return None
    peaks = st.peaks or {}
    return {"peak": peaks.get("peak"), "figures": peaks.get("figures"), "threads": peaks.get("threads"),
            "size": peaks.get("size"),
            "measured": peaks.get("measured"), "loadavg": peaks.get("loadavg"), "cached": peaks.get("cached"),
            "bandwidth": peaks.get("bandwidth"),
            "flops_error": st.flops.error if st.flops is not None else "no model to count"}


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


def _model_info(model: str) -> dict:
    info: dict = {"source": str(model)}
    try:
        from vpdsr.models.checkpoint import load_config

        p = Path(model)
        if p.is_dir():
            info["preset"] = load_config(p).preset
        else:
            info["preset"] = str(model)
    except (VpdsrError, OSError):
        pass
    from vpdsr.bench.model_stats import model_stats

    return {**info, **model_stats(model)}  # parameters, GFLOP per LR 64x64


def environment(threads: int | None) -> dict:
    """Where the numbers were measured: versions, CPU, GPUs, threads."""
    import torch

    from vpdsr import env

    return {**env.machine(), "threads": threads, "torch_threads": torch.get_num_threads(),
            "versions": env.versions(installed_only=True)}
