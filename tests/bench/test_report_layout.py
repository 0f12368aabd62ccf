"""The report reads at a glance: a summary table first, every other column in one group below it (report.md and
report.html the same sections), HTML from an autoescaping template, no sideways scroll at 1400 px in Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.bench.test_report import minimal_report
from vpdsr.bench.columns import GROUPS, NUMERIC_COLUMNS, SUMMARY
from vpdsr.bench.harness import BenchResult
from vpdsr.bench.html import inline, render_html
from vpdsr.bench.report import markdown, write_report

SUMMARY_HEADERS = ("| backend | status | p50 ms | images/s | % peak | % attainable | PSNR vs ref dB "
                   "| PIQE drift worst | PSNR vs HR dB |")


def wide_report() -> dict:
    """Sixteen rows with long names and reasons, every column filled: the widest report a pipeline writes."""
    base = minimal_report()["backends"][0]
    rows = []
    for i in range(12):
        name = f"openvino-int8-variant-{i}@untuned" if i % 3 else f"onnx-{i}"
        rows.append({**base, "name": name, "target": name.split("@")[0], "backend": "openvino",
                     "status": "skipped" if i == 5 else "ok",
                     "reason": "export skipped: TensorRT is not installed (the tensorrt wheels need NVIDIA's index "
                               "and a CUDA machine: pip install 'vpdsr[gpu]' there)" if i == 5 else None,
                     "latency_ms": {"p50": 1234.5, "p90": 2345.6, "p99": 3456.7, "mean": 1999.9},
                     "roofline": {k: 123.45 for k in ("gflop_per_image", "gflops", "peak_pct", "peak_pct_best",
                                                     "ms_per_mpix", "tiling_overhead", "expected_ms",
                                                     "vs_single_call", "outside_engine_pct", "attainable_ms",
                                                     "attainable_pct")},
                     "quality": {**base["quality"], "psnr_vs_ref": 45.678, "psnr_vs_hr": 28.26, "piqe": 76.29,
                                 "piqe_drift_worst": -10.48, "clipiqa": 0.5, "clipiqa_drift": 0.001,
                                 "clipiqa_drift_worst": -0.002, "ssim_vs_ref": 0.9999, "ms_ssim_vs_ref_min": 0.9998,
                                 "gmsd_vs_ref": 0.0001, "lpips_vs_ref": 0.0002}})
    baselines = [{"name": n, "kind": k, "status": "ok", "reason": None, "quality": {"psnr_vs_hr": 27.2, "piqe": 81.0}}
                 for n, k in (("bicubic", "bicubic"), ("realesrgan-x4plus", "gan"), ("teacher", "teacher"),
                              ("hr", "hr"))]
    return minimal_report(backends=[base, *rows], baselines=baselines)


def test_summary_first_then_every_column_in_one_group():
    md = markdown(wide_report())
    sections = re.findall(r"^## (.+)$", md, flags=re.M)
    assert sections[:5] == ["Summary", *(g.title for g in GROUPS)]
    assert md.index(SUMMARY_HEADERS) < md.index("## Latency")
    headers = [c.header for c in NUMERIC_COLUMNS]
    # the 26 numeric columns of the old single table, the colour check and the attainable time's three, each once
    assert len(headers) == len(set(headers)) == 30 and "colour shift /255 worst" in headers
    for g in GROUPS:  # each group's table: the text columns, then its own columns
        body = md.split(f"## {g.title}\n", 1)[1]
        assert body.lstrip().startswith("| backend | precision | device | status | "
                                        + " | ".join(c.header for c in g.columns) + " |")
    assert {c.header for c in SUMMARY} <= set(headers)
    assert "| bicubic | baseline | - | - | - | - | - | - | 27.20 |" in md  # baselines in the summary: quality only


def test_html_summary_is_open_and_the_groups_collapse():
    page = render_html(BenchResult(report=wide_report(), crops={}))
    summary = page[page.index("<section id='summary'>"):]
    summary = summary[:summary.index("</section>")]
    assert "<details" not in summary and "<th>p50 ms</th>" in summary and "<th>notes</th>" in summary
    for g in GROUPS:
        assert f"<details id='{g.key}'><summary><h2>{g.title}</h2></summary>" in page
    assert page.index("<section id='summary'>") < page.index("<details id='latency'>")


def test_html_escapes_what_the_report_holds():
    report = wide_report()
    report["backends"][1]["name"] = "<script>alert(1)</script>"
    report["backends"][1]["reason"] = "it's <b>bold</b> & \"quoted\""
    page = render_html(BenchResult(report=report, crops={}))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    # Markdown inline of the sections: tags only after escaping; links only to relative paths
    assert str(inline("`a<b>` and **FLAG** [plot](s/p.png) [x](javascript:alert(1))")) == (
        "<code>a&lt;b&gt;</code> and <b class='fail'>FLAG</b> <a href='s/p.png'>plot</a> [x](javascript:alert(1))")


def test_report_files_round_trip_the_new_sections(tmp_path):
    write_report(tmp_path / "r", BenchResult(report=wide_report(), crops={}))
    md = (tmp_path / "r" / "report.md").read_text()
    assert json.loads((tmp_path / "r" / "report.json").read_text())["backends"][1]["name"] == "onnx-0"
    assert "| onnx-0 | ok | 1234.5 | 666.70 | 123.5 | 123.5 | 45.68 | -10.48 | 28.26 |" in md


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_summary_has_no_sideways_scroll_at_1400_px_in_chromium(tmp_path):
    write_report(tmp_path / "r", BenchResult(report=wide_report(), crops={}))
    page = (tmp_path / "r" / "report.html").read_text()
    probe = ("<script>const t = document.querySelector('#summary table');"
             "document.body.setAttribute('data-probe', JSON.stringify({inner: window.innerWidth, "
             "page: document.documentElement.scrollWidth, right: t.getBoundingClientRect().right}));</script></body>")
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe))
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--no-first-run", "--window-size=1400,2400", "--dump-dom",
                          (tmp_path / "probe.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-probe="([^"]+)"', out)
    assert found, out[-500:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["inner"] == 1400
    assert probe["right"] <= probe["inner"] and probe["page"] <= probe["inner"], probe  # no sideways scroll
