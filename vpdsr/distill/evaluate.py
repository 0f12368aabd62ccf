"""End-of-run evaluation on held-out photos: PSNR/SSIM on Y vs HR for bicubic, teacher and student.

Each HR photo is center-cropped to a multiple of 4, degraded with the run's degradation (seeded
per image), and super-resolved by: bicubic x4 (the model's own upsampler), the teacher's T-step
sampling and its single step (what the student starts from), and the student's one step, all from the
same noise. Results go to `eval.json` and `eval.md` in the run directory.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from vpdsr.utils import atomic_write_text


@torch.no_grad()
def evaluate(images: list[tuple[str, torch.Tensor]], degradation, seed: int, crop_border: int = 4,
             teacher=None, student=None, device="cpu") -> dict:
    """Scores per image and their mean. `teacher` / `student` are VPDSR models (or None to skip)."""
    from vpdsr.data.degrade import degrade
    from vpdsr.distill.data import step_generator
    from vpdsr.metrics.fidelity import psnr, ssim

    methods: dict[str, object] = {"bicubic": None}
    if teacher is not None:
        steps = teacher.schedule.steps
        methods[f"teacher_{steps}step"] = None
        methods["teacher_1step"] = None
    if student is not None:
        methods["student_1step"] = None
    rows = []
    for i, (name, hr) in enumerate(images):
        g = step_generator(seed, "eval", i)
        lr = degrade(hr, degradation, g).to(device)
        outs = {"bicubic": F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)}
        ref = teacher if teacher is not None else student
        if ref is not None:
            noise = ref.make_noise(lr, seed=seed + i)
        if teacher is not None:
            tg = step_generator(seed, "eval", 1000 + i, device=str(device))
            outs[f"teacher_{steps}step"] = teacher.teacher_sample(lr, noise, generator=tg)
            outs["teacher_1step"] = teacher(lr, noise)
        if student is not None:
            outs["student_1step"] = student(lr, noise)
        hr_np = hr[0].permute(1, 2, 0).cpu().double().numpy()
        row = {"image": name, "hr_size": [int(hr.shape[-1]), int(hr.shape[-2])]}
        for method, sr in outs.items():
            sr_np = sr[0].permute(1, 2, 0).float().cpu().double().numpy()
            row[method] = {"psnr_y": psnr(sr_np, hr_np, y_channel=True, crop_border=crop_border),
                           "ssim_y": ssim(sr_np, hr_np, y_channel=True, crop_border=crop_border)}
        rows.append(row)
    mean = {m: {k: sum(r[m][k] for r in rows) / len(rows) for k in ("psnr_y", "ssim_y")} for m in methods}
    result = {"metric": "PSNR/SSIM on Y (BT.601), crop_border %d" % crop_border, "images": rows, "mean": mean}
    if student is not None:
        gains = {"student_minus_bicubic_db": mean["student_1step"]["psnr_y"] - mean["bicubic"]["psnr_y"]}
        if teacher is not None:
            gains["student_minus_teacher_db"] = mean["student_1step"]["psnr_y"] - mean[f"teacher_{steps}step"]["psnr_y"]
        result["summary"] = gains
    return result


def write_eval(result: dict, directory: Path) -> tuple[Path, Path]:
    """eval.json and eval.md (a table per image and the mean) in `directory`, atomically."""
    directory = Path(directory)
    js = atomic_write_text(directory / "eval.json", json.dumps(result, indent=2, default=_finite) + "\n")
    methods = list(result["mean"])
    lines = [f"# Evaluation ({result['metric']})", "", "| image | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    for r in result["images"] + [{"image": "**mean**", **result["mean"]}]:
        cells = [f"{r[m]['psnr_y']:.2f} dB / {r[m]['ssim_y']:.4f}" for m in methods]
        lines.append(f"| {r['image']} | " + " | ".join(cells) + " |")
    for k, v in result.get("summary", {}).items():
        lines.append(f"\n{k}: {v:+.2f}")
    md = atomic_write_text(directory / "eval.md", "\n".join(lines) + "\n")
    return js, md


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x
