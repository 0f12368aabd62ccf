"""CUDA check of the ResShift family (official realsr architecture, random official-layout weights).

Run on a machine with a CUDA GPU (one script, a few minutes on an H100/H200):
    python benchmarks/gpu_resshift.py --sizes 128 256 --teacher-sizes 128 --json gpu_resshift.json

SinSR one-step (`sinsr`) in fp32 / fp16 / bf16 at each LR size: latency from CUDA events, peak
memory, NaN/Inf counts, PSNR against fp32 and the share of codebook lookups that changed against
fp32 (the VQ decoder's argmin is where half precision shows first); then the T=4 teacher
(`resshift-v3`, ResShift's posterior sampler) in fp32 and bf16. Without CUDA it runs on CPU as a
dry run (wall clock, no memory figures).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from gpu_forward import DTYPES, psnr, timed  # noqa: E402

from tests.models.resshift.official import make_inputs, random_official_states  # noqa: E402
from vpdsr.models import get_preset  # noqa: E402
from vpdsr.models.checkpoint import build  # noqa: E402
from vpdsr.models.resshift.convert import load_official  # noqa: E402


def load(name: str, dev: str):
    model = build(get_preset(name), seed=0).eval()
    load_official(model, random_official_states(model, seed=0), {"unet": "random", "autoencoder": "random"})
    return model.to(dev)


def measure(fn, dev: str, warmup: int, iters: int):
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        if dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times = timed(fn, 0, iters)
        out = fn()
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else 0.0
    return out, {"ms_p50": round(float(np.median(times)), 2), "ms_mean": round(float(np.mean(times)), 2),
                 "peak_mb": round(peak, 1)}


def health(out: torch.Tensor, ref: torch.Tensor) -> dict:
    out = out.float()
    return {"nan": int(torch.isnan(out).sum()), "inf": int(torch.isinf(out).sum()), "psnr_vs_fp32": psnr(out, ref)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--teacher-sizes", type=int, nargs="+", default=[128])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--student", default="sinsr", help="preset of the one-step model (resshift-tiny for a dry run)")
    ap.add_argument("--teacher", default="resshift-v3", help="preset of the T-step teacher")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = dev == "cuda"
    rows = []
    student = load(args.student, dev)
    info = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu (dry run)", "torch": torch.__version__,
            "params_m": round(student.num_parameters() / 1e6, 2)}
    print(json.dumps(info), flush=True)
    for size in args.sizes:
        lr, noise = make_inputs(size, size, student.latent_channels, size)
        ref = ref_codes = None
        for name, dtype in DTYPES.items():
            m = student.to(dtype=dtype)
            x, n = lr.to(dev, dtype), noise.to(dev, dtype)
            out, row = measure(lambda: m(x, n), dev, args.warmup, args.iters)
            with torch.inference_mode():
                codes = m.autoencoder.quantize.indices(m.student_step(m.encode(x), n, x))
            if ref is None:
                ref, ref_codes = out.float(), codes
            row = {"model": f"{args.student} one-step", "lr": size, "dtype": name, **row, **health(out, ref),
                   "codes_changed": round(float((codes != ref_codes).float().mean()), 5)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        student.to(dtype=torch.float32)
    del student
    teacher = load(args.teacher, dev)
    for size in args.teacher_sizes:
        lr, noise = make_inputs(size, size, teacher.latent_channels, size)
        ref = None
        for name in ("fp32", "bf16"):
            m = teacher.to(dtype=DTYPES[name])
            x, n = lr.to(dev, DTYPES[name]), noise.to(dev, DTYPES[name])
            out, row = measure(lambda: m.teacher_sample(x, n, generator=torch.Generator(dev).manual_seed(0)),
                               dev, 1, max(1, args.iters // 3))
            ref = out.float() if ref is None else ref
            row = {"model": f"{args.teacher} teacher T={m.diffusion.steps}", "lr": size, "dtype": name, **row,
                   **health(out, ref)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        teacher.to(dtype=torch.float32)
    if args.json:
        args.json.write_text(json.dumps({**info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
