"""CUDA check of the one-step forward: latency (CUDA events), peak memory, fp16 NaN/Inf, parity.

Run on a machine with a CUDA GPU:
    python benchmarks/gpu_forward.py --preset base --sizes 128 256 --tiled 1024 --ort-control 64

Random weights: the residual head starts at zero (an untrained model returns bicubic), so the
script perturbs `conv_out` slightly; otherwise the denoiser would not affect the output at all
and half-precision problems inside the UNet could not show.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from vpdsr.models import build, get_preset

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def timed(fn, warmup: int, iters: int) -> list[float]:
    if not torch.cuda.is_available():  # dry runs on CPU: wall clock
        fn()
        t = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            t.append((time.perf_counter() - t0) * 1e3)
        return t
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="base")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--tiled", type=int, default=0, help="also run the tiled pipeline on an LR of this size (bf16)")
    ap.add_argument("--ort-control", type=int, default=0, help="ONNX Runtime CPU control at this LR size")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        torch.cuda.synchronize = lambda: None  # dry run
        torch.cuda.reset_peak_memory_stats = lambda: None
        torch.cuda.empty_cache = lambda: None
        torch.cuda.max_memory_allocated = lambda: 0
        torch.cuda.get_device_name = lambda: "cpu (dry run)"
    base = build(get_preset(args.preset), seed=0).eval()
    with torch.no_grad():
        base.denoiser.unet.conv_out.weight.normal_(0, 1e-3, generator=torch.Generator().manual_seed(1))
    print(f"device {torch.cuda.get_device_name()} torch {torch.__version__} params {base.num_parameters()/1e6:.1f} M")
    rows = []
    for size in args.sizes:
        g = torch.Generator().manual_seed(size)
        lr = torch.rand(1, 3, size, size, generator=g)
        noise = torch.randn(base.noise_shape(tuple(lr.shape)), generator=g)
        ref = None
        for name, dtype in DTYPES.items():
            model = base.to(dev, dtype)
            x, n = lr.to(dev, dtype), noise.to(dev, dtype)
            with torch.inference_mode():
                for _ in range(args.warmup):  # cudnn.benchmark's algorithm search allocates huge workspaces
                    model(x, n)
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                times = timed(lambda: model(x, n), 0, args.iters)
                out = model(x, n).float()
            peak = torch.cuda.max_memory_allocated() / 2**20
            finite = bool(torch.isfinite(out).all())
            if ref is None:
                ref = out
            row = {"lr": size, "dtype": name, "ms_p50": float(np.median(times)), "ms_mean": float(np.mean(times)),
                   "peak_mb": round(peak, 1), "finite": finite, "nan": int(torch.isnan(out).sum()),
                   "inf": int(torch.isinf(out).sum()), "psnr_vs_fp32": psnr(out, ref)}
            rows.append(row)
            print(json.dumps(row))
    base = base.to(dev, torch.float32)
    if args.tiled:
        from vpdsr.runtimes.noise import NoiseField
        from vpdsr.runtimes.tiling import TileConfig, upscale_tiled

        model = base.to(dev, torch.bfloat16)

        @torch.inference_mode()
        def infer(a, b):
            return model(torch.from_numpy(a).to(dev, torch.bfloat16),
                         torch.from_numpy(b).to(dev, torch.bfloat16)).float().cpu().numpy()

        img = np.random.default_rng(0).random((3, args.tiled, args.tiled), dtype=np.float32)
        cfg = TileConfig(tile=256, overlap=32, batch=4)
        upscale_tiled(infer, img[:, :300, :300], NoiseField(0, model.latent_channels), cfg)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        sr = upscale_tiled(infer, img, NoiseField(0, model.latent_channels), cfg)
        torch.cuda.synchronize()
        print(json.dumps({"tiled_lr": args.tiled, "sr_shape": list(sr.shape),
                          "seconds": round(time.perf_counter() - t0, 2),
                          "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                          "finite": bool(np.isfinite(sr).all())}))
        base = base.to(dev, torch.float32)
    if args.ort_control:
        import os
        import tempfile

        import onnxruntime as ort

        s = args.ort_control
        lr = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(7))
        noise = torch.randn(base.noise_shape(tuple(lr.shape)), generator=torch.Generator().manual_seed(8))
        cpu_model = base.to("cpu")
        path = os.path.join(tempfile.mkdtemp(), "base.onnx")
        torch.onnx.export(cpu_model, (lr, noise), path, dynamo=False, opset_version=17,
                          input_names=["lr", "noise"], output_names=["sr"])
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = {"lr": lr.numpy(), "noise": noise.numpy()}
        sess.run(None, feed)
        t0 = time.perf_counter()
        out = sess.run(None, feed)[0]
        ort_ms = (time.perf_counter() - t0) * 1e3
        with torch.inference_mode():
            gpu = base.to(dev)(lr.to(dev), noise.to(dev)).cpu()
            t_cpu = time.perf_counter()
            cpu_out = cpu_model.to("cpu")(lr, noise)
            torch_cpu_ms = (time.perf_counter() - t_cpu) * 1e3
        print(json.dumps({"ort_cpu_lr": s, "ort_cpu_ms": round(ort_ms, 1), "torch_cpu_ms": round(torch_cpu_ms, 1),
                          "psnr_ort_vs_torch_cuda_fp32": psnr(torch.from_numpy(out), gpu),
                          "psnr_torch_cpu_vs_cuda": psnr(cpu_out, gpu)}))


if __name__ == "__main__":
    main()
