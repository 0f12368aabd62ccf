"""report.html: one self-contained page (inline SVG plots, a base64 PNG of the crops, no links out)."""
from __future__ import annotations

import html
import math

from vpdsr.bench.baselines import text_cells
from vpdsr.bench.columns import NUMERIC_COLUMNS, TEXT_HEADERS, measured, num, sensitivity_links, status_cell
from vpdsr.bench.gates import verdict_text
from vpdsr.bench.model_stats import stats_line
from vpdsr.bench.quality import metric_notes

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 24px; color: #222; max-width: 1350px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; } th, td { border: 1px solid #ddd; padding: 4px 8px; }
th { background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .skipped { color: #9a6700; } .failed, .fail { color: #cf222e; font-weight: bold; }
.pass { color: #1a7f37; } td.why { min-width: 180px; max-width: 280px; font-size: 11px; color: #555; }
.note { color: #666; font-size: 13px; } .fig svg { max-width: 100%; height: auto; }
.verdict { font-size: 16px; padding: 8px 12px; display: inline-block; border-radius: 4px; }
.verdict.pass { background: #dafbe1; } .verdict.fail { background: #ffebe9; } .verdict.none { background: #eee; }
tr.baseline td { background: #fafafa; color: #444; }
"""


def _e(v) -> str:
    return html.escape(str(v))


def _table(report: dict) -> str:
    head = (*TEXT_HEADERS, *(c.header for c in NUMERIC_COLUMNS), "notes")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for b in report["backends"]:
        cells = [
            _e(b["name"]) if b["target"] == b["name"] else f"{_e(b['name'])} ({_e(b['target'])})",
            _e(b["precision"]), _e(b["device"]),
            f'<span class="{_e(b["status"])}">{_e(status_cell(b))}</span>',
        ]
        nums = [c.cell(b) for c in NUMERIC_COLUMNS]
        note = b.get("reason") or ("reference" if b["name"] == report["reference"] else "")
        if b.get("latency_change_pct") is not None:
            note = f"p50 {b['latency_change_pct']:+.1f}% vs baseline " + note
        out.append("<tr><td>" + "</td><td>".join(cells) + "</td>" + "".join(f'<td class="n">{_e(n)}</td>' for n in nums)
                   + f"<td class='why' title='{_e(note)}'>{_e(_short(note))}</td></tr>")
    for b in report.get("baselines") or []:  # what a user would ship instead: quality only, no latency
        name, precision, device, status = (_e(c) for c in text_cells(b))
        nums = [c.cell(b) for c in NUMERIC_COLUMNS]
        note = b.get("reason") or "baseline (quality only)"
        out.append(f"<tr class='baseline'><td><i>{name}</i></td><td>{precision}</td><td>{device}</td>"
                   f"<td><span class='{_e(b['status'])}'>{status}</span></td>"
                   + "".join(f'<td class="n">{_e(n)}</td>' for n in nums)
                   + f"<td class='why' title='{_e(note)}'>{_e(_short(note))}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _scenarios(report: dict) -> str:
    """The MLPerf scenarios: the settings, a summary table, one table per backend, the p99 plot."""
    from vpdsr.bench.scenarios import report as sr

    sc = report.get("scenarios")
    if not sc:
        return ""
    out = ["<h2>MLPerf scenarios (LoadGen)</h2>", f"<p class='note'>{_e(sr.settings_line(report) or '')}</p>"]
    if sc.get("skipped"):
        out.append(f"<p class='note'>Every scenario skipped: {_e(sc['skipped'])}</p>")
    for t in sr.tables(report):
        head = "".join(f"<th>{_e(h)}</th>" for h in t["headers"])
        out.append(f"<h3>{_e(t['title'].strip('`'))}</h3><table><tr>{head}</tr>")
        out += ["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in t["rows"]]
        out.append("</table>" + (f"<p class='note'>{_e(t['note'])}</p>" if t["note"] else ""))
    try:
        svg = sr.p99_plot_svg(report)
    except ImportError:
        svg = None
    if svg:
        out.append(f"<div class='fig'>{svg}</div>")
    return "\n".join(out)


def _plane(report: dict) -> str:
    """The perception-distortion plane: figure, Pareto front and who dominates whom."""
    from vpdsr.bench.plane_report import section_svg

    section = report.get("plane")
    if not section:
        return ""
    if not section.get("available"):
        return f"<h2>Perception-distortion plane</h2><p class='note'>Not drawn: {_e(section.get('reason'))}.</p>"
    try:
        svg = section_svg(section)
    except ImportError as e:
        svg = f"<p class='note'>the figure needs matplotlib ({_e(e)})</p>"
    sentences = "".join(f"<li>{_e(t)}</li>" for t in section["sentences"]) or \
        "<li>No point dominates another (beyond the tolerances).</li>"
    left = f"<p class='note'>Left out: {_e('; '.join(section['left_out']))}.</p>" if section.get("left_out") else ""
    return (f"<h2>Perception-distortion plane</h2><div class='fig'>{svg}</div>"
            f"<p class='note'>Not dominated (Pareto front): <b>{_e(', '.join(section['front']))}</b></p>"
            f"<ul class='note'>{sentences}</ul>{left}")


def _short(text: str, limit: int = 60) -> str:
    """Long reasons are cut in the table (the full text is the cell's tooltip and in report.json)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _roofline(report: dict) -> str:
    from vpdsr.bench.roofline import COLUMN_NOTE, backend_notes, peak_line

    line, notes = peak_line(report.get("roofline")), backend_notes(report)
    if not line and not notes:
        return ""
    items = "".join(f"<li>{_e(n[2:]).replace('**FLAG**', '<b class=fail>FLAG</b>')}</li>" for n in notes)
    return (f"<h2>Roofline</h2><p class='note'>{_e(line or '')} {_e(COLUMN_NOTE.replace('`', ''))}</p>"
            f"<ul class='note'>{items}</ul>")


def _not_run(report: dict) -> str:
    rows = [f"<li><b>{_e(b['name'])}</b> {_e(b['status'])}: {_e(b['reason'])}</li>"
            for b in report["backends"] if not measured(b)]
    rows += [f"<li><b>{_e(b['name'])}</b> (baseline) {_e(b['status'])}: {_e(b['reason'])}</li>"
             for b in report.get("baselines") or [] if b["status"] != "ok"]
    return f"<h2>Not run</h2><ul class='note'>{''.join(rows)}</ul>" if rows else ""


def _gates(report: dict) -> str:
    if not report["gates"]:
        return '<p class="note">No gates were set.</p>'
    rows = ["<table><tr><th>gate</th><th>backend</th><th>threshold</th><th>value</th><th>result</th>"
            "<th>detail</th></tr>"]
    for g in report["gates"]:
        cls = "pass" if g["passed"] else "fail"
        value = g["value"]
        value = num(value, "{:.4g}") if not isinstance(value, str) else value
        rows.append(f"<tr><td>{_e(g['name'])}</td><td>{_e(g['backend'])}</td><td class='n'>{_e(g['threshold'])}</td>"
                    f"<td class='n'>{_e(value)}</td><td class='{cls}'>{'pass' if g['passed'] else 'FAIL'}</td>"
                    f"<td>{_e(g.get('detail', ''))}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _per_image(report: dict) -> str:
    names = report.get("image_names") or []
    ok = [b for b in report["backends"] if measured(b) and b.get("quality")]
    if not names or not ok:
        return ""
    head = "<tr><th>image</th>" + "".join(f"<th>{_e(b['name'])}<br>CLIPIQA / PSNR vs ref</th>" for b in ok) + "</tr>"
    rows = [f"<table>{head}"]
    for i, name in enumerate(names):
        cells = []
        for b in ok:
            r = b["quality"]["per_image"][i]
            psnr = r.get("psnr_vs_ref")
            infinite = isinstance(psnr, float) and math.isinf(psnr)
            psnr_s = "ref" if psnr is None else ("inf" if infinite else f"{psnr:.2f}")
            cells.append(f"{num(r.get('clipiqa'), '{:.4f}')} / {psnr_s}")
        rows.append(f"<tr><td>{_e(name)}</td>" + "".join(f"<td class='n'>{_e(c)}</td>" for c in cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def render_html(result, out=None) -> str:
    """The page for a :class:`vpdsr.bench.harness.BenchResult` (`out`: its folder, for relative links)."""

    report = result.report
    links = sensitivity_links(report, out)
    try:
        from vpdsr.bench import plots

        order = [b["name"] for b in report["backends"]]
        bars = plots.latency_bars(report["backends"], report["reference"])
        scatter = plots.drift_scatter(report["backends"], report["reference"])
        crops = plots.crops_figure(result.crops, result.crop_box, report["reference"], order)
        missing = None
    except ImportError as e:
        bars = scatter = crops = None
        missing = f"plots need matplotlib ({e}); pip install 'vpdsr[metrics]'"
    text = verdict_text(report)
    # green only when a gate was set and held: "no gates set" checked nothing beyond the backends running
    verdict = "fail" if not report["passed"] else ("none" if text.startswith("no gates set") else "pass")
    metrics_notes = "".join(f"<li>{_e(n)}</li>" for n in metric_notes(report))
    env = report["environment"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>vpdsr benchmark: {_e(report['model'].get('source'))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>vpdsr benchmark: {_e(report['model'].get('source'))}</h1>",
        f"<p><span class='verdict {verdict}'>{_e(text)}</span></p>",
        f"<p class='note'>{report['images']} image(s) ({_e(', '.join(report.get('image_names', [])))}), reference "
        f"<b>{_e(report['reference'])}</b>, noise seed {report['seed']}; latency = one whole image upscaled "
        f"(tiled, tile {report['tiling']['tile']}), {report['latency_config']['warmup']} warm-up + up to "
        f"{report['latency_config']['iters']} timed runs. Measured on {_e(env['cpu']['name'])} "
        f"({env['cpu']['cores']} cores, torch threads {env['torch_threads']}), "
        f"{_e(', '.join(g['name'] for g in env['gpus']) or 'no GPU')}, {_e(report['created'])}.</p>",
        f"<p class='note'>{_e(stats_line(report['model']))}</p>" if stats_line(report["model"]) else "",
        "<h2>Backends</h2>", _table(report), _roofline(report), _scenarios(report),
        ("<p class='note'>Per-layer INT8 sensitivity: " + ", ".join(f"<a href='{_e(p)}'>{_e(n)}</a>" for n, p in links)
         + "</p>" if links else ""),
        _not_run(report),
        "<h2>Gates</h2>", _gates(report),
        "<h2>Latency</h2>", f"<div class='fig'>{bars or '<p class=note>no backend ran</p>'}</div>",
        "<h2>Latency vs quality drift</h2>", f"<div class='fig'>{scatter or '<p class=note>no backend ran</p>'}</div>",
        _plane(report),
        f"<h2>Crops: {_e((report.get('image_names') or ['?'])[0])}</h2>",
        (f"<img alt='crops' style='max-width:100%' src='data:image/png;base64,{crops}'>" if crops
         else "<p class='note'>no crops</p>"),
        "<h2>Per image</h2>", _per_image(report),
    ]
    if missing:
        parts.append(f"<p class='note'>{_e(missing)}</p>")
    if metrics_notes:
        parts.append(f"<h2>Metrics</h2><ul class='note'>{metrics_notes}</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
