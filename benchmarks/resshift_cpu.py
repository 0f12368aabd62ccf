"""Full-size ResShift / SinSR architecture on CPU: parameters, GFLOP, torch latency, ONNX fp32 export.

    python benchmarks/resshift_cpu.py --config sinsr --lr 64 --onnx runs/resshift-onnx --json runs/resshift_cpu.json
    python benchmarks/resshift_cpu.py --config resshift-v3 --reference /path/to/ResShift   # + the reference's latency

Weights are random in the official layout (`tests/models/resshift/official.py`), loaded through the
converter's own checks, so every layer is active (the reference init zeroes each ResBlock's last
conv). GFLOP are counted with torch.utils.flop_counter.FlopCounterMode (2 per multiply-add; convs,
matmuls and attention). Latencies are medians of `--iters` runs after one warm-up; with
`--reference` the reference implementation's one-step is timed in the same process, alternating
with ours, so the ratio holds on a shared machine even when absolute times do not.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.models.resshift.official import make_inputs, random_official_states  # noqa: E402
from vpdsr.models import get_preset  # noqa: E402
from vpdsr.models.checkpoint import build  # noqa: E402
from vpdsr.models.resshift.convert import load_official  # noqa: E402


def median_ms(fn, iters: int) -> float:
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 1)


def gflop(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return round(counter.get_total_flops() / 1e9, 1)


def export_onnx(model, lr, noise, path: Path) -> float:
    t0 = time.perf_counter()
    model.fix_size(tuple(lr.shape[-2:]))  # static tile: the shifted-window masks become constants
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (lr, noise), str(path), dynamo=False, opset_version=17, input_names=["lr", "noise"],
                          output_names=["sr"], dynamic_axes={"lr": {0: "b"}, "noise": {0: "b"}, "sr": {0: "b"}},
                          do_constant_folding=True)
    model.fix_size(None)
    return round(time.perf_counter() - t0, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="sinsr")
    ap.add_argument("--lr", type=int, default=64, help="LR side (a multiple of the model's size rule, 64)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--onnx", type=Path, help="export the fused fp32 graph here and compare onnxruntime with torch")
    ap.add_argument("--reference", type=Path, help="checkout of zsyOAOA/ResShift: time its one-step beside ours")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)

    cfg = get_preset(args.config)
    model = build(cfg, seed=0).eval()
    states = random_official_states(model, seed=0)
    load_official(model, states, {"unet": "random", "autoencoder": "random"})
    lr, noise = make_inputs(args.lr, args.lr, model.latent_channels, 0)
    st = model.stage_modules()
    cond = st["encoder"](lr)
    x0 = st["denoiser"](cond, noise)
    out = {"config": args.config, "lr": args.lr, "threads": torch.get_num_threads(),
           "params_m": {"total": round(model.num_parameters() / 1e6, 2),
                        "unet": round(sum(p.numel() for p in model.unet.parameters()) / 1e6, 2),
                        "autoencoder": round(sum(p.numel() for p in model.autoencoder.parameters()) / 1e6, 2)},
           "gflop": {"total": gflop(lambda: model(lr, noise)), "encoder": gflop(lambda: st["encoder"](lr)),
                     "denoiser": gflop(lambda: st["denoiser"](cond, noise)),
                     "decoder": gflop(lambda: st["decoder"](x0))}}
    sr = model(lr, noise)
    out["torch_ms"] = median_ms(lambda: model(lr, noise), args.iters)
    out["torch_stage_ms"] = {"encoder": median_ms(lambda: st["encoder"](lr), args.iters),
                             "denoiser": median_ms(lambda: st["denoiser"](cond, noise), args.iters),
                             "decoder": median_ms(lambda: st["decoder"](x0), args.iters)}
    print(json.dumps(out), flush=True)

    if args.reference:
        from tests.models.resshift.official import reference_params
        from tests.models.resshift.reference_parity import build_reference, reference_one_step

        ref_unet, ref_vq, ref_diff = build_reference(args.reference, reference_params(cfg, sinsr=False))
        ref_unet.load_state_dict(states["unet"])
        ref_vq.load_state_dict(states["autoencoder"])
        ref_fn = lambda: reference_one_step(ref_diff, ref_unet, ref_vq, lr * 2 - 1, noise, False)  # noqa: E731
        ours_t, ref_t = [], []
        for _ in range(args.iters):  # alternate, so both see the same machine load
            ours_t.append(median_ms(lambda: model(lr, noise), 1))
            ref_t.append(median_ms(ref_fn, 1))
        out["side_by_side_ms"] = {"ours": statistics.median(ours_t), "reference": statistics.median(ref_t),
                                  "ours_over_reference": round(statistics.median(ours_t) / statistics.median(ref_t), 3),
                                  "one_step_max_diff": float((ref_fn()[0] - sr).abs().max())}
        print(json.dumps(out["side_by_side_ms"]), flush=True)

    if args.onnx:
        import onnxruntime as ort

        args.onnx.mkdir(parents=True, exist_ok=True)
        path = args.onnx / f"{args.config}-lr{args.lr}.onnx"
        out["onnx_export_s"] = export_onnx(model, lr, noise, path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {"lr": lr.numpy(), "noise": noise.numpy()}
        got = sess.run(None, feeds)[0]
        d = np.abs(got - sr.numpy())
        out["onnx"] = {"file_mb": round(path.stat().st_size / 2**20, 1), "max_diff": float(d.max()),
                       "mean_diff": float(d.mean()), "ort_ms": median_ms(lambda: sess.run(None, feeds), args.iters)}
        print(json.dumps(out["onnx"]), flush=True)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
