"""`vpdsr bench --scenario` end to end: a real ONNX artifact and the torch reference through LoadGen, one report."""
from __future__ import annotations

import json
import time

import pytest

from vpdsr.cli import main

pytest.importorskip("mlperf_loadgen", reason="needs MLPerf LoadGen (pip install 'vpdsr[loadgen]')")
FAST = ["--tile", "16", "--overlap", "8", "--batch", "4", "--warmup", "1", "--iters", "2", "--threads", "1",
        "--gan-baseline", "none"]
SHORT = ["--scenario-min-duration-s", "0.3", "--scenario-min-queries", "4", "--server-runs", "2"]


def bench(model, images, artifacts, out, *extra) -> int:
    lr, _ = images
    return main(["bench", "--model", str(model), "--images", str(lr), "--artifacts", str(artifacts), "--out", str(out),
                 *FAST, *map(str, extra)])


@pytest.fixture(scope="module")
def scenario_report(bench_model_dir, bench_images, bench_artifacts, tmp_path_factory):
    out = tmp_path_factory.mktemp("scen") / "report"
    rc = bench(bench_model_dir, bench_images, bench_artifacts, out, "--backends", "onnx", "--scenario", "all",
               *SHORT, "--latency-bound-ms", "500", "--min-offline-ips", "0.001", "--max-server-p99-ms", "1e6")
    return rc, out


def test_every_scenario_of_every_row_is_in_the_report(scenario_report):
    rc, out = scenario_report
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["scenarios"]["config"]["scenarios"] == ["single-stream", "offline", "server", "multi-stream"]
    assert "shorter than MLPerf's minimums" in report["scenarios"]["note"]
    rows = {b["name"]: b for b in report["backends"]}
    assert set(report["scenarios"]["backends"]) == {"torch-fp32", "onnx"}
    for name in ("torch-fp32", "onnx"):
        sc = rows[name]["scenarios"]
        assert set(sc["scenarios"]) == {"single-stream", "offline", "server", "multi-stream"}
        for scenario, r in sc["scenarios"].items():
            assert r["status"] == "ok", (name, scenario, r)
            assert r["verdict"] in ("VALID", "INVALID", None)
            if r["verdict"] == "INVALID":
                assert r["verdict_reason"]  # LoadGen's reason goes with every INVALID
            folder = out / r["log"]
            if scenario != "server":
                assert (folder / "mlperf_log_summary.txt").is_file() and (folder / "mlperf_log_detail.txt").is_file()
        runs = [r for s in sc["server_search"].values() for r in s["runs"]]
        assert runs and all((out / r["folder"] / "mlperf_log_summary.txt").is_file() for r in runs)
        assert set(sc["server_search"]) == {"latency", "throughput"}
        assert sc["scenarios"]["single-stream"]["today_p90_ms"] == rows[name]["latency_ms"]["p90"]
        assert sc["scenarios"]["offline"]["ips"] > 0 and sc["scenarios"]["offline"]["mpix_s"] > 0
    assert rows["onnx"]["scenarios"]["lanes"]["kind"] == "sessions"
    assert rows["torch-fp32"]["scenarios"]["lanes"]["kind"] == "batched"
    gates = {(g["name"], g["backend"]): g for g in report["gates"]}
    assert gates[("min-offline-ips", "onnx")]["passed"] and gates[("max-server-p99-ms", "torch-fp32")]["passed"]
    assert "min-offline-ips" in report["verdict"]["text"]
    md = (out / "report.md").read_text()
    assert "## MLPerf scenarios (LoadGen)" in md and "scenarios.svg" in md and (out / "scenarios.svg").is_file()
    assert "MLPerf scenarios (LoadGen)" in (out / "report.html").read_text()
    assert rows["onnx"]["roofline"]["attainable_ms"] > 0 and report["roofline"]["bandwidth"]["gbps"] > 0


def test_a_scenario_gate_fails_the_run(bench_model_dir, bench_images, bench_artifacts, tmp_path):
    rc = bench(bench_model_dir, bench_images, bench_artifacts, tmp_path / "r", "--backends", "onnx",
               "--scenario", "offline", "--scenario-backends", "onnx", *SHORT, "--min-offline-ips", "1e9")
    assert rc == 1
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    gate = next(g for g in report["gates"] if g["name"] == "min-offline-ips")
    assert gate["backend"] == "onnx" and not gate["passed"]
    assert "scenarios" not in {k for k, v in report["backends"][0].items() if v}  # the reference did not run them


@pytest.mark.parametrize("extra, message", [
    (["--scenario", "offline,sever"], "unknown scenario 'sever'"),
    (["--scenario", "server", "--latency-bound-ms", "0"], "`--latency-bound-ms` must be > 0"),
    (["--scenario", "server", "--min-offline-ips", "3"], "add `--scenario offline`"),
    (["--scenario", "offline", "--scenario-backends", "onnx@untuned"], "the scenarios run on the tuned row"),
    (["--scenario", "offline", "--scenario-backends", "nope"], "not a backend of this run"),
])
def test_bad_settings_exit_2_before_any_work(bench_model_dir, bench_images, bench_artifacts, tmp_path, capsys,
                                             extra, message):
    t0 = time.perf_counter()
    rc = bench(bench_model_dir, bench_images, bench_artifacts, tmp_path / "r", "--backends", "onnx,onnx@untuned",
               *extra)
    assert rc == 2 and not (tmp_path / "r").exists()
    err = capsys.readouterr().err
    assert message in err and len([line for line in err.splitlines() if line.strip()]) == 1
    assert time.perf_counter() - t0 < 30  # no backend ran


def test_without_loadgen_the_scenario_rows_are_skipped(bench_model_dir, bench_images, bench_artifacts, tmp_path,
                                                       monkeypatch):
    from vpdsr.bench.scenarios import loadgen

    monkeypatch.setattr(loadgen, "missing_reason", lambda: "MLPerf LoadGen is not installed (test): pip install x")
    rc = bench(bench_model_dir, bench_images, bench_artifacts, tmp_path / "r", "--backends", "onnx",
               "--scenario", "offline,server")
    assert rc == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    onnx = next(b for b in report["backends"] if b["name"] == "onnx")
    assert onnx["status"] == "ok" and onnx["latency_ms"]["p50"] > 0  # single-stream works as today
    assert {r["status"] for r in onnx["scenarios"]["scenarios"].values()} == {"skipped"}
    assert "not installed" in report["scenarios"]["skipped"]
    rc = bench(bench_model_dir, bench_images, bench_artifacts, tmp_path / "g", "--backends", "onnx",
               "--scenario", "offline", "--min-offline-ips", "1")
    assert rc == 2  # a gate that needs LoadGen cannot be evaluated: bad input, not a pass
