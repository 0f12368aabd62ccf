"""Benchmark history: real bench runs recorded per preset and backend, two histories compared by row."""
from __future__ import annotations

import json

import pytest

from vpdsr.bench.harness import BenchConfig, run_bench
from vpdsr.bench.history import HISTORY_NAME, append_run, compare, read_history
from vpdsr.bench.latency import LatencyConfig
from vpdsr.errors import InputError


def bench(model_dir, images, artifacts, backends: str) -> dict:
    lr, hr = images
    cfg = BenchConfig(model=str(model_dir), images=str(lr), hr=str(hr), artifacts=str(artifacts),
                      backends=backends.split(","), latency=LatencyConfig(warmup=0, iters=1, threads=1))
    return run_bench(cfg).report


@pytest.fixture(scope="module")
def two_runs(bench_model_dir, bench_images, bench_artifacts):
    """A tuned-only run, then one with the untuned twin of the onnx row."""
    return (bench(bench_model_dir, bench_images, bench_artifacts, "onnx"),
            bench(bench_model_dir, bench_images, bench_artifacts, "onnx,onnx@untuned"))


def test_untuned_row_runs_main_settings_beside_the_tuned_one(two_runs):
    rows = {r["name"]: r for r in two_runs[1]["backends"]}
    tuned, untuned = rows["onnx"], rows["onnx@untuned"]
    assert untuned["status"] == "ok" and untuned["tiling"]["mode"] == "fixed"
    assert untuned["tiling"]["config"]["tile"] == 16  # the static 16x16 artifact keeps its tile
    # the same graph and noise: the same pixels, whatever the engine options
    assert untuned["quality"]["psnr_vs_ref"] == pytest.approx(tuned["quality"]["psnr_vs_ref"], abs=1e-3)
    assert untuned["roofline"]["expected_ms"] > 0 and untuned["roofline"]["vs_single_call"] > 0
    # the engines' own thread count is every CPU: the untuned row's % peak is against that count's peak
    from vpdsr.env import available_cpus

    assert tuned["roofline"]["peak_threads"] == 1
    assert untuned["roofline"]["peak_threads"] == available_cpus()


def test_two_histories_compared_name_the_changed_rows(two_runs, tmp_path):
    a, b = tmp_path / "a" / HISTORY_NAME, tmp_path / "b" / HISTORY_NAME
    append_run(a, {"tiny-test": two_runs[0]}, label="before")
    append_run(b, {"tiny-test": two_runs[1]}, label="after")
    old, new = read_history(a)["runs"][-1], read_history(b)["runs"][-1]
    assert old["label"] == "before" and set(old["presets"]["tiny-test"]) == {"torch-fp32", "onnx"}
    assert old["presets"]["tiny-test"]["onnx"]["p50_ms"] > 0

    loose = compare(old, new, threshold_pct=1e9)  # no timing moves that far: only the added row
    assert [(c["backend"], c["change"]) for c in loose] == [("onnx@untuned", "added")]

    # the same run recorded again, with onnx's p50 doubled in the file: that row alone is named, as slower
    data = json.loads(b.read_text())
    data["runs"].append(json.loads(json.dumps(data["runs"][-1])))
    data["runs"][-1]["presets"]["tiny-test"]["onnx"]["p50_ms"] *= 2
    data["runs"][-1]["presets"]["tiny-test"]["torch-fp32"]["status"] = "failed"
    data["runs"][-1]["presets"]["tiny-test"]["onnx"]["outside_engine_pct"] = 62.0  # points, not percent
    data["runs"][-2]["presets"]["tiny-test"]["onnx"]["outside_engine_pct"] = 2.0
    b.write_text(json.dumps(data))
    runs = read_history(b)["runs"]
    changes = {c["backend"]: c for c in compare(runs[0], runs[1], threshold_pct=50)}
    assert set(changes) == {"onnx", "torch-fp32"}
    assert changes["onnx"]["figures"]["p50_ms"]["pct"] == pytest.approx(100.0)
    assert changes["onnx"]["figures"]["p50_ms"]["better"] is False
    assert changes["onnx"]["figures"]["outside_engine_pct"]["pct"] == pytest.approx(60.0)
    assert changes["torch-fp32"]["change"] == "status" and changes["torch-fp32"]["status"] == ["ok", "failed"]


def test_suite_compare_command_reads_run_folders(two_runs, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("suite", Path(__file__).parents[2] / "benchmarks" / "suite.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    append_run(tmp_path / "old" / HISTORY_NAME, {"tiny-test": two_runs[0]})
    append_run(tmp_path / "new" / HISTORY_NAME, {"tiny-test": two_runs[1]})
    assert suite.main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--threshold", "1e9"]) == 0
    text = capsys.readouterr().out
    assert "`tiny-test` / `onnx@untuned`: added" in text and "`onnx`:" not in text
    assert suite.main(["compare", str(tmp_path / "old")]) == 2  # one run only: nothing to compare with
    assert "has 1 run(s)" in capsys.readouterr().err


def test_unreadable_history_is_one_line_error(tmp_path):
    bad = tmp_path / HISTORY_NAME
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a readable benchmark history"):
        read_history(bad)
    bad.write_text(json.dumps({"schema": 99, "runs": []}))
    with pytest.raises(InputError, match="expected schema 1"):
        read_history(bad)
    assert read_history(tmp_path / "missing.json")["runs"] == []


def test_untuned_twins_only_for_cpu_artifacts_that_ran(bench_artifacts):
    from vpdsr.bench.backends import with_untuned

    # tensorrt-fp16 was skipped by the export (no GPU here) and is no CPU engine: no twin
    assert with_untuned(bench_artifacts) == ["onnx", "onnx@untuned", "tensorrt-fp16"]


def test_untuned_gpu_artifact_is_refused(bench_model_dir, bench_artifacts):
    from vpdsr.bench.backends import resolve_backends

    with pytest.raises(InputError, match="expected a CPU artifact"):
        resolve_backends(str(bench_model_dir), bench_artifacts, ["tensorrt-fp16@untuned"], "torch-fp32", "cpu")


def test_report_shows_tuning_pairs_and_the_new_columns(two_runs):
    from vpdsr.bench.report import markdown

    text = markdown(two_runs[1])
    assert "| tiling x | est ms | e2e/est | outside % |" in text
    assert "- tuning `onnx`: p50 " in text and "ms untuned -> " in text


def test_untuned_openvino_on_its_upper_case_cpu_device_opens_with_the_latency_hint(tmp_path):
    pytest.importorskip("openvino", reason="openvino not installed")
    from tests.runtimes.tiny_artifacts import openvino_artifact
    from vpdsr.bench.backends import BackendSpec, _untuned, open_runner

    spec = _untuned(BackendSpec(name="openvino", target="openvino", backend="openvino", precision="fp32",
                                device="CPU", artifact=openvino_artifact(tmp_path / "openvino-fp32")))
    assert spec.name == "openvino@untuned"
    runner = open_runner(spec, threads=1)
    assert runner.performance_hint == "LATENCY" and runner.threads is None  # the library's thread count


def test_a_row_above_the_peak_says_the_cached_peak_is_stale():
    from vpdsr.bench.roofline import backend_notes

    report = {"roofline": {"measured": "2026-12-01T11:34", "loadavg": [10.8, 10, 9], "threads": 1},
              "backends": [{"name": "torch-fp32", "status": "ok", "precision": "fp32", "latency_ms": {"p50": 10.0},
                            "roofline": {"peak_pct_best": 179.0}, "tiling": {}}]}
    notes = backend_notes(report)
    assert any("peak too low" in n and "`torch-fp32` 179 %" in n and "--refresh --threads 1" in n for n in notes)


def test_scenario_figures_are_carried_and_compared():
    from vpdsr.bench.history import row_figures, run_entry

    def row(qps, ips):
        return {"name": "onnx", "status": "ok", "precision": "fp32", "latency_ms": {"p50": 10.0},
                "scenarios": {"scenarios": {"single-stream": {"status": "ok", "p90_ms": 11.0},
                                            "offline": {"status": "ok", "ips": ips, "mpix_s": 2 * ips},
                                            "server": {"status": "ok", "max_qps": qps, "p99_ms": 19.0}}}}

    figures = row_figures(row(40.0, 100.0))
    assert figures["server_max_qps"] == 40.0 and figures["offline_ips"] == 100.0 and figures["offline_mpix_s"] == 200.0
    assert figures["single_stream_p90_ms"] == 11.0 and figures["multi_stream_p99_ms"] is None
    assert row_figures({"name": "x", "status": "skipped"})["server_max_qps"] is None  # no scenarios: no figure
    old, new = (run_entry({"tiny": {"backends": [r]}}) for r in (row(40.0, 100.0), row(20.0, 150.0)))
    moved = compare(old, new, threshold_pct=10)[0]["figures"]
    assert moved["server_max_qps"]["better"] is False and moved["offline_ips"]["better"] is True
