"""Prepared GPU run: the MLPerf scenarios on CUDA for the shipped tiny and `base`, with the other GPU checks.

Run on a machine with a CUDA GPU, from the repository root (about 15 minutes on one H100/H200):
    python benchmarks/gpu_scenarios.py --out runs/gpu

Per preset (`--presets tiny,base`): the ONNX export (dynamic H/W) into OUT/<preset>/artifacts, the
held-out photos' LR (base: centred to `--lr-size` 64) into OUT/<preset>/inputs, then one `vpdsr bench
--device cuda` with the rows `torch-fp16-compiled` and `onnx@cuda` and the scenarios single-stream,
offline and server (LoadGen logs in OUT/<preset>/report/loadgen). Then `benchmarks/gpu_compiled.py`
and `benchmarks/gpu_resshift.py`, each writing its JSON into OUT. Last, OUT/gpu.md: the GPU's name
and every figure, the table docs/gpu.md takes. A step that fails is named in gpu.md and the run goes
on; without CUDA the script says so in one line and exits 0.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = "torch-fp16-compiled,onnx@cuda"
SCENARIOS = "single-stream,offline,server"


def run(cmd: list[str], log: Path) -> int:
    """One step as a child process, its output appended to `log`; returns its exit code."""
    print("+", " ".join(cmd), flush=True)
    with log.open("a") as f:
        f.write("\n+ " + " ".join(cmd) + "\n")
        f.flush()
        return subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode


def preset_rows(report: Path) -> list[str]:
    """The markdown lines of one preset's scenarios (from its report.json)."""
    data = json.loads(report.read_text())
    lines = []
    for b in data["backends"]:
        sc = (b.get("scenarios") or {}).get("scenarios") or {}
        ss, off, srv = (sc.get(k) or {} for k in ("single-stream", "offline", "server"))

        def fig(r, key, fmt="{:.1f}"):
            return fmt.format(r[key]) if r.get(key) is not None else r.get("status") or "-"

        lines.append(f"| {data['model'].get('source')} | {b['name']} | {b['status']} | "
                     f"{fig(b.get('latency_ms') or {}, 'p50')} | {fig(ss, 'p90_ms')} {ss.get('verdict') or ''} | "
                     f"{fig(off, 'ips', '{:.2f}')} {off.get('verdict') or ''} | {fig(srv, 'max_qps', '{:.3g}')} "
                     f"(p99 {fig(srv, 'p99_ms')} <= {fig(srv, 'bound_ms')} ms) |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--presets", default="tiny,base")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--lr-size", type=int, default=64, help="LR side of base's inputs (tiny: the held-out photos)")
    ap.add_argument("--min-duration-s", type=float, default=5.0, help="each LoadGen run's minimum duration")
    args = ap.parse_args(argv)
    import torch

    from vpdsr.commands.pipeline import make_bench_inputs

    if not torch.cuda.is_available():
        print("gpu_scenarios: no CUDA device here (torch.cuda.is_available() is False); nothing run")
        return 0
    gpu = torch.cuda.get_device_name(0)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu_scenarios.log"
    py = sys.executable
    steps, tables = [], []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        root = out / preset
        make_bench_inputs(root / "inputs", max_size=None if preset == "tiny" else args.lr_size)
        code = run([py, "-m", "vpdsr.cli", "export", "--model", preset, "--targets", "onnx", "--dynamic", "--tile",
                    "64", "--out", str(root / "artifacts")], log)
        steps.append((f"{preset}: export onnx", code))
        code = run([py, "-m", "vpdsr.cli", "bench", "--model", preset, "--artifacts", str(root / "artifacts"),
                    "--images", str(root / "inputs" / "lr"), "--out", str(root / "report"), "--device", args.device,
                    "--backends", BACKENDS, "--scenario", SCENARIOS, "--scenario-min-duration-s",
                    str(args.min_duration_s), "--gan-baseline", "none"], log)
        steps.append((f"{preset}: bench --scenario {SCENARIOS}", code))
        if (root / "report" / "report.json").is_file():
            tables += preset_rows(root / "report" / "report.json")
    steps.append(("gpu_compiled.py", run([py, "benchmarks/gpu_compiled.py", "--out", str(out / "gpu_compiled.json")],
                                         log)))
    steps.append(("gpu_resshift.py", run([py, "benchmarks/gpu_resshift.py", "--json", str(out / "gpu_resshift.json")],
                                         log)))
    lines = [f"# GPU run on {gpu}", "", f"{time.strftime('%Y-%m-%d %H:%M %Z')}, `python benchmarks/gpu_scenarios.py "
             f"--out {args.out}` (log: gpu_scenarios.log).", "", "| step | exit |", "|---|---:|"]
    lines += [f"| {name} | {code} |" for name, code in steps]
    lines += ["", "| model | backend | status | latency p50 ms | single-stream p90 ms (LoadGen) | offline images/s | "
              "server max QPS |", "|---|---|---|---:|---:|---:|---|", *tables, "",
              "gpu_compiled.json and gpu_resshift.json hold the two check scripts' figures."]
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
    print((out / "gpu.md").read_text())
    return 0 if all(code in (0, 1) for _, code in steps) else 1  # 1: a gate or backend failed, still a run


if __name__ == "__main__":
    sys.exit(main())
