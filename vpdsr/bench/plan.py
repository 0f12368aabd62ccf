"""The benchmark's plan: every decision made once, before the first backend runs.

:func:`make_plan` reads a :class:`~vpdsr.bench.config.BenchConfig` once and decides, in this order (so
that bad input costs nothing):

1. the run's tiling: `--tile N` is checked now; `auto` lets each backend choose its own per image size
   (:mod:`vpdsr.runtimes.autotile`);
2. the images, every one read and checked (:mod:`vpdsr.bench.inputs`);
3. the backends, the reference first (:mod:`vpdsr.bench.backends`), each with its tiling, noise cache
   and the thread count of the peak it is measured against (an `@untuned` row keeps the fixed 64-pixel
   tiling and the engines' own thread count from before the CPU tuning);
4. the gate policy, `--require` / `--allow-failed` resolved to this run's rows, and the MLPerf scenarios'
   plan (:mod:`vpdsr.bench.scenarios.plan`: which rows run them, each one's pool, the scenario gates checked);
5. the thread count (`auto`: a short probe now, :func:`vpdsr.env.probe_threads`);
6. the metrics this machine can compute, and every gate checked against them;
7. the benched model, loaded once: the torch rows run copies of it, the FLOP counter and the model's
   stats read it;
8. the teacher (`--teacher`), loaded once: its baseline row samples it, and with `--teacher-artifacts`
   its engines are a second plan (:attr:`BenchPlan.teacher`) over the same images, metrics and threads.

Nothing is written here, except that loading a preset may convert its foreign weights once into the
cache folder (:mod:`vpdsr.models.presets`); nothing is measured but the `auto` thread probe.

Example:
    >>> plan = make_plan(BenchConfig(model="tiny", images="samples:holdout", artifacts="artifacts"))
    >>> [(b.spec.name, type(b.tiles).__name__) for b in plan.backends]
    [('torch-fp32', 'AutoTileConfig'), ('onnx', 'AutoTileConfig'), ('onnx@untuned', 'TileConfig'), ...]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from vpdsr import env
from vpdsr.bench.backends import UNTUNED, UNTUNED_TILING, BackendSpec, one_line, resolve_backends, resolve_names
from vpdsr.bench.baselines import BaselineConfig
from vpdsr.bench.config import BenchConfig
from vpdsr.bench.gates import GateConfig
from vpdsr.bench.inputs import BenchImage, load_bench_images
from vpdsr.bench.latency import LatencyConfig
from vpdsr.bench.quality import MetricSuite
from vpdsr.bench.scenarios.plan import ScenarioPlan, plan_scenarios
from vpdsr.bench.scenarios.plan import check_gates as check_scenario_gates
from vpdsr.errors import InputError, MissingWeightsError
from vpdsr.runtimes.autotile import AutoTileConfig
from vpdsr.runtimes.tiling import TileConfig
from vpdsr.runtimes.upscale import AUTO

log = logging.getLogger(__name__)
NOISE_CACHE_MB = 64  # the noise field's block cache of every row but @untuned (see vpdsr.runtimes.noise)


@dataclass(frozen=True)
class BenchModel:
    """The benched model, loaded once (or why it could not be: the torch rows then fail with that reason).

    Attributes:
        source: the model directory or preset, as given.
        module: the loaded model (fp32, eval mode), or None.
        error: what loading it raised, when it did.
    """

    source: str
    module: object | None = None
    error: Exception | None = None

    def checked(self):
        """The module; the load error again when there is none."""
        if self.module is None:
            raise self.error
        return self.module


@dataclass(frozen=True)
class BackendPlan:
    """One row of the report before it runs.

    Attributes:
        spec: the backend (name, engine, precision, device, artifact, the export's status).
        tiles: its tiling: a fixed :class:`TileConfig`, or an :class:`AutoTileConfig` (chosen per image
            size by measurement on the runner).
        noise_cache_mb: the noise field's block cache (0: every tile draws its noise afresh, as before
            the CPU tuning; the values are the same either way).
        peak_threads: the thread count of the machine peak its % peak is measured against.
    """

    spec: BackendSpec
    tiles: TileConfig | AutoTileConfig
    noise_cache_mb: int
    peak_threads: int

    @property
    def untuned(self) -> bool:
        return bool(self.spec.extra.get(UNTUNED))


@dataclass(frozen=True)
class BenchPlan:
    """What the benchmark will do, decided once (module docstring); read by the harness, never changed.

    Attributes:
        images: the benchmark images, read and checked.
        backends: one plan per row, the reference first.
        reference: the reference backend's name, as given.
        tiling: the run's tiling (every row but @untuned).
        latency: warm-up, timed runs, budget and the thread count (a number now, or None: the library's).
        threads_probe: what the `auto` probe measured (None: threads were given).
        peak_threads: the thread count of the run's machine peak (the run's; torch's count when none was given).
        policy: the gates, with `require` / `allow_failed` resolved to this run's row names.
        suite: the metrics available here.
        model: the benched model.
        baselines: which baseline rows besides bicubic.
        seed: the noise seed of every row.
        roofline: machine peaks and FLOPs per row.
        scenarios: which rows run the MLPerf scenarios, and each one's pool (vpdsr.bench.scenarios.plan).
        teacher_model: the teacher of the baseline row (None: no `--teacher`).
        teacher: the teacher's engines (`--teacher-artifacts`): a plan of the same images, metrics and
            threads with the teacher's backends and model and no gates, no scenarios; None without them.
    """

    images: tuple[BenchImage, ...]
    backends: tuple[BackendPlan, ...]
    reference: str
    tiling: TileConfig | AutoTileConfig
    latency: LatencyConfig
    threads_probe: dict | None
    peak_threads: int
    policy: GateConfig
    suite: MetricSuite
    model: BenchModel
    baselines: BaselineConfig
    seed: int
    roofline: bool
    scenarios: ScenarioPlan | None = None
    teacher_model: BenchModel | None = None
    teacher: BenchPlan | None = None

    @property
    def baseline_tile(self) -> int | None:
        """The tile of the baselines' torch runs: the run's fixed tile; None with auto (they choose their own:
        the whole image when small)."""
        return self.tiling.tile if isinstance(self.tiling, TileConfig) else None


def make_plan(cfg: BenchConfig) -> BenchPlan:
    """Read `cfg` once and decide the run (module docstring).

    Raises:
        InputError: a bad tiling, a corrupt image, an unknown backend, a gate that cannot be evaluated here.
        ArtifactError: an artifacts folder without a readable manifest.
    """
    tiling = run_tiling(cfg.tile, cfg.overlap, cfg.batch)
    images = tuple(load_bench_images(cfg.images, cfg.hr, max_images=cfg.max_images))
    specs = resolve_backends(cfg.model, cfg.artifacts, cfg.backends, cfg.reference, cfg.device,
                             cfg.torch_compile, cfg.cuda_graphs)
    teacher_specs = None
    if cfg.teacher and cfg.teacher_artifacts:  # the teacher's engines, checked now as the student's are
        teacher_specs = resolve_backends(cfg.teacher, cfg.teacher_artifacts, None, cfg.reference, cfg.device,
                                         cfg.torch_compile, cfg.cuda_graphs)
    policy = replace(cfg.gates, require=resolve_names(cfg.gates.require, specs, "--require"),
                     allow_failed=resolve_names(cfg.gates.allow_failed, specs, "--allow-failed"))
    check_scenario_gates(cfg.scenarios, cfg.gates.min_offline_ips, cfg.gates.max_server_p99_ms)
    scenarios = plan_scenarios(cfg.scenarios, specs, gated=cfg.gates.min_offline_ips is not None
                               or cfg.gates.max_server_p99_ms is not None)
    latency, probe = resolve_threads(cfg.latency)  # after the input checks: bad input costs nothing
    suite = MetricSuite.build(cfg.clip_weights, cfg.lpips_weights)
    check_gates_can_run(policy, suite, images)
    threads = latency.threads if latency.threads is not None else _torch_threads()
    plan = BenchPlan(
        images=images, backends=tuple(backend_plan(s, tiling, threads) for s in specs), reference=cfg.reference,
        tiling=tiling, latency=latency, threads_probe=probe, peak_threads=threads, policy=policy, suite=suite,
        model=load_model(cfg.model), baselines=BaselineConfig(cfg.gan_baseline, cfg.teacher, cfg.seed), seed=cfg.seed,
        roofline=cfg.roofline, scenarios=scenarios,
        teacher_model=load_model(cfg.teacher) if cfg.teacher else None)
    if teacher_specs is None:
        return plan
    # the teacher's engines: the same images, metrics, tiling and threads; no gates, no baselines of their own
    return replace(plan, teacher=replace(plan, backends=tuple(backend_plan(s, tiling, threads) for s in teacher_specs),
                                         policy=GateConfig(), model=plan.teacher_model,
                                         baselines=BaselineConfig(None, None, cfg.seed), teacher_model=None,
                                         scenarios=None))


def run_tiling(tile: int | str | None, overlap: int, batch: int) -> TileConfig | AutoTileConfig:
    """`--tile auto`: each backend chooses per image size; N (or None: the whole image): that tiling, checked now."""
    if tile == AUTO:
        return AutoTileConfig(overlap=overlap, max_batch=batch)
    return TileConfig(tile, overlap, batch)  # a bad tiling is a user error before anything runs


def backend_plan(spec: BackendSpec, tiling: TileConfig | AutoTileConfig, threads: int) -> BackendPlan:
    """A row's tiling, noise cache and peak threads: the run's, or for `@untuned` the settings from before the
    CPU tuning (fixed 64-pixel tiles, no noise cache, the engines' own thread count: every CPU)."""
    if spec.extra.get(UNTUNED):
        return BackendPlan(spec, TileConfig(*UNTUNED_TILING), noise_cache_mb=0, peak_threads=env.available_cpus())
    return BackendPlan(spec, tiling, noise_cache_mb=NOISE_CACHE_MB, peak_threads=threads)


def resolve_threads(latency: LatencyConfig) -> tuple[LatencyConfig, dict | None]:
    """`threads="auto"` -> the count a short probe finds faster now, and the probe's figures (else None)."""
    if latency.threads != AUTO:
        return latency, None
    probe = env.probe_threads()
    log.debug(f"bench: {probe['threads']} thread(s) (probe: {probe['ms']} ms per 512^2 matmul, "
              f"load average {probe['loadavg'][0] if probe['loadavg'] else '?'})")
    return replace(latency, threads=probe["threads"]), probe


def check_gates_can_run(gates: GateConfig, suite: MetricSuite, images: tuple[BenchImage, ...] | list[BenchImage],
                        scale: int = 4) -> None:
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


def load_model(source: str) -> BenchModel:
    """The benched model, loaded once; a model that does not load here (e.g. a bench of artifacts whose source
    is gone) is no error yet: its torch rows fail with the reason, and the report has no FLOPs or stats."""
    from vpdsr.models import from_pretrained

    try:
        return BenchModel(str(source), from_pretrained(source).eval())
    except Exception as e:  # noqa: BLE001 - the reason goes to the torch rows; the other rows still run
        log.info(f"bench: model {source} not loaded ({one_line(e)})")
        return BenchModel(str(source), None, e)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
