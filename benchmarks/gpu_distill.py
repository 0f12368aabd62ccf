"""CUDA check of VPD-SR distillation at `base` scale: steps/s, peak memory, finite loss terms.

    python benchmarks/gpu_distill.py --steps 50 --batch 4 --crop 256 --precision bf16

The teacher is a freshly initialised `base` model (the check is about the training step's cost and
numerics, not quality); ESS is disabled when no CLIP weights are present (recorded in the log).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import tempfile
import time
from pathlib import Path

import torch
import yaml

from vpdsr.distill.config import load_config
from vpdsr.distill.trainer import train_student
from vpdsr.models import build, get_preset, save_pretrained

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--precision", default="bf16", choices=("no", "fp16", "bf16"))
    ap.add_argument("--config", default=str(ROOT / "configs" / "base.yaml"))
    args = ap.parse_args()
    data = yaml.safe_load(Path(args.config).read_text())
    data["data"].update(crop_size=args.crop, batch_size=args.batch)
    data["student"].update(steps=args.steps, checkpoint_every=0, log_every=1, optim={**data["student"]["optim"],
                                                                                     "warmup_steps": 5})
    data["losses"].update(on_missing_weights="skip", adv_start_step=0)
    data["accelerate"]["mixed_precision"] = args.precision
    data["eval"] = {"enabled": False}
    cfg = load_config(data)
    tmp = Path(tempfile.mkdtemp())
    teacher = save_pretrained(build(get_preset("base"), seed=0), tmp / "teacher")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = train_student(cfg, teacher, tmp / "student", progress=False)
    wall = time.perf_counter() - t0
    rows = list(csv.DictReader(open(tmp / "student" / "log.csv")))
    terms = [k for k in rows[-1] if k not in ("step", "lr", "seconds")]
    finite = all(math.isfinite(float(r[k])) for r in rows for k in terms if r[k] not in ("disabled", ""))
    # steady-state rate from the log: steps 10..N (the first steps include cuDNN autotuning)
    s10 = next(r for r in rows if int(r["step"]) == 10)
    rate = (int(rows[-1]["step"]) - 10) / max(1e-9, float(rows[-1]["seconds"]) - float(s10["seconds"]))
    print(json.dumps({
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "steps": result.step, "batch": args.batch, "crop": args.crop, "precision": args.precision,
        "wall_s_incl_setup_and_save": round(wall, 1), "steps_per_s_after_step10": round(rate, 3),
        "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
        "loss_terms": terms, "all_finite": finite, "last": rows[-1], "disabled": result.disabled_terms,
    }))


if __name__ == "__main__":
    main()
