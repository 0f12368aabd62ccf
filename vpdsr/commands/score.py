"""`vpdsr score IMAGE_OR_DIR... [--reference DIR] [--metrics LIST] [--json FILE]`: score any images."""
from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

from vpdsr.errors import InputError
from vpdsr.metrics.catalog import METRICS, describe, parse_metric_names
from vpdsr.metrics.score import DEFAULT_METRICS


def register(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score images with the report's metrics (PIQE, GMSD, MS-SSIM, PSNR, SSIM, CLIPIQA, LPIPS)",
        description=textwrap.fill(
            "Score image files, e.g. your own SR outputs or a published method's, with the metrics of "
            "`vpdsr bench`. Full-reference metrics compare each image with the image of the same file stem "
            "(any extension; without a trailing _x4 as `vpdsr upscale` names its outputs) in --reference.", 100),
        epilog="metrics (computed offline; 'weights' = needs downloaded weights):\n" + describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    p.add_argument("--reference", metavar="DIR", help="folder of reference (e.g. HR) images for full-reference metrics")
    p.add_argument("--metrics", metavar="LIST",
                   help=f"comma list or 'all' (default: {','.join(DEFAULT_METRICS)}; without --reference only "
                        "the no-reference ones; a default metric whose weights are missing is left null, a named "
                        "one is an error)")
    p.add_argument("--json", metavar="FILE", help="also write per-image rows, means and metric facts as JSON")
    p.add_argument("--crop-border", type=int, default=0, metavar="N",
                   help="pixels cropped from each side before PSNR/SSIM (SR papers: the scale; default 0)")
    p.add_argument("--clip-weights", metavar="PATH", help="CLIP RN50.pt for clipiqa (default: the usual caches)")
    p.add_argument("--lpips-weights", metavar="DIR", help="folder with the LPIPS files (default: torch hub caches)")
    p.add_argument("--device", default="cpu", help="torch device for clipiqa and lpips (default cpu)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vpdsr.metrics.score import ScoreOptions, collect_images, match_references, score_images, write_json

    metrics = tuple(parse_metric_names(args.metrics)) if args.metrics is not None else None
    json_path = _check_json_target(args.json) if args.json else None
    images = collect_images(args.images)
    references = match_references(images, args.reference) if args.reference else None
    options = ScoreOptions(metrics=metrics, crop_border=args.crop_border, clip_weights=args.clip_weights,
                           lpips_weights=args.lpips_weights, device=args.device)
    result = score_images(images, references, options, progress=True)
    print(format_table(result))
    if json_path:
        write_json(result, json_path)
        print(f"wrote {json_path}")
    return 0


def _check_json_target(path: str) -> Path:
    target = Path(path)
    if target.is_dir():
        raise InputError(f"`--json` {target} is a folder (expected a file name, e.g. {target / 'scores.json'})")
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"`--json` {target}: {parent} is a file, not a folder")
    return target


def format_table(result: dict) -> str:
    """The result as a fixed-width text table, a mean row and notes on what is missing and why."""
    names = list(result["metrics"])
    heads = ["image", *names]
    body = [[row["image"], *(_fmt(n, row[n]) for n in names)] for row in result["images"]]
    body.append([f"mean ({len(result['images'])})", *(_fmt(n, result["mean"][n]) for n in names)])
    widths = [max(len(r[i]) for r in [heads, *body]) for i in range(len(heads))]

    def line(cells):
        return "  ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))])

    lines = [line(heads), "  ".join("-" * w for w in widths), *map(line, body[:-1]),
             "  ".join("-" * w for w in widths), line(body[-1])]
    lower = [n for n in names if not METRICS[n].higher_is_better]
    higher = [n for n in names if METRICS[n].higher_is_better]
    lines.append("better: " + "; ".join(part for part in (
        f"lower {', '.join(lower)}" if lower else "", f"higher {', '.join(higher)}" if higher else "") if part))
    for n in names:
        info = result["metrics"][n]
        if info["reason"]:
            lines.append(f"{n}: {info['reason']}")
            continue
        reasons = [r["reasons"][n] for r in result["images"] if n in r.get("reasons", {})]
        if reasons:
            lines.append(f"{n}: null for {len(reasons)} of {len(result['images'])} image(s): {reasons[0]}")
    return "\n".join(lines)


def _fmt(name: str, value) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return METRICS[name].fmt.format(value)
