"""PSNR vs torch fp32 against training steps of `vpdsr distill quantize`: the dB-vs-steps curve.

Usage:
    python benchmarks/qat_curve.py --model realesrgan-x4plus --out runs/qat-curve/x4plus \
        --at 0,25,50,100,150,200,250,300
    python benchmarks/qat_curve.py --model tiny --out runs/qat-curve/tiny --at 0,50,100 --steps 100

Trains one run at the model's shipped settings (`vpdsr.distill.quantize.settings_for`, overridden by
`--steps`, `--crop-size`, `--batch-size`, `--target-crops`), stopping after each step in `--at` (the
loop's bit-exact resume carries it on), and at each stop exports the trained fake-quantized model to the
INT8 targets and validates them as `vpdsr export` does: worst and mean PSNR against MODEL's torch fp32
output on the held-out photos whole. Step 0 is the untrained copy (ranges from MinMax calibration: what
plain post-training `ort-int8` builds). The last stop equals the run's own export (OUT/manifest.json).

Writes OUT/curve.json (every point: step, wall seconds, peak RSS, per-target worst/mean/per-photo dB),
OUT/curve.md (the table) and OUT/curve.png (the plot). The machine may be shared: seconds are wall.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def evaluate(cfg, out: Path, step: int) -> dict:
    """Export the run's state at `step` (its checkpoint, or the untrained copy at 0) and validate it."""
    from safetensors.torch import load_file

    from vpdsr.distill.quantize import distill_config, export_trained
    from vpdsr.distill.teachers import plan_teacher, teacher_directory
    from vpdsr.export import qat_model
    from vpdsr.models.checkpoint import load_config

    qat, scheme, _ = qat_model.load(out / "train" / "init")
    if step > 0:
        tensors = load_file(str(out / "train" / "checkpoint" / "modules.safetensors"))
        qat.load_state_dict({k[len("denoiser."):]: v for k, v in tensors.items() if k.startswith("denoiser.")},
                            strict=True)
    qat.eval()
    dcfg = distill_config(cfg, load_config(teacher_directory(cfg.model)))
    fp32 = plan_teacher(dcfg, cfg.model).load(dcfg, "cpu").model
    return targets_of(export_trained(fp32, qat, scheme, out / "eval" / f"step-{step:05d}", cfg, progress=False))


def targets_of(manifest) -> dict:
    """Per target: status and worst/mean/per-photo PSNR vs torch fp32 from an export's manifest."""
    point = {}
    for e in manifest.artifacts:
        v = e.validation or {}
        point[e.name] = {"status": e.status, "worst_db": v.get("psnr_db"), "mean_db": v.get("psnr_db_mean"),
                         "per_image": v.get("psnr_db_per_image")}
    return point


def plot(points: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    targets = [t for t in points[0]["targets"]]
    for t in targets:
        steps = [p["step"] for p in points]
        ax.plot(steps, [p["targets"][t]["worst_db"] for p in points], marker="o", label=f"{t} worst")
        ax.plot(steps, [p["targets"][t]["mean_db"] for p in points], marker=".", linestyle="--", label=f"{t} mean")
    ax.set_xlabel("training step")
    ax.set_ylabel("PSNR vs torch fp32 (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(points: list[dict]) -> str:
    targets = list(points[0]["targets"])
    head = "| step | wall s | " + " | ".join(f"{t} worst / mean dB" for t in targets) + " |"
    lines = [head, "|" + "---|" * (2 + len(targets))]
    for p in points:
        cells = " | ".join(f"{p['targets'][t]['worst_db']:.2f} / {p['targets'][t]['mean_db']:.2f}" for t in targets)
        lines.append(f"| {p['step']} | {p['seconds']:.0f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from vpdsr.distill.quantize import settings_for
    from vpdsr.logs import session

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--at", default="0,50,100,150,200,250,300", help="comma list of steps to evaluate at")
    ap.add_argument("--targets", default="ort-int8,openvino-int8")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--crop-size", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--target-crops", type=int)
    ap.add_argument("--lr", type=float)
    args = ap.parse_args(argv)
    cfg = settings_for(args.model, targets=args.targets, steps=args.steps, crop_size=args.crop_size,
                       batch_size=args.batch_size, target_crops=args.target_crops, lr=args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with session(out / "curve.log"):
        run(cfg, out, args.at)


def run(cfg, out: Path, at_steps: str) -> None:
    from vpdsr.distill.quantize import quantize

    at = sorted({int(s) for s in at_steps.split(",")} | {cfg.steps})
    path = out / "curve.json"
    saved = json.loads(path.read_text()) if path.is_file() else {"train_s": 0.0, "points": []}
    points, train_s = saved["points"], saved["train_s"]
    done = {p["step"] for p in points}
    for step in at:
        if step in done:
            continue
        t = time.perf_counter()
        manifest = None
        if step > 0 or not (out / "train" / "init").is_dir():
            # train on to `step`, resuming from the previous stop (step 0: only the untrained copy, after step 1)
            stop = max(step, 1) if step < cfg.steps else None
            manifest = quantize(cfg, out, resume=True, progress=True, stop_at=stop)
        train_s += time.perf_counter() - t
        point = {"step": step, "seconds": round(train_s, 1),
                 "targets": targets_of(manifest) if manifest is not None else evaluate(cfg, out, step),
                 "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
        points.append(point)
        print(json.dumps(point), flush=True)
        path.write_text(json.dumps({"config": cfg.to_dict(), "train_s": train_s, "points": points}, indent=2) + "\n")
        (out / "curve.md").write_text(table(points))
        plot(points, out / "curve.png", f"vpdsr distill quantize --model {cfg.model}: {cfg.steps} steps, "
                                         f"{cfg.batch_size} x {cfg.crop_size} px crops")

if __name__ == "__main__":
    main()
