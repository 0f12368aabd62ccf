"""`vpdsr distill ablate`: what each VPD-SR term contributes, at the same student budget.

From one config and one teacher, the student is distilled five times with the same steps, data,
seed and optimiser; only the loss terms differ:

    distill   the distillation term (+ the config's reconstruction anchor), ESS/HFP/adversarial off
    +hfp      distill + HFP (the config's weight and choices)
    +adv      distill + the adversarial term (with its feature matching and block-grid penalty, if set)
    +ess      distill + ESS; absent, with the reason, when no CLIP weights are found
    all       the config as written (ESS dropped, and said so, when CLIP weights are missing)

A term whose weight is 0 in the config has no row of its own (the reason is written instead).
Each variant is a normal student run in OUT/<variant>/ (config.yaml, log.csv, model/, eval.json);
the table (PSNR-Y, SSIM-Y, PIQE, and CLIPIQA where weights exist, on the held-out photos: full
images and grid crops) goes to OUT/ablation.md and OUT/ablation.json. The teacher is `--teacher`,
else the config's `student.teacher`, else one trained first into OUT/teacher.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vpdsr.distill.config import DistillConfig, load_config
from vpdsr.utils import atomic_write_text

log = logging.getLogger(__name__)

TERMS = ("distill", "recon", "hfp", "adv", "feature_match", "grid", "ess")
VARIANTS = (("distill", "distill"), ("+hfp", "plus-hfp"), ("+adv", "plus-adv"), ("+ess", "plus-ess"), ("all", "all"))


@dataclass
class AblationRow:
    """One line of the table; `status` is ok, or absent (with `reason`) when the variant was not trained."""

    name: str
    status: str
    weights: dict = field(default_factory=dict)
    reason: str = ""
    folder: str = ""
    seconds: float | None = None
    full: dict = field(default_factory=dict)
    crops: dict = field(default_factory=dict)


@dataclass
class AblationResult:
    rows: list[AblationRow]
    json_path: Path
    markdown_path: Path


def variants(cfg: DistillConfig, clip_missing: str | None) -> list[tuple[str, str, DistillConfig | None, str]]:
    """(name, folder, config or None, note) for each row; `clip_missing` is the reason CLIP is absent, or None."""
    lc = cfg.losses
    out = []
    for name, folder in VARIANTS:
        v = copy.deepcopy(cfg)
        v.disabled_terms = {}
        keep = {"distill": (), "+hfp": ("hfp",), "+adv": ("adv", "feature_match", "grid"), "+ess": ("ess",),
                "all": ("hfp", "adv", "feature_match", "grid", "ess")}[name]
        for term in ("hfp", "adv", "feature_match", "grid", "ess"):
            if term not in keep:
                setattr(v.losses, term, 0.0)
        note = ""
        if name.startswith("+") and getattr(lc, name[1:]) == 0:
            out.append((name, folder, None, f"`losses.{name[1:]}` is 0 in the config"))
            continue
        if v.losses.ess > 0 and clip_missing:
            if name == "+ess":
                out.append((name, folder, None, f"no CLIP weights: {clip_missing}"))
                continue
            v.losses.ess, note = 0.0, "without ESS (no CLIP weights)"
        out.append((name, folder, v, note))
    return out


def run_ablation(config, out: str | Path, teacher: str | Path | None = None, resume: bool = False,
                 progress: bool = True) -> AblationResult:
    """Train every variant (see the module docstring) and write OUT/ablation.{md,json}.

    Args:
        config: YAML path, dict or DistillConfig (the `all` row; its student budget is everyone's).
        teacher: the teacher to distil from; None = `student.teacher`, else one is trained into OUT/teacher.
        resume: variants whose eval.json exists are read back, unfinished ones continue from their checkpoint.
    """
    from vpdsr.distill.api import run_distill
    from vpdsr.distill.trainer import train_student

    cfg = config if isinstance(config, DistillConfig) else load_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = teacher or cfg.student.teacher
    if teacher is None:
        log.info(f"ablate: training the teacher into {out / 'teacher'}")
        teacher = run_distill(cfg, out / "teacher", stage="teacher", resume=resume, progress=progress).teacher.model_dir
    rows, reference = [], None
    plan = variants(cfg, _clip_missing(cfg))
    for k, (name, folder, vcfg, note) in enumerate(plan, 1):
        if vcfg is None:
            log.info(f"ablate [{k}/{len(plan)}] {name}: absent ({note})")
            rows.append(AblationRow(name, "absent", reason=note))
            continue
        weights = {t: getattr(vcfg.losses, t) for t in TERMS}
        run_dir = out / folder
        done = run_dir / "eval.json"
        if resume and done.is_file() and (run_dir / "model" / "config.json").is_file():
            log.info(f"ablate [{k}/{len(plan)}] {name}: done before, read {done}")
            result, seconds = json.loads(done.read_text()), _seconds(run_dir)
        else:
            log.info(f"ablate [{k}/{len(plan)}] {name}: {vcfg.student.steps} student steps into {run_dir}")
            t0 = time.perf_counter()
            vcfg.eval.enabled = True
            stage = train_student(vcfg, teacher, run_dir, resume=resume, progress=progress)
            result, seconds = stage.eval, time.perf_counter() - t0
            atomic_write_text(run_dir / "seconds.txt", f"{seconds:.1f}\n")
        reference = reference or result
        rows.append(AblationRow(name, "ok", weights, note, folder, seconds, result["mean"]["student_1step"],
                                result.get("crops", {}).get("mean", {}).get("student_1step", {})))
    if reference is not None:
        refs = [m for m in reference["mean"] if m.startswith("teacher_") and m != "teacher_1step"] + ["bicubic"]
        for m in refs:
            rows.insert(0, AblationRow(m, "reference", full=reference["mean"][m],
                                       crops=reference.get("crops", {}).get("mean", {}).get(m, {})))
    payload = {"config": cfg.to_dict(), "teacher": str(teacher), "student_steps": cfg.student.steps,
               "rows": [asdict(r) for r in rows]}
    js = atomic_write_text(out / "ablation.json", json.dumps(payload, indent=2) + "\n")
    md = atomic_write_text(out / "ablation.md", ablation_markdown(rows, cfg.student.steps, str(teacher)))
    return AblationResult(rows, js, md)


def ablation_markdown(rows: list[AblationRow], steps: int, teacher: str) -> str:
    scored = [r for r in rows if r.full]
    from vpdsr.distill.evaluate import METRIC_HEADS as heads

    keys = [k for k in heads if scored and k in scored[0].full]
    crop_keys = [k for k in keys if scored and k in scored[0].crops]
    cols = ["terms (weights)"] + [f"full: {heads[k]}" for k in keys] + [f"crops: {heads[k]}" for k in crop_keys]
    from vpdsr.distill.evaluate import fmt_metric

    lines = [f"# Ablation: {steps} student steps each, teacher {teacher}", "",
             "| variant | " + " | ".join(cols + ["train s"]) + " |", "|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        if r.status == "absent":
            lines.append(f"| {r.name} | absent: {r.reason} |" + " |" * (len(cols)))
            continue
        terms = ", ".join(f"{t} {w:g}" for t, w in r.weights.items() if w) if r.weights else "(reference)"
        if r.reason:
            terms += f"; {r.reason}"
        cells = [fmt_metric(k, r.full.get(k)) for k in keys] + [fmt_metric(k, r.crops.get(k)) for k in crop_keys]
        secs = f"{r.seconds:.0f}" if r.seconds is not None else ""
        lines.append(f"| {r.name} | {terms} | " + " | ".join(cells) + f" | {secs} |")
    lines += ["", "PIQE: lower is better; CLIPIQA: higher is better (a column only where CLIP weights exist); grid: "
              "the 4-pixel block pattern of SR - HR x1000, lower is better (PIQE rewards such a mesh).",
              "Same seed, data, steps and optimiser in every row; each row's run is in its own folder."]
    return "\n".join(lines) + "\n"


def _clip_missing(cfg: DistillConfig) -> str | None:
    from vpdsr.errors import MissingWeightsError
    from vpdsr.metrics.clip_weights import find_clip_weights

    try:
        find_clip_weights(cfg.losses.clip_weights)
    except MissingWeightsError as e:
        return " ".join(str(e).split())
    return None


def _seconds(run_dir: Path) -> float | None:
    p = run_dir / "seconds.txt"
    return float(p.read_text()) if p.is_file() else None

