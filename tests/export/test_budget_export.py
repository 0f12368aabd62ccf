"""`--int8-budget` / `--sensitivity` end to end on a tiny model: ort-int8, openvino-int8, modelopt-int8, bench link.

All slow (each export builds, calibrates, searches and validates: 10-70 s here); the search, the
recorded figures and the sensitivity files on a known function are tested fast in test_budget.py.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import SMALL
from tests.export.conftest import TILE
from vpdsr.artifacts import read_entry
from vpdsr.export import export
from vpdsr.export.budget import Budget, ValidationTiles, torch_outputs
from vpdsr.export.mixed_precision import BudgetOptions
from vpdsr.models import from_pretrained

pytestmark = pytest.mark.slow

# The tiny test model's all-INT8 ort-int8 scores about 42.6 dB (worst validation tile vs torch fp32),
# everything in float about 140: 44 needs a few layers in float.
BUDGET = "psnr-vs-ref:44"
OPTIONS = {"count": 2, "max_groups": 8, "refine": 6}


def _export(model_dir, out, targets, budget=BUDGET, sensitivity="groups", **kw):
    return export(str(model_dir), out, targets, tile=TILE, calib_count=3, validation=SMALL,
                  budget=BudgetOptions(budget, sensitivity, **{**OPTIONS, **kw}))


@pytest.fixture(scope="module")
def budgeted(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("budget")
    return out, _export(model_dir, out, "ort-int8")


def _remeasure(model_dir, folder, entry) -> float:
    """The artifact's worst-tile PSNR vs torch fp32 on the validation tiles, measured afresh on its runner."""
    from vpdsr.runtimes import load

    v = entry.options["accuracy_control"]["validation"]
    model = from_pretrained(str(model_dir))
    feeds = ValidationTiles(v["source"], v["count"], v["tile"], model.latent_channels, v["seed"]).feeds()
    refs = torch_outputs(model, feeds)
    with load(entry, folder) as runner:
        outs = [runner.infer(f)["sr"][0].transpose(1, 2, 0) for f in feeds]
    budget = Budget.parse(BUDGET)
    return budget.aggregate(budget.scorer(refs)(outs))


def test_budget_search_holds_and_is_recorded(budgeted, model_dir):
    out, manifest = budgeted
    entry = manifest.entry("ort-int8")
    assert entry.status == "ok", entry.reason
    ac = entry.options["accuracy_control"]
    assert ac["budget"] == BUDGET and ac["holds"]
    assert ac["metric_all_int8"] < 44 <= ac["metric_final"], "the test model should need layers in float"
    assert ac["kept_float_added"] and set(ac["kept_float_groups"])
    assert not set(ac["kept_float_added"]) & set(entry.options["excluded_nodes"]["model"])  # policy apart
    assert set(ac["latency_ms"]) == {"fp32", "all_int8", "final", "threads"}
    assert ac["validation"]["source"] == "samples:val" and ac["validation"]["images_sha256"]
    assert abs(_remeasure(model_dir, out / "ort-int8", entry) - ac["metric_final"]) < 1e-3
    assert entry.calibration["images_sha256"] and entry.calibration["crop"] == TILE


def test_final_graph_keeps_the_recorded_convolutions_in_float(budgeted):
    import onnx

    out, manifest = budgeted
    kept = set(manifest.entry("ort-int8").options["accuracy_control"]["kept_float_added"])
    graph = onnx.load(str(out / "ort-int8" / "model.onnx")).graph
    from_dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    float_weights = {n.name for n in convs if n.input[1] not in from_dq}  # an excluded Conv keeps fp32 weights
    assert {n.name for n in convs} & kept and {n.name for n in convs} & kept <= float_weights
    assert len(float_weights) < len(convs) / 2  # the rest stays INT8


def test_sensitivity_files_are_hashed_and_sorted(budgeted):
    out, manifest = budgeted
    entry = manifest.entry("ort-int8")
    sens = entry.options["sensitivity"]
    listed = {f.path for f in entry.files}
    assert {sens["table"], sens["markdown"], sens["plot"]} <= listed
    read_entry(out / "ort-int8").verify(out / "ort-int8")
    table = json.loads((out / "ort-int8" / sens["table"]).read_text())
    losses = [r["loss_int8_alone"] for r in table["rows"]]
    assert len(table["rows"]) == sens["groups"] and losses == sorted(losses, reverse=True)
    assert table["budget"] == BUDGET
    assert table["all_int8"] == pytest.approx(entry.options["accuracy_control"]["metric_all_int8"], abs=1e-4)
    assert (out / "ort-int8" / sens["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| layer group |" in (out / "ort-int8" / sens["markdown"]).read_text()


def test_bench_report_links_the_sensitivity_plot(budgeted, model_dir, tmp_path):
    import os

    import numpy as np

    from vpdsr.cli import main
    from vpdsr.data.io import write_image
    from vpdsr.data.samples import load_sample

    out, _ = budgeted
    hr = load_sample("astronaut")[40:136, 180:276]
    write_image(tmp_path / "lr" / "astronaut.png", hr.reshape(24, 4, 24, 4, 3).mean(axis=(1, 3)).astype(np.float32))
    report = tmp_path / "report"
    assert main(["bench", "--model", str(model_dir), "--artifacts", str(out), "--backends", "ort-int8", "--images",
                 str(tmp_path / "lr"), "--out", str(report), "--tile", str(TILE), "--overlap", "8", "--warmup", "1",
                 "--iters", "1"]) == 0
    link = os.path.relpath(out / "ort-int8" / "sensitivity.png", report)
    assert f"[ort-int8]({link})" in (report / "report.md").read_text()
    assert f"href='{link}'" in (report / "report.html").read_text()
    row = next(b for b in json.loads((report / "report.json").read_text())["backends"] if b["name"] == "ort-int8")
    assert row["sensitivity"]["plot"] == str((out / "ort-int8" / "sensitivity.png").resolve())


def test_same_budget_is_a_cache_hit_and_another_rebuilds(budgeted, model_dir):
    out, manifest = budgeted
    created = manifest.entry("ort-int8").created
    again = _export(model_dir, out, "ort-int8")
    assert again.entry("ort-int8").created == created
    looser = _export(model_dir, out, "ort-int8", budget="psnr-vs-ref:10", sensitivity=None)
    entry = looser.entry("ort-int8")
    assert entry.created != created and entry.options["accuracy_control"]["kept_float_added"] == []
    assert "sensitivity" not in entry.options


def test_unreachable_budget_fails_with_the_reason(model_dir, tmp_path):
    manifest = _export(model_dir, tmp_path, "ort-int8", budget="psnr-vs-ref:200", sensitivity=None, max_groups=2)
    entry = manifest.entry("ort-int8")
    assert entry.status == "failed" and "unreachable" in entry.reason and "psnr-vs-ref:200" in entry.reason
    assert not (tmp_path / "ort-int8").exists()


def test_openvino_accuracy_control_meets_the_budget(model_dir, tmp_path):
    manifest = _export(model_dir, tmp_path, "openvino-int8", sensitivity=None)
    entry = manifest.entry("openvino-int8")
    assert entry.status == "ok", entry.reason
    ac = entry.options["accuracy_control"]
    assert ac["method"] == "nncf.quantize_with_accuracy_control" and ac["holds"]
    assert ac["metric_all_int8"] < 44 <= ac["metric_final"] < ac["metric_fp32"] and ac["kept_float_added"]
    assert abs(_remeasure(model_dir, tmp_path / "openvino-int8", entry) - ac["metric_final"]) < 1e-3


def test_openvino_sensitivity_table(model_dir, tmp_path):
    manifest = _export(model_dir, tmp_path, "openvino-int8", budget=None, max_groups=4)
    entry = manifest.entry("openvino-int8")
    assert entry.status == "ok", entry.reason and "accuracy_control" not in entry.options
    assert entry.options["sensitivity"]["groups"] == len(
        json.loads((tmp_path / "openvino-int8" / "sensitivity.json").read_text())["rows"])


@pytest.mark.skipif(importlib.util.find_spec("modelopt") is None, reason="nvidia-modelopt is not installed")
def test_modelopt_budget_search_in_its_child(model_dir, tmp_path):
    manifest = _export(model_dir, tmp_path, "modelopt-int8", budget="psnr-vs-ref:60", sensitivity=None, max_groups=6)
    entry = manifest.entry("modelopt-int8")
    assert entry.status == "ok", entry.reason
    ac = entry.options["accuracy_control"]
    assert ac["holds"] and ac["metric_final"] >= 60 and entry.options["peak_rss_mb"]["model"] > 0
    assert abs(_remeasure(model_dir, tmp_path / "modelopt-int8", entry) - ac["metric_final"]) < 1e-3


# through the CLI (24 layer groups, its own validation tiles) all-INT8 scores about 46 dB: 50 needs float layers
SLOW_BUDGET = "psnr-vs-ref:50"


def _timed_as(figures: dict[str, float]):
    """`search.side_by_side_ms` with the given medians: each graph still runs, the clock is the test's."""
    def side_by_side_ms(infers, rounds=12, warmup=2):
        for fn in infers.values():
            fn()
        return {k: figures[k] for k in infers}

    return side_by_side_ms


@pytest.mark.parametrize("target", ["ort-int8", "openvino-int8"])
def test_a_budget_met_only_slowly_names_the_quantize_command(model_dir, tmp_path, monkeypatch, capsys, target):
    """Post-training INT8 within the budget only with float layers that give back most of INT8's speed: the
    export says so in one line naming `vpdsr distill quantize`, records it, and --strict fails on it."""
    from vpdsr.cli import main
    from vpdsr.export import search

    args = ["export", "--model", str(model_dir), "--out", str(tmp_path / "a"), "--targets", target, "--tile",
            str(TILE), "--calib-count", "3", "--int8-budget", SLOW_BUDGET, "--budget-count", "2",
            "--validation-max-size", "32", "--strict"]
    monkeypatch.setattr(search, "side_by_side_ms", _timed_as({"fp32": 100.0, "all_int8": 40.0, "final": 91.0}))
    assert main(args) == 1  # --strict: a slow artifact is not what INT8 was asked for
    captured = capsys.readouterr()
    entry = json.loads((tmp_path / "a" / "manifest.json").read_text())["artifacts"][0]
    assert entry["status"] == "ok" and entry["options"]["accuracy_control"]["kept_float_added"]
    advice = entry["options"]["qat_advice"]
    assert "\n" not in advice and "85% of INT8's speed" in advice
    assert f"vpdsr distill quantize --model {model_dir} --out {tmp_path / 'a'}-qat --targets {target}" in advice
    assert advice in captured.err and "below floor or slow" in captured.err
    # reused from the cache, it says so again, and the summary names it under its row
    assert main(args[:-1]) == 0
    captured = capsys.readouterr()
    assert advice in captured.err and f"    {advice}" in captured.out
    # float layers that cost little: no line
    monkeypatch.setattr(search, "side_by_side_ms", _timed_as({"fp32": 100.0, "all_int8": 40.0, "final": 55.0}))
    assert main([*args[:4], str(tmp_path / "b"), *args[5:]]) == 0
    captured = capsys.readouterr()
    assert "distill quantize" not in captured.out + captured.err
    assert "qat_advice" not in json.loads((tmp_path / "b" / "manifest.json").read_text())["artifacts"][0]["options"]


def test_an_unreachable_budget_names_the_quantize_command(model_dir, tmp_path, capsys):
    from vpdsr.cli import main

    code = main(["export", "--model", str(model_dir), "--out", str(tmp_path / "a"), "--targets", "ort-int8",
                 "--tile", str(TILE), "--calib-count", "3", "--int8-budget", "psnr-vs-ref:200", "--budget-count", "2",
                 "--validation-max-size", "32"])
    out = capsys.readouterr().out
    assert code == 1 and "cannot meet the budget with any layers kept in float" in out
    assert f"vpdsr distill quantize --model {model_dir} --out {tmp_path / 'a'}-qat --targets ort-int8" in out
