"""`modelopt-int8` / `modelopt-fp8`: NVIDIA ModelOpt's ONNX PTQ (Q/DQ placed for TensorRT), run in a child process.

Why a child: importing `modelopt.onnx.quantization` patches onnxruntime's quantization module in
place (`create_calibrator`, `MinMaxCalibrater.collect_data`, ...), which would break `ort-int8`
(and anyone else's onnxruntime quantization) later in the same process. The child runs this module
(`python -m vpdsr.export.modelopt_int8 JOB`) and, under `--int8-budget` / `--sensitivity`, the whole
search too (`mixed_precision.choose_kept`), so modelopt is imported once per target.

Calibration memory: modelopt calibrates with onnxruntime's MinMax calibrator in a session of its
own (arena off, but the default execution order and memory pattern), where nearly every
activation of the augmented graph is alive at once: about 15 GB on the `base` preset. In the child
the session is re-created with the options `onnx_targets.calibrate_ranges` uses (priority-based
order, no arena, no memory pattern): the same graph, inputs and reductions, so the same ranges,
with the activations freed as soon as their ReduceMin/ReduceMax ran. The child's peak RSS is
recorded in the entry (`options["peak_rss_mb"]`).

Feeding modelopt our own ranges through its TensorRT-style calibration cache was measured and
rejected: modelopt then overwrites the shared scale it gives tensors joined by a Concat ("concat
elimination") with each tensor's own, 5 of the tiny student's 101 activation scales by up to 41%.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from vpdsr.export.onnx_targets import INT8_EXCLUDE, _is_large, matching_nodes, ort_latency
from vpdsr.export.targets import BuildContext, BuildResult, TargetSkipped, TargetSpec

log = logging.getLogger(__name__)
CHILD_PREFIX = "vpdsr-child: "


def build_modelopt(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    import importlib.util

    if importlib.util.find_spec("modelopt") is None:
        raise TargetSkipped("nvidia-modelopt is not installed; pip install 'vpdsr[modelopt]' "
                            "(without its [onnx] extra on CPU machines)")
    mode = spec.options["quantize_mode"]
    high = spec.options.get("high_precision_dtype", "fp32")  # fp16 for TensorRT's strongly typed engines
    patterns = ctx.keep_float("int8")  # the float policy + the model family's own
    graphs, extra, rss = {}, {}, {}
    feeds = ctx.calib_feeds()
    for name in ctx.names():
        src = ctx.fp32_graph(name)
        out = folder / f"{name}.onnx"
        work = (ctx.work / f"modelopt-{mode}-{high}-{name}").resolve()
        log.debug(f"modelopt-{mode}: PTQ of {name!r} on {len(feeds[name])} samples")
        plan = ctx.int8.save(work / "plan") if ctx.int8 is not None and mode == "int8" else None
        result = run_child(src, out, mode, feeds[name], work, folder, spec.name, plan, high, patterns)
        rss[name] = result["peak_rss_mb"]
        extra.update(result.get("options", {}))
        if extra.get("accuracy_control"):
            extra["accuracy_control"]["latency_ms"] = ort_latency(
                {"fp32": src, "all_int8": work / "all-int8.onnx", "final": out}, ctx.int8.feeds[0])
        graphs[name] = out.name
    options = {"graphs": graphs, "quantize_mode": mode, "calibration_method": "max",
               "high_precision_dtype": high, "excluded_patterns": list(patterns), "peak_rss_mb": rss, **extra}
    if mode != "int8":
        _check_cpu_kernels(folder, graphs, mode)
    return BuildResult(options=options)


def run_child(src: Path, out: Path, mode: str, feeds: list[dict], work: Path, folder: Path, target: str,
              plan: Path | None, high_precision: str = "fp32", patterns: tuple[str, ...] = INT8_EXCLUDE) -> dict:
    """Quantize `src` -> `out` in a child process; returns its result (options, peak RSS)."""
    import numpy as np

    # absolute: the child runs with cwd=work, where relative paths (`--out runs/x`) would not resolve
    src, out, work, folder = Path(src).resolve(), Path(out).resolve(), Path(work).resolve(), Path(folder).resolve()
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "calib.npz", **{f"{i}:{k}": v for i, f in enumerate(feeds) for k, v in f.items()})
    job = {"src": str(src), "out": str(out), "mode": mode, "calib": str(work / "calib.npz"), "large": _is_large(src),
           "policy": matching_nodes(src, patterns), "high": high_precision, "folder": str(folder), "target": target,
           "plan": str(plan) if plan else None, "result": str(work / "result.json")}
    (work / "job.json").write_text(json.dumps(job))
    proc = subprocess.Popen([sys.executable, "-m", "vpdsr.export.modelopt_int8", str(work / "job.json")], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tail = []
    for line in proc.stderr:  # the child's progress lines, relayed; the rest to the log file
        line = line.rstrip()
        if line.startswith(CHILD_PREFIX):
            log.info(line[len(CHILD_PREFIX):])
        elif line.strip():
            log.debug(f"modelopt child: {line}")
            tail = (tail + [line])[-1:]
    proc.wait()
    if proc.returncode != 0 or not out.is_file():
        from vpdsr.export.search import BudgetUnreachable

        result = json.loads(Path(job["result"]).read_text()) if Path(job["result"]).is_file() else {}
        if result.get("unreachable"):
            raise BudgetUnreachable(result["unreachable"])
        raise RuntimeError(f"modelopt {mode} quantization failed: {(tail or ['no output'])[0][:300]}")
    return json.loads(Path(job["result"]).read_text())


def _check_cpu_kernels(folder: Path, graphs: dict[str, str], mode: str) -> None:
    """TargetSkipped when onnxruntime's CPU provider cannot load a graph (no FP8 Q/DQ kernels there)."""
    from vpdsr.errors import ArtifactError
    from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    for f in graphs.values():
        try:
            with OnnxRuntimeRunner(folder / f):
                pass
        except ArtifactError as e:
            raise TargetSkipped(f"modelopt-{mode} graph does not run on onnxruntime CPU "
                                f"({' '.join(str(e).split())[:200]})") from None


# -- the child process ------------------------------------------------------------------------------
def _bound_calibration_memory() -> None:
    """Re-create modelopt's calibration session with bounded-memory options (see the module docstring)."""
    import onnxruntime as ort
    from modelopt.onnx.quantization import ort_patching

    from vpdsr.export.onnx_targets import bounded_session_options

    original = getattr(ort_patching, "_create_inference_session_with_ep_config", None)
    if original is None:  # another modelopt version: its own session, unbounded, but still correct
        log.warning("modelopt: calibration session not found; calibration memory is modelopt's own")
        return

    def bounded(calibrator, **kwargs):
        original(calibrator, **kwargs)
        path = kwargs.get("model_path") or calibrator.augmented_model_path
        calibrator.infer_session = None  # free the first session before making ours
        calibrator.infer_session = ort.InferenceSession(path, bounded_session_options(),
                                                        providers=["CPUExecutionProvider"])

    ort_patching._create_inference_session_with_ep_config = bounded


def _child(job_path: str) -> int:
    import resource

    import numpy as np
    from modelopt.onnx.quantization import quantize

    from vpdsr.export.calibration import make_reader

    job = json.loads(Path(job_path).read_text())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    for name in ("vpdsr.export.search", "vpdsr.export.mixed_precision", __name__):
        logging.getLogger(name).setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(CHILD_PREFIX + "%(message)s"))
    vlog = logging.getLogger("vpdsr")
    vlog.addHandler(handler)
    vlog.propagate = False
    _bound_calibration_memory()
    arrays = np.load(job["calib"])
    n = len({k.split(":")[0] for k in arrays.files})
    feeds = [{k.split(":")[1]: arrays[k] for k in arrays.files if k.startswith(f"{i}:")} for i in range(n)]
    work = Path(job_path).parent

    def build(dst: Path, kept: list[str]) -> Path:
        quantize(onnx_path=job["src"], quantize_mode=job["mode"], calibration_data_reader=make_reader(feeds),
                 calibration_method="max", calibration_eps=["cpu"], high_precision_dtype=job.get("high", "fp32"),
                 nodes_to_exclude=list(job["policy"]) + list(kept), use_external_data_format=job["large"],
                 output_path=str(dst), log_level="ERROR")
        return dst

    result: dict = {}
    kept: list[str] = []
    if job["plan"]:
        from vpdsr.export.mixed_precision import Int8Plan, choose_kept
        from vpdsr.export.onnx_targets import ort_outputs, quantizable_candidates
        from vpdsr.export.search import BudgetUnreachable

        plan = Int8Plan.load(Path(job["plan"]))
        all_int8 = build(work / "all-int8.onnx", [])
        candidates = quantizable_candidates(Path(job["src"]), all_int8, job["policy"])

        def run(nodes: list[str]) -> list:
            return ort_outputs(build(work / "candidate.onnx", nodes), plan.feeds)

        try:
            kept, result["options"] = choose_kept(plan, job["target"], candidates, run, Path(job["folder"]))
        except BudgetUnreachable as e:
            Path(job["result"]).write_text(json.dumps({"unreachable": str(e)}))
            return 3
    build(Path(job["out"]), kept)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(job["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
