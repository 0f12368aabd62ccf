"""`--sensitivity`: the per-layer sensitivity table (JSON + Markdown) and its plot, in the artifact folder.

Rows come from :meth:`vpdsr.export.search.Search.sensitivity`: per layer group, the metric with only
that group INT8 (everything else float: what quantizing it alone costs) and with only that group in
float (everything else INT8: what keeping it in float alone buys). The plot shows the first as bars,
worst first, the second as dots, with the all-INT8 figure and the budget as lines.

Files (listed in the entry's `files`, hashed): `sensitivity.json`, `sensitivity.md`, `sensitivity.png`;
the entry's `options["sensitivity"]` names them and `vpdsr bench` links the plot from its report.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from vpdsr.export.budget import METRICS, Budget
from vpdsr.utils import atomic_write_bytes, atomic_write_text

FILES = {"table": "sensitivity.json", "markdown": "sensitivity.md", "plot": "sensitivity.png"}


def write_sensitivity(folder: Path, target: str, budget: Budget, budgeted: bool, rows: list[dict],
                      all_int8: float, all_float: float, validation: dict) -> dict:
    """Write the three files into `folder`; returns the entry's `options["sensitivity"]`."""
    folder = Path(folder)
    table = {"target": target, "metric": budget.metric, "budget": str(budget) if budgeted else None,
             "reference": "torch-fp32", "higher_is_better": budget.higher_is_better,
             "all_int8": all_int8, "all_float": all_float, "validation": validation, "rows": rows}
    atomic_write_text(folder / FILES["table"], json.dumps(table, indent=2) + "\n")
    atomic_write_text(folder / FILES["markdown"], markdown(table))
    atomic_write_bytes(folder / FILES["plot"], plot_png(table))
    return {**FILES, "metric": budget.metric, "groups": len(rows)}


def markdown(table: dict) -> str:
    m = table["metric"]
    lines = [f"# Per-layer INT8 sensitivity: {table['target']}", "",
             f"{METRICS[m].meaning}; all layers INT8: {table['all_int8']:.4g}, all in float: {table['all_float']:.4g}"
             + (f"; budget {table['budget']}" if table["budget"] else "") + ".", "",
             f"| layer group | nodes | MACs share | {m}, only it INT8 | {m}, only it float |",
             "|---|---:|---:|---:|---:|"]
    for r in table["rows"]:
        lines.append(f"| `{r['group']}` | {r['nodes']} | {100 * r['macs_share']:.1f}% | {r['int8_alone']:.4g} "
                     f"| {r['float_alone']:.4g} |")
    return "\n".join(lines) + "\n"


def plot_png(table: dict) -> bytes:
    """A horizontal bar chart (matplotlib, PNG bytes); groups sorted worst first."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"]
    names = [r["group"] if len(r["group"]) <= 48 else "..." + r["group"][-45:] for r in rows]
    int8 = [r["int8_alone"] for r in rows]
    flt = [r["float_alone"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.6))
    try:
        y = list(range(len(rows)))[::-1]  # worst at the top
        ax.barh(y, int8, color="#c0504d", alpha=0.8, label="only this group INT8")
        ax.scatter(flt, y, color="#1f497d", zorder=3, s=14, label="only this group in float")
        ax.axvline(table["all_int8"], color="#7f7f7f", ls=":", lw=1, label=f"all INT8 ({table['all_int8']:.4g})")
        value = float(table["budget"].split(":")[1]) if table["budget"] else None
        if value is not None:
            ax.axvline(value, color="#2e7d32", ls="--", lw=1.2, label=f"budget {table['budget']}")
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=7)
        better = "higher" if table["higher_is_better"] else "lower"
        ax.set_xlabel(f"{table['metric']} vs torch fp32 ({better} is better)")
        ax.set_title(f"{table['target']}: per-layer INT8 sensitivity", fontsize=9)
        finite = [v for v in int8 + flt + [table["all_int8"], value] if v is not None and math.isfinite(v)]
        if table["higher_is_better"] and finite:
            ax.set_xlim(min(finite) - 1, min(max(finite) + 1, 100))  # identical outputs: capped, not 150 dB
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.6 / (0.28 * len(rows) + 1.6)), ncol=2)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)
