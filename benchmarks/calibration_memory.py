"""Peak memory of INT8 calibration on a large preset: onnxruntime's bounded calibrator and modelopt's child.

Usage:
    python benchmarks/calibration_memory.py --preset base --tile 64 --samples 2 --out runs/calib-mem
    python benchmarks/calibration_memory.py ... --modelopt-unbounded   # modelopt's own session (~15 GB on base)

Exports the preset's fused fp32 graph once (seeded weights: memory does not depend on their values),
then, each in a fresh child process so that peaks do not mix, measures the peak RSS (psutil, sampled
every 50 ms, child + its children) of:
  - `ort`: `onnx_targets.calibrate_ranges` (the ort-int8 path);
  - `modelopt`: `modelopt_int8.run_child` (modelopt's PTQ with the calibration session re-created with
    bounded-memory options), or, with `--modelopt-unbounded`, modelopt's own session.
Prints one Markdown table. The machine is shared: figures are peaks, times are indicative.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

_CHILD = """
import json, sys, time
from pathlib import Path
from vpdsr.export.calibration import CalibrationSet
job = json.loads(sys.argv[1])
feeds = CalibrationSet("samples:calib", count=job["samples"], tile=job["tile"], channels=job["channels"]).feeds()
t = time.perf_counter()
if job["what"] == "ort":
    from vpdsr.export.onnx_targets import calibrate_ranges
    calibrate_ranges(Path(job["graph"]), feeds, Path(job["work"]), False)
else:
    import vpdsr.export.modelopt_int8 as mo
    if job["unbounded"]:
        mo._bound_calibration_memory = lambda: None
    mo.run_child(Path(job["graph"]), Path(job["work"]) / "q.onnx", "int8", feeds, Path(job["work"]),
                 Path(job["work"]), "modelopt-int8", None)
print(json.dumps({"seconds": round(time.perf_counter() - t, 1)}))
"""


def peak_rss_mb(cmd: list[str]) -> tuple[float, str]:
    """Run `cmd`; the peak RSS of it and its descendants (MB) and its stdout."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[-1][:80]}... failed: {err.strip().splitlines()[-1:]}")
    return peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--out", default="runs/calib-mem")
    ap.add_argument("--modelopt-unbounded", action="store_true")
    ap.add_argument("--only", choices=("ort", "modelopt"))
    args = ap.parse_args()

    from vpdsr.export.onnx_graph import export_graph
    from vpdsr.models import from_pretrained

    out = Path(args.out).resolve()
    graph = out / "fp32" / "model.onnx"
    model = from_pretrained(args.preset).float().eval()
    if not graph.is_file():
        t = time.perf_counter()
        export_graph(model, "model", graph, args.tile, False)
        print(f"exported {args.preset} ({model.num_parameters() / 1e6:.1f} M parameters) in "
              f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
    rows = []
    for what in [args.only] if args.only else ["ort", "modelopt"]:
        work = out / what
        work.mkdir(parents=True, exist_ok=True)
        job = {"what": what, "graph": str(graph), "work": str(work), "samples": args.samples, "tile": args.tile,
               "channels": model.latent_channels, "unbounded": args.modelopt_unbounded}
        peak, text = peak_rss_mb([sys.executable, "-c", _CHILD, json.dumps(job)])
        label = what + (" (modelopt's own session)" if what == "modelopt" and args.modelopt_unbounded else "")
        rows.append((label, peak, json.loads(text.strip().splitlines()[-1])["seconds"]))
    print(f"| {args.preset}, tile {args.tile}, {args.samples} samples | peak RSS (MB) | seconds |\n|---|---:|---:|")
    for label, peak, sec in rows:
        print(f"| {label} | {peak:.0f} | {sec} |")


if __name__ == "__main__":
    main()
