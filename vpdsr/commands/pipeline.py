"""`vpdsr pipeline [--config configs/tiny.yaml] --out RUN`: the main job, distill -> export -> bench.

1. distill: skipped when the config's preset ships trained weights (``vpdsr/checkpoints/<preset>``)
   unless ``--retrain``; otherwise ``run_distill(config, RUN/distill)``.
2. export: every target (``all``) into RUN/artifacts; a target this machine cannot build
   (TensorRT without a GPU, ...) is recorded as skipped with its reason.
3. bench: the bundled held-out photos (astronaut, chelsea, coffee), bicubic-downscaled x4 to
   LR (the HR photos give PSNR/SSIM vs HR), every backend, report in RUN/report/.

RUN/pipeline.json records each stage's wall time and outputs; RUN/history.json gets the bench's figures
per backend, one entry per run (:mod:`vpdsr.bench.history`; compare two with `benchmarks/suite.py compare`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from vpdsr.commands.bench import int_or_auto
from vpdsr.utils import atomic_write_text

log = logging.getLogger(__name__)
BENCH_SAMPLES = "samples:holdout"
CALIB_TILE = 64  # export tile (calibration crops) of the dynamic artifacts `--tile auto` exports
LOG_NAME = "pipeline.log"


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="the main job: distill -> export -> bench on the bundled sample photos")
    p.add_argument("--config", help="distill config (default: configs/tiny.yaml)")
    p.add_argument("--out", required=True, help="run folder: distill/, artifacts/, bench-inputs/, report/")
    p.add_argument("--retrain", action="store_true", help="train even when shipped checkpoints exist")
    p.add_argument("--targets", default="all", help="export targets (default all: unsupported ones are skipped)")
    p.add_argument("--threads", type=int_or_auto, default="auto",
                   help="CPU threads for the benchmark, or auto (default: from a short probe, see vpdsr bench)")
    p.add_argument("--iters", type=int, default=5, help="timed runs per backend (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs per backend (default 1)")
    p.add_argument("--budget-s", type=float, default=10.0,
                   help="stop timing a backend after this many seconds (default 10; keeps the job within minutes)")
    p.add_argument("--clip-weights", help="OpenAI CLIP RN50.pt for CLIPIQA (else searched; null if absent)")
    p.add_argument("--tile", type=int_or_auto, default="auto",
                   help="auto (default): dynamic-shape artifacts and each backend's own tiling (the whole image "
                        "where it fits); N: static N x N artifacts and N-pixel tiles")
    p.add_argument("--keep-failed", action="store_true",
                   help="export: keep a target that failed validation (still failed) so that the bench times it")
    p.add_argument("--untuned", action="store_true",
                   help="also bench every CPU artifact @untuned (engine defaults, fixed 64-pixel tiles: the settings "
                        "before the CPU tuning) beside its tuned row")
    p.set_defaults(func=run, log_file=lambda a: (Path(a.out) / LOG_NAME, False))


def default_config() -> Path | None:
    """configs/tiny.yaml inside the package (installed) or at the repository root (a checkout)."""
    import vpdsr

    pkg = Path(vpdsr.__file__).resolve().parent
    for candidate in (pkg / "configs" / "tiny.yaml", pkg.parent / "configs" / "tiny.yaml"):
        if candidate.is_file():
            return candidate
    return None


def stage_distill(config, out: Path, retrain: bool) -> tuple[str, dict]:
    """The model to export: shipped weights of the config's preset, or a freshly distilled student."""
    from vpdsr.distill.config import load_config
    from vpdsr.models.checkpoint import SHIPPED
    from vpdsr.models.config import WEIGHTS_NAME

    cfg = load_config(config)
    preset = _preset_of(cfg)
    shipped = SHIPPED / preset if preset else None
    if not retrain and shipped is not None and (shipped / WEIGHTS_NAME).is_file():
        log.info(f"[1/3] distill: skipped, shipped {preset} checkpoint {shipped} (use --retrain to train)")
        teacher = shipped_teacher(shipped, preset)  # the bench's teacher row
        info = {"skipped": True, "model": str(shipped)}
        return str(shipped), {**info, "teacher": teacher} if teacher else info
    from vpdsr.distill.api import run_distill

    log.info(f"[1/3] distill: training {preset or 'the configured model'} into {out / 'distill'}")
    result = run_distill(cfg, out / "distill", stage="all", progress=True)
    teacher = result.teacher.model_dir if result.teacher is not None else cfg.student.teacher
    return str(result.model_dir), {"skipped": False, "model": str(result.model_dir),
                                   **({"teacher": str(teacher)} if teacher else {})}


def shipped_teacher(shipped: Path, preset: str) -> str | None:
    """The teacher of a shipped student: the shipped `<preset>-teacher` checkpoint, else the teacher its
    distill.json names when that is a preset or a folder here."""
    from vpdsr.models.checkpoint import SHIPPED
    from vpdsr.models.config import WEIGHTS_NAME
    from vpdsr.models.presets import preset_names

    teacher = SHIPPED / f"{preset}-teacher"
    if (teacher / WEIGHTS_NAME).is_file():
        return str(teacher)
    record = shipped / "distill.json"
    name = json.loads(record.read_text()).get("teacher") if record.is_file() else None
    if name and (name in preset_names() or (SHIPPED / name / WEIGHTS_NAME).is_file() or Path(name).is_dir()):
        return name
    return None


def _preset_of(cfg) -> str | None:
    model = getattr(cfg, "model", None)
    preset = getattr(model, "preset", None) if model is not None else None
    if preset is None and isinstance(model, dict):
        preset = model.get("preset")
    return preset


def make_bench_inputs(folder: Path, spec: str = BENCH_SAMPLES, max_images: int | None = None,
                      max_size: int | None = None) -> tuple[Path, Path]:
    """The export's held-out validation photos as PNG files: HR cropped to a multiple of 4, its x4 bicubic LR
    (the first `max_images`, centred to at most `max_size` LR pixels a side: see `holdout_images`).

    The LR arrays are already at 8-bit levels, so the bench reads back exactly what the export validated on.
    """
    from vpdsr.data.io import write_image
    from vpdsr.export.validation import holdout_images

    lr_dir, hr_dir = folder / "lr", folder / "hr"
    for name, lr, hr in holdout_images(spec, max_images, max_size):
        write_image(hr_dir / f"{name}.png", hr)
        write_image(lr_dir / f"{name}.png", lr)
    return lr_dir, hr_dir


def record_history(out: Path, model: str) -> None:
    """One entry in RUN/history.json (see vpdsr.bench.history): rerunning into the same folder keeps a history."""
    from vpdsr.bench.history import HISTORY_NAME, record_reports

    report = out / "report" / "report.json"
    preset = json.loads(report.read_text()).get("model", {}).get("preset") or Path(model).name
    record_reports(out / HISTORY_NAME, {preset: report}, label="pipeline")
    log.info(f"pipeline: figures added to {out / HISTORY_NAME} (compare runs: python benchmarks/suite.py compare)")


def run(args) -> int:
    from vpdsr.bench.backends import with_untuned
    from vpdsr.bench.config import BenchConfig
    from vpdsr.bench.gates import GateConfig
    from vpdsr.bench.latency import LatencyConfig
    from vpdsr.commands.bench import bench_and_report
    from vpdsr.commands.checks import output_folder
    from vpdsr.export.api import export

    out = output_folder(args.out, inside=("distill", "artifacts", "bench-inputs", "report"))
    config = args.config or default_config()
    t_start = time.perf_counter()
    summary: dict = {"config": str(config) if config else None, "stages": {}}

    t0 = time.perf_counter()
    import torch

    threads = torch.get_num_threads()
    model, info = stage_distill(config, out, args.retrain)
    torch.set_num_threads(threads)  # training may pin its own thread count; the benchmark gets the default back
    summary["stages"]["distill"] = {**info, "seconds": time.perf_counter() - t0}

    t0 = time.perf_counter()
    log.info(f"[2/3] export: targets {args.targets} -> {out / 'artifacts'}")
    auto = args.tile == "auto"
    # auto: dynamic H/W, so a backend can take a whole image (calibration and validation stay on 64-pixel tiles)
    manifest = export(model, out / "artifacts", args.targets, tile=CALIB_TILE if auto else args.tile, dynamic=auto,
                      progress=None, keep_failed=args.keep_failed)
    summary["stages"]["export"] = {
        "seconds": time.perf_counter() - t0,
        "artifacts": {a.name: a.status if a.status == "ok" else f"{a.status}: {a.reason}" for a in manifest.artifacts},
    }

    t0 = time.perf_counter()
    log.info(f"[3/3] bench: {BENCH_SAMPLES} (x4 bicubic LR, HR for fidelity) -> {out / 'report'}")
    lr_dir, hr_dir = make_bench_inputs(out / "bench-inputs")
    cfg = BenchConfig(
        model=model, images=str(lr_dir), hr=str(hr_dir), artifacts=str(out / "artifacts"), tile=args.tile,
        backends=with_untuned(out / "artifacts") if args.untuned else None,
        latency=LatencyConfig(warmup=args.warmup, iters=args.iters, budget_s=args.budget_s, threads=args.threads),
        gates=GateConfig(), clip_weights=args.clip_weights, teacher=info.get("teacher"),
    )
    try:
        rc = bench_and_report(cfg, out / "report", print_table=False)
        record_history(out, model)
        return rc
    finally:
        summary["stages"]["bench"] = {"seconds": time.perf_counter() - t0, "report": str(out / "report")}
        summary["seconds"] = time.perf_counter() - t_start
        atomic_write_text(out / "pipeline.json", json.dumps(summary, indent=2) + "\n")
        took = {name: summary["stages"][name]["seconds"] for name in ("distill", "export", "bench")}
        log.info(f"pipeline: {summary['seconds']:.0f} s in all (distill {took['distill']:.0f} s, "
                 f"export {took['export']:.0f} s, bench {took['bench']:.0f} s)"
                 f"; report: {out / 'report' / 'report.html'}")
