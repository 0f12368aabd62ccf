"""End-of-run evaluation on held-out photos: fidelity (PSNR/SSIM on Y) and perception (PIQE) vs HR.

Each HR photo is center-cropped to a multiple of 4, degraded with the run's degradation (seeded
per image), and super-resolved by: bicubic x4 (the model's own upsampler), the teacher's T-step
sampling and its single step (what the student starts from), and the student's one step, all from the
same noise. Each method is scored on the full images and on crops: the `crops_per_image` most
detailed (highest HR gradient energy) `crop_size` squares of a regular grid inside the
`crop_border` frame of every image, cut from the full-image outputs: where detail is, blur shows.

PIQE (no-reference, lower is better) is fooled by plain noise: measured here, Gaussian noise of
std 0.005 (1.3/255, invisible) on the PSNR student's output takes its PIQE from 77 to 43 for
0.04 dB. The `controls` rows add such noise (std `noise_control`) to bicubic and to the student, so
a reader sees what a low PIQE alone is worth: judge a perceptual student with the crops too.

Results go to `eval.json` and `eval.md` in the run directory.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vpdsr.utils import atomic_write_text

METRIC_HEADS = {"psnr_y": "PSNR-Y dB", "ssim_y": "SSIM-Y", "piqe": "PIQE", "clipiqa": "CLIPIQA", "grid": "grid"}
NOISE_CONTROL_SEED = 12345


@torch.no_grad()
def evaluate(images: list[tuple[str, torch.Tensor]], degradation, seed: int, crop_border: int = 4,
             teacher=None, student=None, device="cpu", perceptual: bool = True, crop_size: int = 128,
             noise_control: float = 0.005, clipiqa=None, others: dict | None = None,
             outputs: dict | None = None, crops_per_image: int = 4, teacher_call: str = "sample") -> dict:
    """Scores per image, their mean, and the mean over crops. `teacher` / `student`: SR models or None.

    Args:
        perceptual: also score PIQE (pyiqa; no weights needed).
        crop_size: side of the grid crops (HR pixels); 0 = no crop scores.
        crops_per_image: score the this many most detailed grid squares of each image (0 = all).
        noise_control: std of the noise of the `+noise` control rows (0 = no control rows).
        clipiqa: a vpdsr.metrics.ClipIqa to add CLIPIQA (higher is better), or None.
        others: {name: one-step model} scored beside the student from the same noise (e.g. the PSNR
            student next to a perceptual one).
        outputs: a dict to fill with {image name: {method: HxWx3 array}}, including "hr" (for crops).
        teacher_call: sample (a diffusion teacher: its T-step sampling and its single step, from the
            student's noise) or forward (any model called once, e.g. a GAN: the row `teacher`).
    """
    from vpdsr.data.degrade import degrade
    from vpdsr.distill.data import step_generator

    rows, crop_scores, controls, vs_rows = [], {}, {}, []
    for i, (name, hr) in enumerate(images):
        g = step_generator(seed, "eval", i)
        lr = degrade(hr, degradation, g).to(device)
        outs = {"bicubic": F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)}
        sampled = teacher is not None and teacher_call == "sample"
        ref = teacher if sampled else student
        if ref is not None:
            lr_in, keep = fit_size(ref, lr)
            noise = ref.make_noise(lr_in, seed=seed + i)
        if sampled:
            tg = step_generator(seed, "eval", 1000 + i, device=str(device))
            outs[f"teacher_{sampling_steps(teacher)}step"] = keep(teacher.teacher_sample(lr_in, noise, generator=tg))
            outs["teacher_1step"] = keep(teacher(lr_in, noise))
        elif teacher is not None:
            outs["teacher"] = one_call(teacher, lr, seed + i)
        if student is not None:
            outs["student_1step"] = keep(student(lr_in, noise))
        for other, model in (others or {}).items():
            outs[other] = keep(model.to(device).eval()(lr_in, noise))
        hr_np = _np(hr)
        row = {"image": name, "hr_size": [int(hr.shape[-1]), int(hr.shape[-2])]}
        arrays = {m: _np(sr) for m, sr in outs.items()}
        vs_rows.append(arrays)
        if outputs is not None:
            outputs[name] = {"hr": hr_np, **arrays}
        if noise_control > 0:
            for base in [m for m in ("bicubic", "student_1step") if m in outs]:
                ng = torch.Generator().manual_seed(NOISE_CONTROL_SEED + i)
                noisy = (outs[base].cpu() + noise_control * torch.randn(outs[base].shape, generator=ng)).clamp(0, 1)
                controls.setdefault(f"{base}+noise{noise_control:g}", []).append(
                    score(_np(noisy), hr_np, crop_border, perceptual, clipiqa))
        for method, sr_np in arrays.items():
            row[method] = score(sr_np, hr_np, crop_border, perceptual, clipiqa)
            if crop_size:
                crop_scores.setdefault(method, []).extend(
                    score(a, b, 0, perceptual, clipiqa)
                    for a, b in grid_crops(sr_np, hr_np, crop_size, crop_border, crops_per_image))
        rows.append(row)
    methods = [m for m in rows[0] if m not in ("image", "hr_size")]
    keys = list(rows[0][methods[0]])
    mean = {m: {k: _mean([r[m][k] for r in rows]) for k in keys} for m in methods}
    result = {"metric": f"PSNR/SSIM on Y (BT.601), crop_border {crop_border}"
              + ("; PIQE (pyiqa, lower is better) on RGB" if perceptual else "")
              + ("; CLIPIQA (higher is better)" if clipiqa is not None else ""),
              "images": rows, "mean": mean}
    n = len(next(iter(crop_scores.values()), []))
    if n:  # images smaller than a crop give none
        result["crops"] = {"size": crop_size, "count": n,
                           "mean": {m: {k: _mean([s[k] for s in v]) for k in keys} for m, v in crop_scores.items()}}
    if controls:
        result["controls"] = {c: {k: _mean([s[k] for s in v]) for k in keys} for c, v in controls.items()}
    teacher_key = None if teacher is None else (
        f"teacher_{sampling_steps(teacher)}step" if teacher_call == "sample" else "teacher")
    if student is not None:
        gains = {"student_minus_bicubic_db": mean["student_1step"]["psnr_y"] - mean["bicubic"]["psnr_y"]}
        if teacher is not None:
            gains["student_minus_teacher_db"] = mean["student_1step"]["psnr_y"] - mean[teacher_key]["psnr_y"]
        result["summary"] = gains
    if teacher_key is not None and teacher_call == "forward":
        result["vs_teacher"] = vs_teacher(vs_rows, teacher_key, crop_border, perceptual)
    return result


def vs_teacher(rows: list[dict], teacher_key: str, crop_border: int, perceptual: bool) -> dict:
    """Fidelity to the teacher: each method's PSNR (RGB and Y) and GMSD against the teacher's output,
    per image and their mean. `rows`: [{method: HxWx3 array}] per image."""
    from vpdsr.metrics.fidelity import psnr

    per_image = []
    for arrays in rows:
        ref = arrays[teacher_key]
        scores = {}
        for m, sr in arrays.items():
            if m == teacher_key:
                continue
            s = {"psnr_rgb": psnr(sr, ref, crop_border=crop_border),
                 "psnr_y": psnr(sr, ref, y_channel=True, crop_border=crop_border)}
            if perceptual:
                from vpdsr.metrics.perceptual import gmsd

                s["gmsd"] = gmsd(sr.astype(np.float32), ref.astype(np.float32))
            scores[m] = s
        per_image.append(scores)
    methods = list(per_image[0]) if per_image else []
    mean = {m: {k: _mean([r[m][k] for r in per_image]) for k in per_image[0][m]} for m in methods}
    return {"reference": teacher_key, "metric": f"PSNR (RGB, Y) with crop_border {crop_border}, GMSD (pyiqa)",
            "mean": mean, "per_image": per_image}


def one_call(model, lr: torch.Tensor, seed: int) -> torch.Tensor:
    """`model`'s SR of `lr` in one call (its own size rule; seeded noise for a model that takes noise)."""
    lr_in, keep = fit_size(model, lr)
    args = (lr_in,) if not model.latent_channels else (lr_in, model.make_noise(lr_in, seed=seed))
    return keep(model(*args)).clamp(0, 1)


def sampling_steps(model) -> int:
    """T of a multi-step model: a VPDSR's `schedule.steps` or a ResShiftSR's `diffusion.steps`."""
    schedule = getattr(model, "schedule", None) or model.diffusion
    return int(schedule.steps)


def fit_size(model, lr: torch.Tensor):
    """(LR padded to the model's size rule, a function cropping an SR output back to the LR's extent).

    ResShift models need sides that are multiples of their window rule and reflect-pad like ResShift's
    sampler (`pad_lr`); other models take any size and get `lr` unchanged.
    """
    if not hasattr(model, "pad_lr"):
        return lr, lambda sr: sr
    padded, (h, w) = model.pad_lr(lr)
    s = model.scale
    return padded, lambda sr: sr[..., :h * s, :w * s]


def evaluate_run(cfg, out: Path | None, teacher=None, student=None, device="cpu", others: dict | None = None) -> dict:
    """`evaluate` with a DistillConfig's `eval` section; writes eval.json/eval.md (and crops.png, when
    `eval.crops_png`) into `out` (None: nowhere)."""
    from vpdsr.distill.data import load_eval_images
    from vpdsr.metrics.clipiqa import ClipIqa

    e = cfg.eval
    images = load_eval_images(e.images, max_side=e.max_side)
    teacher, student = (m.to(device).eval() if m is not None else None for m in (teacher, student))
    clip = ClipIqa(cfg.losses.clip_weights) if e.clipiqa and ClipIqa.available(cfg.losses.clip_weights)[0] else None
    if others is None and e.compare and student is not None:
        from vpdsr.models import from_pretrained

        others = {name: from_pretrained(name) for name in e.compare}
    outputs: dict = {}
    result = evaluate(images, cfg.degradation_config(), e.noise_seed, e.crop_border, teacher=teacher,
                      student=student, device=device, perceptual=e.perceptual, crop_size=e.crop_size,
                      noise_control=e.noise_control, clipiqa=clip, others=others, outputs=outputs,
                      crops_per_image=e.crops_per_image, teacher_call=teacher_call(cfg, teacher))
    if out is not None:
        write_eval(result, out)
        if e.crops_png:
            from vpdsr.distill.crops import write_crop_grid

            write_crop_grid(outputs, list(result["mean"]), Path(out) / "crops.png")
    return result


def teacher_call(cfg, teacher) -> str:
    """How the evaluation runs `teacher`: sample (T-step rows) for a diffusion teacher the config samples,
    forward (one call) for any other model (a GAN, `student.teacher_call: forward`)."""
    if teacher is None or not hasattr(teacher, "teacher_sample") or not teacher.latent_channels:
        return "forward"
    return "forward" if cfg.student.teacher_call == "forward" else "sample"


def score(sr: np.ndarray, hr: np.ndarray, crop_border: int, perceptual: bool, clipiqa=None) -> dict[str, float]:
    """PSNR-Y and SSIM-Y of `sr` against `hr` (border cropped); the block-grid artifact of SR - HR
    (x1000, vpdsr.distill.losses.grid_loss: a 4-pixel mesh; the PSNR student scores about 4); PIQE
    (and CLIPIQA) of `sr` as a whole."""
    from vpdsr.distill.losses import grid_loss
    from vpdsr.metrics.fidelity import psnr, ssim

    out = {"psnr_y": psnr(sr, hr, y_channel=True, crop_border=crop_border),
           "ssim_y": ssim(sr, hr, y_channel=True, crop_border=crop_border),
           "grid": 1000.0 * float(grid_loss(_t(sr), _t(hr), 4, 8))}
    if perceptual:
        from vpdsr.metrics.perceptual import piqe

        out["piqe"] = piqe(sr)
    if clipiqa is not None:
        out["clipiqa"] = clipiqa.score_numpy(sr.astype(np.float32))
    return out


def grid_crops(sr: np.ndarray, hr: np.ndarray, size: int, border: int,
               top: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (SR, HR) `size` squares of a regular grid inside the `border` frame; with `top` > 0 only
    the `top` most detailed ones (highest HR gradient energy), most detailed first."""
    h, w = hr.shape[:2]
    boxes = [(y, x) for y in range(border, h - border - size + 1, size)
             for x in range(border, w - border - size + 1, size)]
    if top:
        gray = hr.mean(axis=2)

        def energy(box):
            c = gray[box[0]:box[0] + size, box[1]:box[1] + size]
            return float(np.abs(np.diff(c, axis=0)).sum() + np.abs(np.diff(c, axis=1)).sum())

        boxes = sorted(boxes, key=energy, reverse=True)[:top]
    return [(sr[y:y + size, x:x + size], hr[y:y + size, x:x + size]) for y, x in boxes]


def write_eval(result: dict, directory: Path) -> tuple[Path, Path]:
    """eval.json and eval.md (the means over full images and crops, then a table per image), atomically."""
    directory = Path(directory)
    js = atomic_write_text(directory / "eval.json", json.dumps(result, indent=2, default=_finite) + "\n")
    md = atomic_write_text(directory / "eval.md", eval_markdown(result))
    return js, md


def eval_markdown(result: dict) -> str:
    methods = list(result["mean"])
    keys = [k for k in METRIC_HEADS if k in result["mean"][methods[0]]]
    heads = METRIC_HEADS
    crops = result.get("crops")
    lines = [f"# Evaluation ({result['metric']})", ""]
    cols = [f"full: {heads[k]}" for k in keys] + ([f"crops: {heads[k]}" for k in keys] if crops else [])
    lines += ["| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    rows = [(m, result["mean"][m], crops["mean"][m] if crops else None) for m in methods]
    rows += [(f"{c} (control)", v, None) for c, v in result.get("controls", {}).items()]
    for name, full, crop in rows:
        cells = [fmt_metric(k, full[k]) for k in keys]
        if crops:
            cells += [fmt_metric(k, crop[k]) if crop else "" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Full images: {len(result['images'])}" + (
        f"; crops: {crops['count']} squares of {crops['size']} px, each photo's most detailed on a grid (cut from the "
        "full outputs)" if crops else "")
        + ". PIQE: lower is better.")
    if "controls" in result:
        lines.append("Controls: Gaussian noise added to an output. PIQE rewards even invisible noise, so read a low "
                     "PIQE with the crops (or a full-reference figure), never alone.")
    if "grid" in keys:
        lines.append("grid: the 4-pixel block pattern of SR - HR, x1000 (vpdsr.distill.losses.grid_loss); a mesh "
                     "drawn over the image shows here, lower is better.")
    lines += ["", "Per image (" + " / ".join(heads[k] for k in keys) + "):", "",
              "| image | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for r in result["images"]:
        cells = (" / ".join(fmt_metric(k, r[m][k]) for k in keys) for m in methods)
        lines.append(f"| {r['image']} | " + " | ".join(cells) + " |")
    for k, v in result.get("summary", {}).items():
        lines.append(f"\n{k}: {v:+.2f}")
    lines += vs_teacher_markdown(result.get("vs_teacher"))
    return "\n".join(lines) + "\n"


def vs_teacher_markdown(vs: dict | None) -> list[str]:
    """The table of fidelity to the teacher's output (PSNR RGB / Y, GMSD), means over the full images."""
    if not vs:
        return []
    keys = [k for k in ("psnr_rgb", "psnr_y", "gmsd") if k in next(iter(vs["mean"].values()), {})]
    heads = {"psnr_rgb": "PSNR-RGB dB", "psnr_y": "PSNR-Y dB", "gmsd": "GMSD"}
    lines = ["", f"Against the teacher's output (`{vs['reference']}`; {vs['metric']}; GMSD lower is better):", "",
             "| method | " + " | ".join(heads[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for m, v in vs["mean"].items():
        lines.append(f"| {m} | " + " | ".join(f"{v[k]:.4f}" if k == "gmsd" else f"{v[k]:.2f}" for k in keys) + " |")
    return lines


def fmt_metric(key: str, value: float | None) -> str:
    """One table cell: dB and PIQE with 2 and 1 decimals, SSIM with 4, ... ("" for None)."""
    if value is None:
        return ""
    return {"psnr_y": f"{value:.2f}", "ssim_y": f"{value:.4f}", "piqe": f"{value:.1f}", "clipiqa": f"{value:.3f}",
            "grid": f"{value:.1f}"}[key]


def _t(a: np.ndarray) -> torch.Tensor:
    h, w = a.shape[0] // 4 * 4, a.shape[1] // 4 * 4
    return torch.from_numpy(np.ascontiguousarray(a[:h, :w])).permute(2, 0, 1)[None]


def _np(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).float().cpu().double().numpy()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x
