"""Validation of exported graphs against the torch fp32 reference: small direct runners + PSNR.

These run a folder's graphs with onnxruntime or OpenVINO directly (the export stage must not
depend on the runtimes package); a split artifact is run stage by stage, each graph reading its
inputs by name from the values produced so far.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from vpdsr.models import VPDSR

Feed = dict[str, np.ndarray]
PSNR_CAP_DB = 150.0  # identical outputs: JSON has no infinity


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB for images in [0, 1]; NaN/Inf anywhere gives 0."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_CAP_DB if mse <= 10 ** (-PSNR_CAP_DB / 10) else min(PSNR_CAP_DB, -10.0 * math.log10(mse))


def torch_reference(model: VPDSR, feeds: Iterable[Feed]) -> list[np.ndarray]:
    """`sr` of the torch fp32 model for each feed."""
    with torch.inference_mode():
        return [model(torch.from_numpy(f["lr"]), torch.from_numpy(f["noise"])).float().numpy() for f in feeds]


def compare(outputs: list[np.ndarray], refs: list[np.ndarray], floor_db: float | None = None) -> dict:
    """The manifest's `validation` field: worst and mean PSNR, max abs difference, NaN/Inf."""
    values = [psnr(o, r) for o, r in zip(outputs, refs)]
    finite = all(np.isfinite(o).all() for o in outputs)
    result = {
        "reference": "torch-fp32",
        "psnr_db": round(min(values), 3),
        "psnr_db_mean": round(float(np.mean(values)), 3),
        "max_abs": float(max(np.abs(o - r).max() for o, r in zip(outputs, refs))) if finite else None,
        "finite": bool(finite),
        "n_inputs": len(outputs),
    }
    if floor_db is not None:
        result["floor_db"] = floor_db
        result["passed"] = bool(finite and result["psnr_db"] >= floor_db)
    return result


def run_chain(fns: list[Callable[[Feed], Feed]], feed: Feed) -> Feed:
    """Run graph functions in order; each sees every value produced so far."""
    env = dict(feed)
    for fn in fns:
        env.update(fn(env))
    return env


def ort_session(path: Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_fn(path: Path) -> Callable[[Feed], Feed]:
    """`fn(env) -> outputs` for one ONNX graph on onnxruntime's CPU provider."""
    sess = ort_session(path)
    names = [i.name for i in sess.get_inputs()]
    outs = [o.name for o in sess.get_outputs()]

    def fn(env: Feed) -> Feed:
        return dict(zip(outs, sess.run(outs, {n: env[n] for n in names})))

    return fn


def ov_fn(path: Path, precision: str) -> Callable[[Feed], Feed]:
    """`fn(env) -> outputs` for one OpenVINO IR (or ONNX) on CPU with the execution precision pinned."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    names = [_io_name(i) for i in compiled.inputs]
    outs = [_io_name(o) for o in compiled.outputs]

    def fn(env: Feed) -> Feed:
        res = compiled({n: env[n] for n in names})
        return {n: np.asarray(res[i]) for i, n in enumerate(outs)}

    return fn


def _io_name(port) -> str:
    """The graph-level name of an OpenVINO port: a tensor can carry several names (ONNX output + the
    producing node's); ours are plain identifiers (`lr`, `sr`, `x0`), the node names are paths."""
    names = sorted(port.get_names())
    plain = [n for n in names if "/" not in n and ":" not in n]
    return (plain or names or [port.get_any_name()])[0]


def folder_outputs(fns: list[Callable[[Feed], Feed]], feeds: Iterable[Feed], output: str = "sr") -> list[np.ndarray]:
    return [run_chain(fns, f)[output] for f in feeds]


def stage_feeds(fns_by_name: dict[str, Callable[[Feed], Feed]], feeds: Iterable[Feed],
                inputs_by_name: dict[str, list[str]]) -> dict[str, list[Feed]]:
    """For each graph of a chain, the feeds it sees when the fp32 chain runs on `feeds`.

    Used to calibrate split graphs: the decoder is calibrated on the latents the fp32 denoiser makes.
    """
    per = {name: [] for name in fns_by_name}
    for feed in feeds:
        env = dict(feed)
        for name, fn in fns_by_name.items():
            per[name].append({k: env[k] for k in inputs_by_name[name]})
            env.update(fn(env))
    return per
