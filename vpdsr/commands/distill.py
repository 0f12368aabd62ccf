"""`vpdsr distill [teacher|student|all|autoencoder|eval|ablate] --config FILE --out DIR [--teacher DIR] [--resume]`,
`vpdsr distill quantize --model MODEL --out DIR [--targets ort-int8,openvino-int8] [--steps N] [--images SRC]
[--resume]`.

- `teacher`: train the multi-step teacher into OUT (OUT/model is the teacher).
- `student`: distill `--teacher DIR` (or the config's `student.teacher`) into the one-step student in
  OUT (OUT/model is the student). DIR may be a converted ResShift model (`vpdsr convert resshift`, any
  saved ResShiftSR directory) with a ResShift config (configs/resshift.yaml, resshift-tiny.yaml): the
  student is then the teacher's network run once at t = T-1 (vpdsr.distill.resshift_student).
- `all` (the default): OUT/teacher then OUT/student; used by `vpdsr pipeline`. With a teacher given
  (`--teacher` or `student.teacher`), no teacher is trained: OUT/student only.
- `autoencoder`: train the config's learned vq/kl f=4 autoencoder into OUT/autoencoder (set it as
  `model.autoencoder.pretrained`).
- `eval`: score `--model` (and `--teacher`, `--compare` models, if given) on the config's held-out
  photos into OUT/eval.json, OUT/eval.md (PSNR/SSIM-Y and PIQE, full images and crops) and
  OUT/crops.png (the most detailed square of each photo, every method side by side).
- `ablate`: the same student budget with distill only, + HFP, + adversarial, + ESS and all terms
  (vpdsr.distill.ablation); OUT/<variant>/ per run and OUT/ablation.{md,json}.
- `quantize`: quantization-aware distillation of `--model` into its own fake-quantized copy, then its INT8
  artifacts (ort-int8, openvino-int8) exported and validated into OUT (vpdsr.distill.quantize).
Each training stage writes config.yaml, log.csv, checkpoint/, model/ and eval.json/eval.md.
"""
from __future__ import annotations

from pathlib import Path

STAGES = ("teacher", "student", "all", "autoencoder", "eval", "ablate", "quantize")
LOG_NAME = "distill.log"


def register(sub) -> None:
    p = sub.add_parser("distill", help="train the teacher and distill the one-step student (or evaluate, ablate)")
    p.add_argument("stage", nargs="?", default="all", choices=STAGES,
                   help="teacher, student, all (default: teacher then student), autoencoder (base: train a vq/kl "
                        "f4), eval (score --model), ablate (one student per loss term) or quantize (INT8 by "
                        "quantization-aware training of --model)")
    p.add_argument("--config", help="run config YAML, or the name of a packaged one (tiny, tiny-perceptual, base, "
                                    "resshift, resshift-tiny; default: tiny)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--teacher", metavar="MODEL",
                   help="the model to distil: a model directory, a teacher run directory, a shipped checkpoint "
                        "(tiny-teacher), a converted ResShift/SinSR folder or a preset with real weights "
                        "(realesrgan-x4plus); default: the config's student.teacher")
    p.add_argument("--images", action="append", metavar="FOLDER",
                   help="training photos: a folder, an image file or samples[:subset] (repeatable; default: the "
                        "config's data.images, the bundled training photos); held-out evaluation photos are refused")
    p.add_argument("--model", help="`eval`: the student to score (model directory or shipped name such as tiny); "
                                   "`quantize`: the model to make INT8 (a preset with real weights such as "
                                   "realesrgan-x4plus, a model directory or a shipped name)")
    p.add_argument("--targets", help="`quantize`: INT8 targets (default: ort-int8,openvino-int8)")
    p.add_argument("--steps", type=int, help="`quantize`: optimizer steps (default: the model's shipped settings)")
    p.add_argument("--compare", action="append", default=[], metavar="MODEL",
                   help="`eval`: also score this one-step model beside --model (repeatable; e.g. tiny)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoints exactly")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # the log file takes third-party output (pyiqa's "Metric [...] is created", Python warnings) off the terminal
    p.set_defaults(func=run, log_file=lambda a: (Path(a.out) / LOG_NAME, False))


def run(args) -> int:
    from vpdsr.distill.config import load_config
    from vpdsr.errors import ConfigError

    if args.stage == "quantize":
        return _quantize(args)
    if args.targets or args.steps:
        raise ConfigError("`--targets` and `--steps` are for `vpdsr distill quantize`")
    config = load_config(_config_source(args.config))
    if args.images:
        config.data.images = list(args.images)
    if args.stage == "eval":
        return _eval(config, args)
    if args.model or args.compare:
        raise ConfigError("`--model` and `--compare` are for `vpdsr distill eval`")
    if args.stage == "ablate":
        from vpdsr.distill.ablation import run_ablation

        result = run_ablation(config, args.out, teacher=args.teacher, resume=args.resume,
                              progress=not args.no_progress)
        print(result.markdown_path.read_text(), end="")
        return 0
    from vpdsr.distill import run_distill

    result = run_distill(config, args.out, stage=args.stage, teacher=args.teacher, resume=args.resume,
                         progress=not args.no_progress)
    for stage in (result.teacher, result.student):
        if stage is None:
            continue
        print(f"{stage.run_dir}: {stage.step} steps in {stage.seconds:.0f} s -> {stage.model_dir}")
        for term, reason in stage.disabled_terms.items():
            print(f"  `{term}` disabled: {reason}")
        if stage.eval:
            print(f"  held-out: {_means(stage.eval)}  ({stage.run_dir / 'eval.md'})")
    return 0


def _quantize(args) -> int:
    from vpdsr.distill.quantize import quantize, settings_for
    from vpdsr.errors import ConfigError

    if not args.model:
        raise ConfigError("`vpdsr distill quantize` needs `--model MODEL` (e.g. realesrgan-x4plus, a model folder)")
    if args.config or args.teacher or args.compare:
        raise ConfigError("`vpdsr distill quantize` takes --model, --targets, --steps, --images (not --config, "
                          "--teacher or --compare): MODEL in fp32 is the teacher")
    cfg = settings_for(args.model, targets=args.targets, steps=args.steps,
                       images=",".join(args.images) if args.images else None)
    manifest = quantize(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    failed = 0
    for a in manifest.artifacts:
        v = a.validation or {}
        figures = f", {v['psnr_db']:.2f} dB worst vs torch fp32" if "psnr_db" in v else ""
        print(f"{a.name}: {a.status}{figures}" + (f" ({a.reason})" if a.reason else ""))
        failed += a.status == "failed"
    print(f"{args.out}: model/ (the trained fake-quantized model), manifest.json")
    return 1 if failed else 0


def _config_source(value: str | None):
    """A YAML path, or a packaged config's name (a bare word that is not a file here)."""
    from pathlib import Path

    from vpdsr.distill.config import default_config_path
    from vpdsr.errors import ConfigError

    if value is None:
        return default_config_path("tiny")
    path = Path(value)
    if not path.exists() and len(path.parts) == 1 and not path.suffix:
        try:
            return default_config_path(value)
        except ConfigError:
            pass  # load_config names the missing file
    return value


def _eval(cfg, args) -> int:
    from pathlib import Path

    from vpdsr.distill.evaluate import evaluate_run
    from vpdsr.distill.teachers import teacher_directory
    from vpdsr.errors import ConfigError
    from vpdsr.models.checkpoint import load_directory

    if not args.model and not args.teacher:
        raise ConfigError("`vpdsr distill eval` needs `--model DIR` (a student) and/or `--teacher DIR`")
    student = load_directory(teacher_directory(args.model)) if args.model else None
    teacher = load_directory(teacher_directory(args.teacher)) if args.teacher else None
    others = {name: load_directory(teacher_directory(name)) for name in args.compare}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_run(cfg, out, teacher=teacher, student=student, others=others)
    print(f"held-out: {_means(result)}  ({out / 'eval.md'})")
    return 0


def _means(result: dict) -> str:
    parts = []
    for method, v in result["mean"].items():
        piqe = f", PIQE {v['piqe']:.1f}" if "piqe" in v else ""
        parts.append(f"{method} {v['psnr_y']:.2f} dB{piqe}")
    return "; ".join(parts)
