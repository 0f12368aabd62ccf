"""The roofline suite: every backend of every preset benchmarked, the figures kept in RUN/history.json.

    python benchmarks/suite.py run --out RUN --presets tiny,base --lr-size 64 --untuned
    python benchmarks/suite.py compare RUN                 # the last two runs of RUN/history.json
    python benchmarks/suite.py compare OLD_RUN NEW_RUN --threshold 15

`run`, per preset: exports the CPU targets into RUN/<preset>/artifacts with dynamic H/W (reused while
the model and the export settings are unchanged: the export's own cache), writes the held-out photos'
x4 LR (centred to at most `--lr-size` pixels a side) to RUN/<preset>/inputs, runs `vpdsr bench` into
RUN/<preset>/report (roofline columns: GFLOP per image, % of this machine's peak, ms per output
megapixel, tiling overhead, end to end vs the single-call rate) and appends one entry with every
preset's rows to RUN/history.json (:mod:`vpdsr.bench.history`). `--untuned` adds an `<entry>@untuned`
row beside every ONNX Runtime / OpenVINO row: the engine defaults and fixed 64-pixel tiles from before
the CPU tuning, measured in the same process.

`--scenario LIST` runs the MLPerf scenarios too (`vpdsr bench --scenario`, docs/scenarios.md): LoadGen's
single-stream p90, offline images/s, server max QPS and multi-stream p99 go into the history with the rest.

`compare` names the rows that changed between two entries (a backend added or removed, a status that
changed, a figure that moved by more than `--threshold` percent) and prints them as markdown.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vpdsr.bench.history import HISTORY_NAME, compare, markdown, pick_run, read_history, record_reports


def history_path(arg: str) -> Path:
    """A history file, or a run folder holding one."""
    p = Path(arg)
    return p / HISTORY_NAME if p.is_dir() else p


def run_suite(args) -> int:
    from vpdsr.bench.backends import with_untuned
    from vpdsr.bench.config import BenchConfig
    from vpdsr.bench.gates import GateConfig
    from vpdsr.bench.latency import LatencyConfig
    from vpdsr.bench.scenarios.config import ScenarioConfig, parse_scenarios
    from vpdsr.commands.bench import bench_and_report
    from vpdsr.commands.pipeline import make_bench_inputs
    from vpdsr.export.api import export
    from vpdsr.export.validation import ValidationConfig

    out = Path(args.out)
    reports = {}
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        root = out / preset
        print(f"[{preset}] export {args.targets} -> {root / 'artifacts'}", flush=True)
        validation = ValidationConfig(max_images=args.max_images, max_size=args.lr_size)
        export(preset, root / "artifacts", args.targets, tile=64, dynamic=True, calib_count=args.calib_count,
               validation=validation, progress=None)
        lr_dir, hr_dir = make_bench_inputs(root / "inputs", max_images=args.max_images, max_size=args.lr_size)
        cfg = BenchConfig(
            model=preset, images=str(lr_dir), hr=str(hr_dir), artifacts=str(root / "artifacts"),
            backends=with_untuned(root / "artifacts") if args.untuned else None,
            latency=LatencyConfig(warmup=args.warmup, iters=args.iters, budget_s=args.budget_s, threads=args.threads),
            gates=GateConfig(), scenarios=ScenarioConfig(scenarios=parse_scenarios(args.scenario)),
        )
        print(f"[{preset}] bench -> {root / 'report'}", flush=True)
        bench_and_report(cfg, root / "report", print_table=False)
        reports[preset] = root / "report" / "report.json"
    entry = record_reports(out / HISTORY_NAME, reports, label=args.label)
    print(f"history: {out / HISTORY_NAME} (run {len(read_history(out / HISTORY_NAME)['runs'])}, "
          f"commit {str(entry['commit'])[:10]})")
    return 0


def run_compare(args) -> int:
    a = history_path(args.old)
    ha = read_history(a)
    if args.new is None:  # the last two runs of one history
        old, new = pick_run(ha, -2, str(a)), pick_run(ha, -1, str(a))
    else:
        b = history_path(args.new)
        old, new = pick_run(ha, args.old_run, str(a)), pick_run(read_history(b), args.new_run, str(b))
    print(markdown(compare(old, new, args.threshold), old, new, args.threshold), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    from vpdsr.commands.bench import int_or_auto
    from vpdsr.errors import VpdsrError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="benchmark every preset's backends and append the figures to RUN/history.json")
    r.add_argument("--out", required=True, help="run folder (RUN/<preset>/..., RUN/history.json)")
    r.add_argument("--presets", default="tiny", help="comma list of presets (default tiny; base: random weights)")
    r.add_argument("--targets", default="cpu", help="export targets (default cpu)")
    r.add_argument("--lr-size", type=int, help="centre-crop the held-out LR photos to this side (e.g. 64 for base)")
    r.add_argument("--max-images", type=int, help="only the first N held-out photos")
    r.add_argument("--calib-count", type=int, default=8, help="INT8 calibration samples (default 8)")
    r.add_argument("--untuned", action="store_true", help="also every CPU artifact @untuned (before the tuning)")
    r.add_argument("--threads", type=int_or_auto, default="auto", help="CPU threads or auto (default)")
    r.add_argument("--warmup", type=int, default=1)
    r.add_argument("--iters", type=int, default=5)
    r.add_argument("--budget-s", type=float, default=10.0)
    r.add_argument("--label", help="a name for this run in the history")
    r.add_argument("--scenario", metavar="LIST", help="MLPerf scenarios too (single-stream,offline,server,"
                                                      "multi-stream or all, through LoadGen): their figures go "
                                                      "into the history and `compare`")
    c = sub.add_parser("compare", help="the rows that changed between two history entries")
    c.add_argument("old", help="history.json or run folder")
    c.add_argument("new", nargs="?", help="a second history or run folder (default: the last two runs of OLD)")
    c.add_argument("--threshold", type=float, default=10.0, help="percent a figure must move to count (default 10)")
    c.add_argument("--old-run", type=int, default=-1, help="entry of OLD (default -1: its last)")
    c.add_argument("--new-run", type=int, default=-1, help="entry of NEW (default -1: its last)")
    args = ap.parse_args(argv)
    try:
        return run_suite(args) if args.cmd == "run" else run_compare(args)
    except VpdsrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
