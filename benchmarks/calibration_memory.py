"""Peak memory of INT8 calibration on a large preset: onnxruntime's bounded calibrator and modelopt's child.

Usage:
    python benchmarks/calibration_memory.py --preset base --tile 64 --samples 2 --out runs/calib-mem
    python benchmarks/calibration_memory.py ... --unbounded   # also the libraries' own sessions (before)

Exports the preset's fused fp32 graph once (seeded weights: memory does not depend on their values),
then, each in a fresh child process so that peaks do not mix, measures the peak RSS (psutil, sampled
every 50 ms, child + its children) of:
  - `ort`: `onnx_targets.calibrate_ranges` (the ort-int8 path);
  - `modelopt`: `modelopt_int8.run_child` (modelopt's PTQ with the calibration session re-created with
    bounded-memory options);
and, with `--unbounded`, first the same two with the libraries' own calibration sessions (onnxruntime's
MinMax calibrator as `create_calibrator` makes it; modelopt's own): the "before".
A child whose peak passes `--max-rss-mb` is killed (the machine is shared) and shown as "> limit".
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
if job["what"] == "ort" and job["unbounded"]:
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
    from vpdsr.export.calibration import make_reader
    from vpdsr.export.onnx_targets import quantizable_ops
    cal = create_calibrator(Path(job["graph"]), quantizable_ops(), augmented_model_path=job["work"] + "/aug.onnx",
                            calibrate_method=CalibrationMethod.MinMax, providers=["CPUExecutionProvider"],
                            extra_options={"symmetric": True})
    cal.collect_data(make_reader(feeds))
    cal.compute_data()
elif job["what"] == "ort":
    from vpdsr.export.onnx_targets import calibrate_ranges
    calibrate_ranges(Path(job["graph"]), feeds, Path(job["work"]), False)
else:  # modelopt's child job, run in this process so that its session can be left unbounded
    import numpy as np
    import vpdsr.export.modelopt_int8 as mo
    work = Path(job["work"])
    np.savez(work / "calib.npz", **{f"{i}:{k}": v for i, f in enumerate(feeds) for k, v in f.items()})
    (work / "job.json").write_text(json.dumps({
        "src": job["graph"], "out": str(work / "q.onnx"), "mode": "int8", "calib": str(work / "calib.npz"),
        "large": mo._is_large(Path(job["graph"])), "policy": mo.matching_nodes(Path(job["graph"])),
        "folder": str(work), "target": "modelopt-int8", "plan": None, "result": str(work / "result.json")}))
    if job["unbounded"]:
        mo._bound_calibration_memory = lambda: None
    assert mo._child(str(work / "job.json")) == 0
print(json.dumps({"seconds": round(time.perf_counter() - t, 1)}))
"""


def peak_rss_mb(cmd: list[str], limit_mb: float) -> tuple[float, str | None]:
    """Run `cmd`; the peak RSS of it and its descendants (MB) and its stdout (None: killed at `limit_mb`)."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        if peak > limit_mb:
            for p in reversed(procs):
                p.kill()
            proc.communicate()
            return peak, None
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
    ap.add_argument("--unbounded", action="store_true", help="also measure the libraries' own sessions")
    ap.add_argument("--max-rss-mb", type=float, default=9000)
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
    whats = [args.only] if args.only else ["ort", "modelopt"]
    for unbounded in ([True, False] if args.unbounded else [False]):
        for what in whats:
            work = out / f"{what}-{'own' if unbounded else 'bounded'}"
            work.mkdir(parents=True, exist_ok=True)
            job = {"what": what, "graph": str(graph), "work": str(work), "samples": args.samples, "tile": args.tile,
                   "channels": model.latent_channels, "unbounded": unbounded}
            peak, text = peak_rss_mb([sys.executable, "-c", _CHILD, json.dumps(job)], args.max_rss_mb)
            label = f"{what}, {'library session (before)' if unbounded else 'bounded session (after)'}"
            sec = json.loads(text.strip().splitlines()[-1])["seconds"] if text is not None else "killed"
            rows.append((label, f"{peak:.0f}" if text is not None else f"> {args.max_rss_mb:.0f}", sec))
            print(f"{label}: peak {rows[-1][1]} MB, {sec} s", file=sys.stderr, flush=True)
    print(f"| {args.preset}, tile {args.tile}, {args.samples} samples | peak RSS (MB) | seconds |\n|---|---:|---:|")
    for label, peak, sec in rows:
        print(f"| {label} | {peak} | {sec} |")


if __name__ == "__main__":
    main()
