"""Where the time goes inside an engine call: share per op type, from the engine's own profiler.

    python benchmarks/engine_ops.py --artifacts RUN/artifacts --targets ort-int8,onnx,openvino-int8 --size 128

ONNX Runtime: `SessionOptions.enable_profiling` (the node events' kernel times); OpenVINO: the CPU
plugin's `PERF_COUNT` (each layer's real time by layer type and kernel). One batch-1 call of
`--size` x `--size` LR pixels on random inputs, after warm-up calls, with the runner's own session
settings (threads from `--threads`, default 1). This is what the roofline's % peak cannot say: a share
of the time spent in ops that count no matrix FLOPs (the bicubic input Resize, layout reorders,
normalisation, Q/DQ passes) is time the matrix kernels cannot win back.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def feed_for(size: int, noise_channels: int | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feed = {"lr": rng.random((1, 3, size, size), dtype=np.float32)}
    if noise_channels:
        feed["noise"] = rng.standard_normal((1, noise_channels, size, size), dtype=np.float32)
    return feed


def onnxruntime_ops(path: Path, size: int, threads: int, runs: int) -> collections.Counter:
    """Microseconds per op type over `runs` calls (ONNX Runtime's profiler)."""
    import onnxruntime as ort

    from vpdsr.runtimes.onnxruntime_runner import CPU_SESSION_CONFIG

    with tempfile.TemporaryDirectory(prefix="vpdsr-ort-prof-") as tmp:
        so = ort.SessionOptions()
        so.enable_profiling, so.profile_file_prefix = True, str(Path(tmp) / "prof")
        so.intra_op_num_threads, so.log_severity_level = threads, 3
        for key, value in CPU_SESSION_CONFIG.items():
            so.add_session_config_entry(key, value)
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inputs = {i.name: i.shape for i in session.get_inputs()}
        feed = feed_for(size, inputs["noise"][1] if "noise" in inputs else None)
        session.run(None, feed)  # warm-up (its events are dropped below: only the last `runs` calls count)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    node_runs = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_call = len(node_runs) // (runs + 1)
    out: collections.Counter = collections.Counter()
    for e in node_runs[per_call:]:
        out[e["args"]["op_name"]] += e["dur"]
    return out


def openvino_ops(path: Path, size: int, threads: int, runs: int) -> collections.Counter:
    """Microseconds per layer type and kernel over `runs` calls (OpenVINO's PERF_COUNT)."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        "PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": str(threads)})
    request = compiled.create_infer_request()
    names = {p.get_any_name(): p for p in compiled.inputs}
    noise = next((p for n, p in names.items() if "noise" in n), None)
    feed = feed_for(size, noise.get_partial_shape()[1].get_length() if noise is not None else None)
    request.infer(feed)
    out: collections.Counter = collections.Counter()
    for _ in range(runs):
        request.infer(feed)
        for p in request.profiling_info:  # the last call's layers
            out[f"{p.node_type} ({p.exec_type})"] += p.real_time.total_seconds() * 1e6
    return out


def main() -> None:
    from vpdsr.artifacts import Manifest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", required=True, type=Path)
    ap.add_argument("--targets", default="ort-int8,onnx,openvino-int8")
    ap.add_argument("--size", type=int, default=128, help="LR side of the call (default 128)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    entries = {e.name: e for e in Manifest.read(args.artifacts).artifacts}
    for name in args.targets.split(","):
        entry = entries[name]
        model = args.artifacts / name / entry.options["graphs"]["model"]  # fused artifacts: one graph
        ops = (onnxruntime_ops if entry.backend == "onnxruntime" else openvino_ops)(
            model, args.size, args.threads, args.runs)
        total = sum(ops.values()) or 1.0
        print(f"\n{name} ({entry.backend}, LR {args.size}x{args.size}, {args.threads} thread(s), "
              f"{total / 1000 / args.runs:.1f} ms per call in kernels)")
        for op, us in ops.most_common(args.top):
            print(f"  {op:44s} {100 * us / total:5.1f} %  {us / 1000 / args.runs:7.1f} ms")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
