"""`vpdsr distill [teacher|student|all] --config FILE --out DIR [--teacher DIR] [--resume]`.

- `teacher`: train the multi-step teacher into OUT (OUT/model is the teacher).
- `student`: distill `--teacher DIR` into the one-step student in OUT (OUT/model is the student).
- `all` (the default): OUT/teacher then OUT/student; used by `vpdsr pipeline`.
- `autoencoder`: train the config's learned vq/kl f=4 autoencoder into OUT/autoencoder (set it as
  `model.autoencoder.pretrained`).
Each stage writes config.yaml, log.csv, checkpoint/, model/ and eval.json/eval.md.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("distill", help="train the teacher and distill the one-step student")
    p.add_argument("stage", nargs="?", default="all", choices=("teacher", "student", "all", "autoencoder"),
                   help="teacher, student, all (default: teacher then student), or autoencoder (base: train a vq/kl f4)")
    p.add_argument("--config", help="run config YAML (default: the packaged configs/tiny.yaml)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--teacher", help="`student`: the trained teacher (model directory or teacher run directory)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoints exactly")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from vpdsr.distill import run_distill
    from vpdsr.distill.config import default_config_path

    result = run_distill(args.config or default_config_path("tiny"), args.out, stage=args.stage, teacher=args.teacher,
                         resume=args.resume, progress=not args.no_progress)
    for stage in (result.teacher, result.student):
        if stage is None:
            continue
        print(f"{stage.run_dir}: {stage.step} steps in {stage.seconds:.0f} s -> {stage.model_dir}")
        for term, reason in stage.disabled_terms.items():
            print(f"  `{term}` disabled: {reason}")
        if stage.eval:
            means = ", ".join(f"{m} {v['psnr_y']:.2f} dB" for m, v in stage.eval["mean"].items())
            print(f"  held-out PSNR-Y: {means}  ({stage.run_dir / 'eval.md'})")
    return 0
