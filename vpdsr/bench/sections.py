"""The report as a list of sections, built once from report.json; report.md and report.html render the same list.

The order is what a reader needs first: the summary table (one line per backend and baseline) with
one section per column group below it (latency, roofline, perceptual, fidelity: collapsed in the HTML
page), the gates, what failed or did not run; then the figures, the perception-distortion plane, and
what the metrics mean. A section is a title and blocks (:class:`Text`, :class:`Items`, :class:`TableBlock`,
:class:`Figure`); text is Markdown inline (`code`, **bold**), which the HTML page turns into tags after
escaping. A new section is one function in :data:`SECTIONS`.

Example:
    >>> [s.title for s in sections(report)]
    ['Summary', 'Latency', 'Roofline', 'Perceptual', 'Fidelity', 'Gates', 'Perception-distortion plane', 'Metrics']
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vpdsr.bench.blocks import Figure, Items, Section, TableBlock, Text, markdown_blocks
from vpdsr.bench.columns import GROUPS, measured, sensitivity_links
from vpdsr.bench.gates import verdict_text
from vpdsr.bench.model_stats import stats_line
from vpdsr.bench.quality import metric_notes
from vpdsr.bench.tables import gates_table, group_table, per_image_table, summary_table


@dataclass(frozen=True)
class Context:
    """What the sections need beyond report.json.

    Attributes:
        out: the report folder (links relative to it).
        figures: the HTML page's figures by name ("bars", "scatter", "crops", "plane"); None for report.md.
        missing: why the HTML page has no figures (matplotlib missing), if so.
    """

    out: str | Path | None = None
    figures: dict | None = None
    missing: str | None = None

    @property
    def html(self) -> bool:
        return self.figures is not None


@dataclass(frozen=True)
class Header:
    """The lines above the sections: title, verdict banner, what was run, where."""

    title: str
    verdict: str
    verdict_class: str  # pass | fail | none (no gates: nothing was checked beyond the backends running)
    run: str
    model: str | None
    where: str


def header(report: dict) -> Header:
    text = verdict_text(report)
    css = "fail" if not report["passed"] else ("none" if text.startswith("no gates set") else "pass")
    lat, tiling = report["latency_config"], report["tiling"]
    names = report.get("image_names") or []
    run = (f"{report['images']} image(s){' (' + ', '.join(names) + ')' if names else ''}, reference "
           f"`{report['reference']}`, noise seed {report['seed']}, tile {tiling['tile']} / overlap "
           f"{tiling.get('overlap')}; latency = one whole image upscaled (tiled), {lat['warmup']} warm-up + up to "
           f"{lat['iters']} timed runs.")
    env = report["environment"]
    where = (f"Measured on {env['cpu']['name']} ({env['cpu']['cores']} cores, torch threads {env['torch_threads']}), "
             f"{', '.join(g['name'] for g in env['gpus']) or 'no GPU'}; {report['created']}.")
    return Header(f"vpdsr benchmark: {report['model'].get('source')}", text, css, run, stats_line(report["model"]),
                  where)


def summary(report: dict, ctx: Context) -> Section:
    blocks: list = [TableBlock(summary_table(report), notes=True)]
    baselines = report.get("baselines") or []
    if baselines:
        blocks.append(Text("Rows marked `baseline` are what a user would ship instead (and HR itself), scored on the "
                           "same images: quality only, no latency, but for `teacher:*` rows (the teacher's own "
                           "engines, timed like the backends; their 'vs ref' is against the teacher's torch fp32)."))
        blocks += [Text(f"The `{b['name']}` row samples `{b['source']}`.") for b in baselines if b.get("source")]
    links = sensitivity_links(report, ctx.out)
    if links:
        blocks.append(Text("Per-layer INT8 sensitivity (export `--sensitivity`): "
                           + ", ".join(f"[{name}]({path})" for name, path in links) + "."))
    blocks.append(Text("Every figure of every row is in the tables below, one topic each; what each metric means is "
                       "under Metrics."))
    return Section("summary", "Summary", tuple(blocks))


def gates(report: dict, ctx: Context) -> Section:
    table = gates_table(report)
    return Section("gates", "Gates", (TableBlock(table),) if table else (Text("No gates were set."),))


def kept(report: dict, ctx: Context) -> Section | None:
    rows = [b for b in report["backends"] if b["status"] != "ok" and measured(b)]
    if not rows:
        return None
    return Section("kept", "Failed, measured anyway", (
        Text("Export artifacts that failed validation, kept by `vpdsr export --keep-failed` and timed: their figures "
             "are in the tables, and each still fails the run unless `--allow-failed` names it."),
        Items(tuple(f"`{b['name']}` failed: {b['reason']}" for b in rows))))


def not_run(report: dict, ctx: Context) -> Section | None:
    items = [f"`{b['name']}` {b['status']}: {b['reason']}" for b in report["backends"] if not measured(b)]
    items += [f"`{b['name']}` (baseline) {b['status']}: {b['reason']}" for b in report.get("baselines") or []
              if b["status"] != "ok"]
    if not items:
        return None
    return Section("not-run", "Not run", (
        Text("skipped = cannot run on this machine; failed = should run here and did not."), Items(tuple(items))))


def column_groups(report: dict, ctx: Context) -> list[Section]:
    """One collapsed section per column group, with the notes that explain its columns."""
    from vpdsr.bench.roofline import COLUMN_NOTE, backend_notes, peak_line

    extra: dict[str, list] = {"latency": [], "roofline": []}
    stages = [b for b in report["backends"] if b.get("stage_latency_ms")]
    if stages:
        extra["latency"].append(Items(tuple(
            f"`{b['name']}` per stage (p50 per call): "
            + ", ".join(f"{k} {v['p50']:.1f} ms" for k, v in b["stage_latency_ms"].items()) for b in stages)))
    line = peak_line(report.get("roofline"))
    notes = [n[2:] if n.startswith("- ") else n for n in backend_notes(report)]
    extra["roofline"] = [*([Text(line)] if line else []), Text(COLUMN_NOTE), *([Items(tuple(notes))] if notes else [])]
    return [Section(g.key, g.title, (TableBlock(group_table(report, g)), *extra.get(g.key, [])), collapsed=True)
            for g in GROUPS]


def figures(report: dict, ctx: Context) -> list[Section]:
    """The latency bars and the latency-vs-drift scatter (HTML page only)."""
    if not ctx.html:
        return []
    f = ctx.figures
    return [Section("latency-figure", "Latency per backend", (Figure("latency per backend", svg=f.get("bars"),
                                                                     missing="no backend ran"),), html_only=True),
            Section("drift-figure", "Latency vs quality drift", (Figure("latency vs drift", svg=f.get("scatter"),
                                                                       missing="no backend ran"),), html_only=True)]


def plane(report: dict, ctx: Context) -> Section | None:
    from vpdsr.bench.plane_report import plane_blocks

    section = report.get("plane")
    if not section:
        return None
    blocks = plane_blocks(section, (ctx.figures or {}).get("plane"), ctx.missing or "the figure needs matplotlib")
    return Section("plane", "Perception-distortion plane", blocks)


def crops(report: dict, ctx: Context) -> list[Section]:
    """The crops of the first image and the per-image figures (HTML page only)."""
    if not ctx.html:
        return []
    first = (report.get("image_names") or ["?"])[0]
    out = [Section("crops", f"Crops: {first}", (Figure("crops", png=ctx.figures.get("crops"), missing="no crops"),),
                   html_only=True)]
    table = per_image_table(report)
    if table is not None:
        out.append(Section("per-image", "Per image", (TableBlock(table),), collapsed=True, html_only=True))
    return out


def metrics(report: dict, ctx: Context) -> Section | None:
    notes = metric_notes(report)
    blocks = []
    if ctx.missing:
        blocks.append(Text(ctx.missing))
    if notes:
        blocks += [Text("'vs ref' compares with the reference backend's output of the same image and noise; drift = "
                        "backend minus reference; 'worst' / 'min' = the least favourable image."), Items(tuple(notes))]
    return Section("metrics", "Metrics", tuple(blocks)) if blocks else None


def scenarios(report: dict, ctx: Context) -> list[Section]:
    """The MLPerf scenarios (vpdsr.bench.scenarios.report): settings, summary and plot open, each backend collapsed."""
    from vpdsr.bench.scenarios.report import scenario_sections

    return scenario_sections(report, ctx)


# In report order; each takes (report, Context) and gives a Section, a list of them, or None.
SECTIONS: tuple[Callable, ...] = (summary, column_groups, scenarios, gates, kept, not_run, figures, plane, crops,
                                  metrics)


def sections(report: dict, ctx: Context | None = None) -> list[Section]:
    """The report's sections in order (report.md's when `ctx` has no figures)."""
    ctx = ctx or Context()
    out: list[Section] = []
    for build in SECTIONS:
        made = build(report, ctx)
        out += made if isinstance(made, list) else [made] if made is not None else []
    return out


def markdown(report: dict, out: str | Path | None = None) -> str:
    """The report as Markdown: the header, then every section that is not for the HTML page only."""
    head = header(report)
    lines = [f"# {head.title}", "", f"**{head.verdict}**", "", head.run, *([head.model] if head.model else []),
             head.where]
    for section in sections(report, Context(out=out)):
        lines += ["", f"## {section.title}"]
        lines += markdown_blocks(section.blocks)
    return "\n".join(lines) + "\n"
