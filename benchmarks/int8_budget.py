"""INT8 before/after an accuracy budget, per target, and every held-out photo against bicubic vs HR.

Usage:
    python benchmarks/int8_budget.py --model tiny --budget psnr-vs-ref:40 --out runs/int8-budget
    python benchmarks/int8_budget.py --model realesrgan-x4plus --budget psnr-vs-ref:40 --budget-count 2 \
        --max-groups 8 --max-size 96 --out runs/int8-budget-x4plus

Exports the INT8 targets twice into `OUT/plain` (the float policy only) and `OUT/budget`
(`--int8-budget`), each with the export's own validation. Prints and writes (`OUT/results.md`,
`OUT/results.json`):
  1. per target, from the budgeted manifest: the budget metric with everything INT8 (before) and
     after the search, the layers kept in float (policy + added), and the export's own latency of
     fp32 / all-INT8 / final measured side by side in one process (`search.side_by_side_ms`);
  2. per held-out photo, PSNR vs HR (RGB, 4-pixel border, the bench's `psnr_vs_hr`) of bicubic,
     torch fp32 and every artifact before and after, each through the Upscaler tiling path that
     `vpdsr bench` uses; `*` marks a figure at or below bicubic.
The machine may be shared: latency ratios within one row are meaningful, absolute figures less so.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

INT8 = "ort-int8,openvino-int8,modelopt-int8"


def export_both(args) -> dict:
    """The plain and the budgeted export; {'plain': Manifest, 'budget': Manifest}."""
    from vpdsr.export import export
    from vpdsr.export.mixed_precision import BudgetOptions
    from vpdsr.export.validation import ValidationConfig

    val = ValidationConfig(max_images=args.max_images, max_size=args.max_size)
    common = dict(tile=args.tile, calib_count=args.calib_count, validation=val)
    out, manifests = Path(args.out), {}
    for kind, budget in (("plain", BudgetOptions()), ("budget", BudgetOptions(
            args.budget, args.sensitivity, count=args.budget_count, max_groups=args.max_groups))):
        t = time.perf_counter()
        manifests[kind] = export(args.model, out / kind, args.targets, budget=budget, **common)
        print(f"{kind} export: {time.perf_counter() - t:.0f} s", flush=True)
    return manifests


def before_after(manifest, policy: dict) -> list[dict]:
    """Table 1 rows from the budgeted manifest's `accuracy_control` (and the plain one's policy nodes)."""
    rows = []
    for e in manifest.artifacts:
        ac = e.options.get("accuracy_control") or {}
        lat = ac.get("latency_ms") or {}
        rows.append({"target": e.name, "status": e.status, "reason": e.reason, "method": ac.get("method"),
                     "all_int8": ac.get("metric_all_int8"), "final": ac.get("metric_final"),
                     "fp32": ac.get("metric_fp32"), "holds": ac.get("holds"),
                     "policy_float": policy.get(e.name), "added_float": ac.get("kept_float_added"),
                     "groups": ac.get("kept_float_groups"), "evaluations": ac.get("evaluations"),
                     "latency_ms": lat, "seconds": ac.get("seconds"),
                     "heldout_vs_fp32": (e.validation or {}).get("psnr_db_per_image")})
    return rows


def policy_nodes(manifest) -> dict[str, int]:
    """Nodes the one float policy keeps per target (the plain export's `excluded_nodes`, all graphs)."""
    out = {}
    for e in manifest.artifacts:
        nodes = e.options.get("excluded_nodes") or e.options.get("ignored_ops")
        if nodes is not None:
            out[e.name] = sum(len(v) for v in nodes.values()) if isinstance(nodes, dict) else len(nodes)
    return out


def per_photo(args, manifests: dict) -> tuple[list[str], dict[str, list[float]]]:
    """PSNR vs HR per held-out photo: bicubic, torch fp32, each artifact before/after."""
    from vpdsr.bench.inputs import bicubic_upscale
    from vpdsr.export.validation import ValidationConfig, holdout_images, upscale_all
    from vpdsr.metrics.fidelity import psnr
    from vpdsr.models import from_pretrained
    from vpdsr.runtimes import load
    from vpdsr.runtimes.torch_runner import TorchRunner

    cfg = ValidationConfig(max_images=args.max_images, max_size=args.max_size)
    images = holdout_images(cfg.source, cfg.max_images, cfg.max_size)
    lrs, hrs = [lr for _, lr, _ in images], [hr for _, _, hr in images]

    def score(outs) -> list[float]:
        return [round(psnr(o, h, crop_border=4), 3) for o, h in zip(outs, hrs)]

    model = from_pretrained(args.model).float().eval()
    table = {"bicubic": score([bicubic_upscale(lr) for lr in lrs])}
    with TorchRunner(model, noise_channels=model.latent_channels or 0) as runner:
        table["torch-fp32"] = score(upscale_all(runner, lrs, cfg, args.tile))
    for kind, manifest in manifests.items():
        for e in manifest.artifacts:
            if e.status != "ok":
                continue
            with load(e, Path(args.out) / kind / e.name) as runner:
                table[f"{e.name} ({kind})"] = score(upscale_all(runner, lrs, cfg, args.tile))
    return [name for name, _, _ in images], table


def markdown(rows: list[dict], names: list[str], table: dict, budget: str) -> str:
    lines = [f"Budget `{budget}` (worst validation tile vs torch fp32).", "",
             "| target | method | all INT8 (before) | final (after) | float IR | float: policy + added | "
             "latency ms fp32 / all INT8 / final | evaluations | search s | held-out photos vs fp32 (after) |",
             "|---|---|---:|---:|---:|---|---|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['target']} | {r['status']}: {r['reason']} | | | | | | | | |")
            continue
        lat = r["latency_ms"]
        ms = " / ".join(f"{lat[k]:.1f}" for k in ("fp32", "all_int8", "final") if k in lat)
        added = r["added_float"] or []
        lines.append(f"| {r['target']} | {r['method']} | {r['all_int8']} | {r['final']} | {r['fp32']} | "
                     f"{r['policy_float']} + {len(added)} ({', '.join(added[:6])}{' ...' if len(added) > 6 else ''}) | "
                     f"{ms} | {r['evaluations']} | {r['seconds'] or ''} | "
                     f"{', '.join(f'{k} {v:.2f}' for k, v in (r['heldout_vs_fp32'] or {}).items())} |")
    lines += ["", "PSNR vs HR (dB, RGB, 4-px border); `*`: at or below bicubic.", "",
              "| photo | " + " | ".join(table) + " |", "|---|" + "---:|" * len(table)]
    bic = table["bicubic"]
    for i, n in enumerate(names):
        cells = [f"{v[i]:.2f}{'*' if k != 'bicubic' and v[i] <= bic[i] else ''}" for k, v in table.items()]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--budget", default="psnr-vs-ref:40")
    ap.add_argument("--targets", default=INT8)
    ap.add_argument("--out", default="runs/int8-budget")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--calib-count", type=int, default=8)
    ap.add_argument("--budget-count", type=int, default=8)
    ap.add_argument("--max-groups", type=int, default=24)
    ap.add_argument("--sensitivity", choices=("groups", "nodes"))
    ap.add_argument("--max-images", type=int)
    ap.add_argument("--max-size", type=int, help="centre-crop each held-out LR photo to this many px a side")
    args = ap.parse_args()

    from vpdsr.logs import session

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with session(out / "log.txt"):
        manifests = export_both(args)
    rows = before_after(manifests["budget"], policy_nodes(manifests["plain"]))
    names, table = per_photo(args, manifests)
    text = markdown(rows, names, table, args.budget)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "before_after": rows, "photos": names,
                                                  "psnr_vs_hr": table}, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
