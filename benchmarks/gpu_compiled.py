"""Prepared GPU check of the torch GPU path: `base` preset, LR 128 -> SR 512, torch eager fp16 vs compiled +
CUDA graphs fp16/bf16, in ms (CUDA events) and % of this GPU's own peak.

Run on a CUDA machine (a few minutes; rows are written to the JSON as they finish):
    python benchmarks/gpu_compiled.py --out gpu_compiled.json
    python benchmarks/gpu_compiled.py --lr 128 --batch 1 --compile-mode max-autotune-no-cudagraphs --fp8
Without CUDA it says so in one line and exits 0; `--smoke` runs the same code on CPU (tiny preset, LR 16,
torch.compile's `eager` backend, no CUDA graphs) to check the script itself.

Every variant is the product's own runner (`vpdsr.runtimes.torch_runner.TorchRunner`, the one
`vpdsr bench` opens), with weights cast to the precision (`mode="cast"`) and channels_last on CUDA:
- `ms`: `runner.forward` on device tensors, CUDA events around each call, median of `--iters`
  after `--warmup` (compilation and graph capture happen in the warm-up, timed separately as `first_call_s`);
- `infer_ms`: `runner.infer` with numpy in/out (host copies included: what `vpdsr bench` times per call);
- `gflop`: counted once on the fp32 model with `torch.utils.flop_counter` (convolutions, matmuls,
  attention); `tflops` = gflop / ms; `pct_of_peak` against the dense matmul peak of that dtype, measured
  here first (`peak_tflops`: 8192^3 `torch.matmul`, fp32 with TF32 off, fp16, bf16; fp8 `torch._scaled_mm`
  where compute capability >= 8.9);
- `psnr_vs_fp32`: against the eager fp32 output on the same inputs (random weights; the residual head is
  perturbed so the denoiser shows: an untrained one returns bicubic);
- `runner`: what the runner applied (compile mode, CUDA graphs captured or why not, fp8 layers).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vpdsr.models import build, get_preset
from vpdsr.runtimes.torch_runner import TorchRunner

# name -> (precision, compile?, CUDA graphs?)
VARIANTS = {
    "eager-fp32": ("fp32", False, False),
    "eager-fp16": ("fp16", False, False),
    "compiled-fp16": ("fp16", True, False),
    "compiled-graphs-fp16": ("fp16", True, True),
    "compiled-graphs-bf16": ("bf16", True, True),
}
FP8_VARIANT = {"compiled-graphs-fp8": ("fp8", True, True)}
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def timer(device: str):
    """(start, stop) -> milliseconds: CUDA events on the device's stream, perf_counter on CPU."""
    if device == "cpu":
        t = {}
        return (lambda: t.__setitem__(0, time.perf_counter())), (lambda: (time.perf_counter() - t[0]) * 1e3)
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def stop() -> float:
        b.record()
        b.synchronize()
        return a.elapsed_time(b)

    return a.record, stop


def timed_ms(fn, device: str, warmup: int, iters: int, budget_s: float) -> list[float]:
    for _ in range(warmup):
        fn()
    start, stop = timer(device)
    out, t_end = [], time.perf_counter() + budget_s
    for _ in range(iters):
        start()
        fn()
        out.append(stop())
        if time.perf_counter() > t_end:
            break
    return out


def matmul_peaks(device: str, n: int, iters: int) -> dict[str, float]:
    """Dense matmul TFLOP/s per dtype on this device (the roofline the model rows are quoted against)."""
    peaks = {}
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 peak is true fp32 (the fp32 rows run without TF32)
    for name, dtype in _DTYPES.items():
        if device == "cpu" and name != "fp32":
            continue  # CPU half-precision matmul is emulated on many CPUs: not a peak
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        ms = statistics.median(timed_ms(lambda: a @ b, device, 2, iters, 30.0))
        peaks[name] = round(2 * n**3 / ms / 1e9, 3)
    if device != "cpu" and torch.cuda.get_device_capability() >= (8, 9):
        a = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t()  # column-major, as the FP8 GEMM wants
        one = torch.ones((), device=device)
        ms = statistics.median(timed_ms(lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one,
                                                                 out_dtype=torch.bfloat16), device, 2, iters, 30.0))
        peaks["fp8"] = round(2 * n**3 / ms / 1e9, 3)
    return peaks


def count_flops(model, lr: torch.Tensor, noise: torch.Tensor) -> tuple[float, float]:
    """(GFLOP per call, share of it in linear layers: what fp8 covers) from torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(lr, noise)
    by_op = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    linear = sum(v for k, v in by_op.items() if k.split(".")[-1] in ("mm", "addmm"))
    total = counter.get_total_flops()
    return total / 1e9, (linear / total if total else 0.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else round(10 * math.log10(1.0 / mse), 2)


def run_variant(name: str, spec: tuple, base, feed: dict, args, device: str, gflop: float, peaks: dict,
                ref: np.ndarray | None) -> tuple[dict, np.ndarray]:
    precision, compiled, graphs = spec
    runner = TorchRunner(copy.deepcopy(base), device=device, precision=precision, mode="cast",
                         compile=args.compile_mode if compiled else None, compile_backend=args.compile_backend,
                         cuda_graphs=graphs and device != "cpu", name=name)
    with runner:
        args_dev = [torch.from_numpy(feed[k]).to(runner._torch_device) for k in ("lr", "noise")]
        t0 = time.perf_counter()
        first = runner.forward(*args_dev)  # compilation + graph capture happen here
        if device != "cpu":
            torch.cuda.synchronize()
        first_s = time.perf_counter() - t0
        del first
        if device != "cpu":
            torch.cuda.reset_peak_memory_stats()
        ms = timed_ms(lambda: runner.forward(*args_dev), device, args.warmup, args.iters, args.budget_s)
        infer = []
        for _ in range(min(args.iters, 5)):
            out = runner.infer(feed)["sr"]
            infer.append(runner.last_inference_time() * 1e3)
        row = {"name": name, "precision": precision, "compiled": compiled, "cuda_graphs": graphs,
               "ms": round(statistics.median(ms), 3), "ms_min": round(min(ms), 3), "iters": len(ms),
               "infer_ms": round(statistics.median(infer), 3), "first_call_s": round(first_s, 2),
               "gflop": round(gflop, 3), "tflops": round(gflop / statistics.median(ms), 4)}
        peak = peaks.get(precision)
        row["pct_of_peak"] = round(100 * row["tflops"] / peak, 1) if peak else None
        row["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if device != "cpu" else None
        row["finite"] = bool(np.isfinite(out).all())
        row["psnr_vs_fp32"] = psnr(out, ref) if ref is not None else None
        row["runner"] = runner.describe()
    if device != "cpu":
        torch.cuda.empty_cache()
    return row, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--lr", type=int, default=128, help="LR side (SR is 4x)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=20.0, help="stop timing a variant after this many seconds")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode of the compiled variants (max-autotune-no-cudagraphs tunes longer)")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--variants", help=f"comma list of {', '.join([*VARIANTS, *FP8_VARIANT])} (default: all but fp8)")
    ap.add_argument("--fp8", action="store_true", help="add compiled-graphs-fp8 (compute capability >= 8.9)")
    ap.add_argument("--peak-n", type=int, default=8192, help="matmul side of the peak measurement")
    ap.add_argument("--smoke", action="store_true", help="CPU check of this script: tiny preset, LR 16, eager backend")
    ap.add_argument("--out", default="gpu_compiled.json")
    args = ap.parse_args(argv)
    if args.smoke:
        device = "cpu"
        args.preset, args.lr, args.compile_backend, args.peak_n = "tiny", 16, "eager", 512
        args.warmup, args.iters = 1, 3
    elif not torch.cuda.is_available():
        print("gpu_compiled: no CUDA device (torch.cuda.is_available() is False): nothing measured; "
              "run it on a CUDA machine, or pass --smoke for a CPU check of the script")
        return 0
    else:
        device = "cuda"
        torch.backends.cudnn.benchmark = True  # static shapes: let cuDNN pick the fastest convolutions once
        torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32: the reference output and the fp32 peak
    known = {**VARIANTS, **FP8_VARIANT}
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else \
        [*VARIANTS, *(FP8_VARIANT if args.fp8 else ())]
    if any(v not in known for v in wanted):
        ap.error(f"unknown variant(s) {[v for v in wanted if v not in known]}; expected {', '.join(known)}")
    variants = {v: known[v] for v in dict.fromkeys(["eager-fp32", *wanted])}  # fp32 first: the PSNR reference

    base = build(get_preset(args.preset), seed=0).eval()
    with torch.no_grad():
        base.denoiser.unet.conv_out.weight.normal_(0, 1e-3, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(args.batch, 3, args.lr, args.lr, generator=g)
    noise = torch.randn(base.noise_shape(tuple(lr.shape)), generator=g)
    feed = {"lr": lr.numpy(), "noise": noise.numpy()}
    gflop, linear_share = count_flops(base.to(device), lr.to(device), noise.to(device))
    base.to("cpu")
    peaks = matmul_peaks(device, args.peak_n, 10)
    report = {"script": "benchmarks/gpu_compiled.py", "device": torch.cuda.get_device_name() if device != "cpu" else
              platform.processor() or "cpu", "capability": list(torch.cuda.get_device_capability()) if device != "cpu"
              else None, "torch": torch.__version__, "preset": args.preset,
              "params_m": round(base.num_parameters() / 1e6, 1), "lr": args.lr, "sr": 4 * args.lr,
              "batch": args.batch, "compile_mode": args.compile_mode,
              "compile_backend": args.compile_backend, "gflop_per_call": round(gflop, 3),
              "linear_flop_share": round(linear_share, 4), "peak_tflops": peaks, "rows": []}
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    out_path = Path(args.out)
    ref = None
    for name, spec in variants.items():
        try:
            row, out = run_variant(name, spec, base, feed, args, device, gflop, peaks, ref)
        except Exception as e:  # one variant failing (an fp8 GPU missing, OOM) must not lose the others
            row, out = {"name": name, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}, None
        if name == "eager-fp32" and out is not None:
            ref = out
        report["rows"].append(row)
        print(json.dumps(row))
        out_path.write_text(json.dumps(report, indent=2) + "\n")  # after every row: a timeout keeps what finished
    eager = next((r for r in report["rows"] if r["name"] == "eager-fp16" and "ms" in r), None)
    best = min((r for r in report["rows"] if "ms" in r and r["name"] != "eager-fp32"), key=lambda r: r["ms"],
               default=None)
    if eager and best:
        print(f"eager fp16 {eager['ms']} ms -> {best['name']} {best['ms']} ms ({eager['ms'] / best['ms']:.2f}x), "
              f"{best['pct_of_peak']}% of the {best['precision']} matmul peak; written {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
