"""`vpdsr export --model DIR_OR_PRESET --out DIR --targets LIST`: deployable artifacts + manifest.json."""
from __future__ import annotations

from pathlib import Path

LOG_NAME = "export.log"


def register(sub) -> None:
    from vpdsr.export.targets import ALIASES, TARGETS

    p = sub.add_parser("export", help="export a model to ONNX / OpenVINO / TensorRT artifacts (fp32, fp16, int8)")
    p.add_argument("--model", default="tiny", help="model directory or preset name (default: tiny)")
    p.add_argument("--out", required=True, help="artifacts folder: one sub-folder per target + manifest.json")
    p.add_argument("--targets", default="onnx",
                   help=f"comma-separated: {', '.join(TARGETS)}; or {' / '.join(ALIASES)} (default: onnx)")
    p.add_argument("--calib", default="samples:calib",
                   help="calibration images: a folder, a file, or samples[:subset] (default: samples:calib)")
    p.add_argument("--calib-count", type=int, default=8, help="calibration crops (default 8)")
    p.add_argument("--calib-crop", type=int, metavar="PX",
                   help="calibration crop side in LR px, cut into tile samples (default: the tile)")
    p.add_argument("--calib-seed", type=int, default=0, help="picks the calibration crops and noise (default 0)")
    p.add_argument("--int8-budget", metavar="METRIC:VALUE",
                   help="per INT8 target, the fastest config within the budget on held-out validation tiles: "
                        "psnr-vs-ref:40, ms-ssim-vs-ref:0.99 or piqe-drift:2 (layers kept in float go to the manifest; "
                        "where they give back more than half of INT8's speed, or no float table meets it, one line "
                        "names the `vpdsr distill quantize` command that keeps every layer INT8)")
    p.add_argument("--sensitivity", nargs="?", const="groups", choices=("groups", "nodes"),
                   help="write a per-layer INT8 sensitivity table and plot into each INT8 artifact folder")
    p.add_argument("--budget-images", default="samples:val",
                   help="photos of the budget's validation tiles, disjoint from --calib (default: samples:val)")
    p.add_argument("--budget-count", type=int, default=8, help="budget validation tiles (default 8)")
    p.add_argument("--budget-seed", type=int, default=1234, help="picks the validation tiles and noise")
    p.add_argument("--stages", choices=("fused", "split"), default="fused",
                   help="one graph, or encoder/denoiser/decoder graphs (default fused)")
    p.add_argument("--tile", type=int, default=64, help="LR tile size of the static shape and calibration (default 64)")
    p.add_argument("--dynamic", action="store_true", help="dynamic H/W (batch is always dynamic)")
    p.add_argument("--validation-images", type=int, metavar="N",
                   help="validate on the first N held-out photos only (default: all three; each target runs them all)")
    p.add_argument("--validation-max-size", type=int, metavar="PX",
                   help="centre-crop each validation LR image to at most PX pixels a side (default: whole photos; "
                        "keeps validating a large model within minutes on a CPU)")
    p.add_argument("--device", default="cuda", help="GPU for TensorRT targets: cuda or cuda:N (default cuda)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if any target is skipped, failed, below its floor, or meets --int8-budget only by "
                        "giving back more than half of INT8's speed")
    p.add_argument("--force", action="store_true", help="rebuild even when a cached artifact matches")
    p.add_argument("--keep-failed", action="store_true",
                   help="keep the folder of a target that built and loaded but failed validation (below its floor, "
                        "NaN/Inf): still `failed` in the manifest, but `vpdsr bench` times it (exit code unchanged)")
    p.set_defaults(func=run, log_file=lambda a: (Path(a.out) / LOG_NAME, False))


def run(args) -> int:
    from vpdsr.commands.checks import output_folder
    from vpdsr.export.api import export
    from vpdsr.export.mixed_precision import BudgetOptions
    from vpdsr.export.validation import ValidationConfig

    output_folder(args.out)  # before the model is loaded

    budget = BudgetOptions(args.int8_budget, args.sensitivity, args.budget_images, args.budget_count, args.budget_seed)
    validation = ValidationConfig(max_images=args.validation_images, max_size=args.validation_max_size)
    manifest = export(args.model, args.out, args.targets, stages=args.stages, tile=args.tile, dynamic=args.dynamic,
                      calib=args.calib, calib_count=args.calib_count, validation=validation, strict=args.strict,
                      force=args.force, progress=None, calib_crop=args.calib_crop, calib_seed=args.calib_seed,
                      budget=budget, device=args.device, keep_failed=args.keep_failed)
    requested = {a.name for a in manifest.artifacts}
    failed = [a.name for a in manifest.artifacts if a.name in requested and a.status == "failed"]
    print(f"manifest: {args.out}/manifest.json")
    for a in manifest.artifacts:
        v = a.validation
        figures = f"{v['psnr_db']} dB" if v else ""
        kept = f" (kept in {Path(args.out) / a.name})" if a.kept else ""
        print(f"  {a.name:15s} {a.status:8s} {a.precision:5s} {figures}{(' ' + a.reason) if a.reason else ''}{kept}")
        if a.options.get("qat_advice"):  # a budget met only slowly (or not at all) by post-training INT8
            print(f"    {a.options['qat_advice']}")
    return 1 if failed else 0
