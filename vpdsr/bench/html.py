"""report.html: the report's sections (:mod:`vpdsr.bench.sections`) through a Jinja2 template, autoescaped.

One self-contained page (inline SVG plots, a base64 PNG of the crops, no links out): the summary table
first, each column group collapsed below it. Every value from report.json is escaped by the template;
only two kinds of text go in as markup: matplotlib's SVG figures, and the sections' Markdown inline
text (`code`, **bold**, [links](relative/path)), turned into tags after it was escaped.
"""
from __future__ import annotations

import re
from functools import lru_cache

from markupsafe import Markup, escape

from vpdsr.bench.sections import Context, header, sections

TEMPLATE = "report.html"
NOTE_LIMIT = 60  # characters of a row's note shown in a table cell (the whole note is its tooltip)


def inline(text) -> Markup:
    """Markdown inline text as HTML: escaped first, then `code`, **bold** and [text](relative link) become tags."""
    html = str(escape(text))
    html = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html).replace("<b>FLAG</b>", "<b class='fail'>FLAG</b>")
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    html = re.sub(r"\[([^\]]+)\]\(((?![a-z]+:|//)[^)\s]+)\)", r"<a href='\2'>\1</a>", html)  # relative links only
    return Markup(html)


def short(text, limit: int = NOTE_LIMIT) -> str:
    """Long notes are cut in a table cell (the full text is the cell's tooltip and in report.json)."""
    text = str(text or "")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("vpdsr.bench", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=False, lstrip_blocks=False)
    env.filters.update(inline=inline, short=short)
    return env


def figures(result) -> tuple[dict, str | None]:
    """The page's figures ({"bars", "scatter", "crops", "plane", "scenarios"}, SVG as markup, crops as base64 PNG)
    and why there are none (matplotlib missing), else None."""
    report = result.report
    try:
        from vpdsr.bench import plots
        from vpdsr.bench.plane_report import section_svg
        from vpdsr.bench.scenarios.report import p99_plot_svg as scenario_svg

        order = [b["name"] for b in report["backends"]]
        out = {"bars": plots.latency_bars(report["backends"], report["reference"]),
               "scatter": plots.drift_scatter(report["backends"], report["reference"]),
               "crops": plots.crops_figure(result.crops, result.crop_box, report["reference"], order),
               "plane": section_svg(report.get("plane")), "scenarios": scenario_svg(report)}
    except ImportError as e:
        return {}, f"plots need matplotlib ({e}); pip install 'vpdsr[metrics]'"
    # matplotlib's own SVG, drawn from our figures: markup, not text to escape
    return {k: Markup(v) if v is not None and k != "crops" else v for k, v in out.items()}, None


def render_html(result, out=None, drawn: tuple[dict, str | None] | None = None) -> str:
    """The page for a :class:`vpdsr.bench.harness.BenchResult` (`out`: its folder, for relative links; `drawn`:
    what :func:`figures` gave, when the caller drew them already)."""
    figs, missing = drawn if drawn is not None else figures(result)
    ctx = Context(out=out, figures=figs, missing=missing)
    return _environment().get_template(TEMPLATE).render(head=header(result.report),
                                                        sections=sections(result.report, ctx)) + "\n"
