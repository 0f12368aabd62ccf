"""Honest backend statuses in `vpdsr bench`: failed fails the run whatever the gates, skipped only for
cannot-run-here, `--require` / `--allow-failed`, and the verdict banner. Real export artifacts, real CLI."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from tests.conftest import SMALL
from vpdsr.artifacts import MANIFEST_NAME
from vpdsr.cli import main
from vpdsr.export.api import export

FAST = ["--tile", "16", "--overlap", "8", "--batch", "4", "--warmup", "0", "--iters", "1", "--max-images", "1"]


@pytest.fixture
def artifacts(bench_artifacts, tmp_path, empty_caches):
    """A private copy of the export folder (onnx ok, tensorrt-fp16 as this machine made it) to tamper with."""
    return shutil.copytree(bench_artifacts, tmp_path / "artifacts")


def edit_entry(folder, name, **fields):
    """Change one entry in manifest.json and in its folder's artifact.json (as a hand edit would)."""
    for path in (folder / MANIFEST_NAME, folder / name / "artifact.json"):
        data = json.loads(path.read_text())
        entry = next(a for a in data["artifacts"] if a["name"] == name) if "artifacts" in data else data
        entry.update(fields)
        path.write_text(json.dumps(data))


def bench(model, images, artifacts, out, *extra) -> int:
    lr, _ = images
    return main(["bench", "--model", str(model), "--images", str(lr), "--artifacts", str(artifacts), "--out", str(out),
                 *FAST, *map(str, extra)])


def report_of(out) -> tuple[dict, dict]:
    report = json.loads((out / "report.json").read_text())
    return report, {b["name"]: b for b in report["backends"]}


def test_tampered_artifact_with_a_gate_exits_1_naming_it(bench_model_dir, bench_images, artifacts, tmp_path, capsys):
    graph = artifacts / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x01")
    rc = bench(bench_model_dir, bench_images, artifacts, tmp_path / "r", "--backends", "onnx", "--min-psnr-vs-ref",
               "30")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("vpdsr bench: error: 1 backend(s) failed: onnx") and "sha256 mismatch" in err[-1]
    report, rows = report_of(tmp_path / "r")
    assert rows["onnx"]["status"] == "failed" and rows["onnx"]["reason"].startswith("load error: ")
    assert report["passed"] is False and report["verdict"]["failed_backends"] == ["onnx"]
    assert "**FAILED: backend onnx failed" in (tmp_path / "r" / "report.md").read_text()
    # the explicit escape hatch: still reported failed, the run passes and says so
    rc = bench(bench_model_dir, bench_images, artifacts, tmp_path / "r2", "--backends", "onnx", "--allow-failed",
               "onnx")
    report, rows = report_of(tmp_path / "r2")
    assert rc == 0 and rows["onnx"]["status"] == "failed" and report["passed"] is True
    assert report["verdict"]["text"] == "no gates set; failed but allowed: onnx"


def test_failed_export_entry_fails_the_run_without_any_gate(bench_model_dir, bench_images, artifacts, tmp_path, capsys):
    why = "validation below its floor: PSNR 16.9 dB vs torch fp32 < 30 dB"
    edit_entry(artifacts, "onnx", status="failed", reason=why)
    assert bench(bench_model_dir, bench_images, artifacts, tmp_path / "r", "--backends", "onnx") == 1
    assert "onnx" in capsys.readouterr().err.strip().splitlines()[-1]
    _, rows = report_of(tmp_path / "r")
    assert rows["onnx"]["status"] == "failed" and rows["onnx"]["reason"] == f"export failed: {why}"


def test_graph_that_does_not_load_is_failed(bench_model_dir, bench_images, artifacts, tmp_path):
    """Hashes that match (re-recorded) but a graph ONNX Runtime cannot parse: a load error, not a skip."""
    garbage = b"not an onnx graph"
    (artifacts / "onnx" / "model.onnx").write_bytes(garbage)
    entry = json.loads((artifacts / "onnx" / "artifact.json").read_text())
    files = [{**f, "sha256": hashlib.sha256(garbage).hexdigest(), "bytes": len(garbage)} if f["path"] == "model.onnx"
             else f for f in entry["files"]]
    edit_entry(artifacts, "onnx", files=files)
    assert bench(bench_model_dir, bench_images, artifacts, tmp_path / "r", "--backends", "onnx") == 1
    _, rows = report_of(tmp_path / "r")
    assert rows["onnx"]["status"] == "failed" and rows["onnx"]["reason"].startswith("load error: ")
    assert "\n" not in rows["onnx"]["reason"]
    assert "Traceback" in (tmp_path / "r" / "bench.log").read_text()  # the whole story is in the log file


def test_skip_is_no_failure_unless_required(bench_model_dir, bench_images, artifacts, tmp_path, capsys):
    edit_entry(artifacts, "onnx", status="skipped", reason="this machine cannot run it (test)")
    assert bench(bench_model_dir, bench_images, artifacts, tmp_path / "r", "--backends", "onnx") == 0
    report, rows = report_of(tmp_path / "r")
    assert rows["onnx"]["status"] == "skipped" and rows["onnx"]["reason"].endswith("this machine cannot run it (test)")
    assert report["verdict"]["text"] == "no gates set; 1 skipped (cannot run here)"
    assert "<span class='verdict none'>no gates set" in (tmp_path / "r" / "report.html").read_text()
    for flag in ("onnx", "all"):
        capsys.readouterr()
        assert bench(bench_model_dir, bench_images, artifacts, tmp_path / flag, "--backends", "onnx",
                     "--require", flag) == 1
        assert "onnx" in capsys.readouterr().err.strip().splitlines()[-1]
        _, rows = report_of(tmp_path / flag)
        assert rows["onnx"]["status"] == "failed"
        assert rows["onnx"]["reason"].startswith("required (--require) but skipped")


@pytest.mark.parametrize("extra", [["--require", "nonsense"], ["--allow-failed", "onnx,typo"],
                                   ["--require", "onnx", "--allow-failed", "onnx"], ["--require", ","]])
def test_bad_status_policy_is_one_line_exit_2(bench_model_dir, bench_images, artifacts, tmp_path, capsys, extra):
    assert bench(bench_model_dir, bench_images, artifacts, tmp_path / "r", "--backends", "onnx", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vpdsr bench: error:")
    assert not (tmp_path / "r").exists()


def test_link_out_of_the_artifact_folder_is_refused_before_anything_runs(bench_model_dir, bench_images, artifacts,
                                                                         tmp_path, capsys):
    outside = tmp_path / "outside.onnx"
    shutil.move(artifacts / "onnx" / "model.onnx", outside)
    (artifacts / "onnx" / "model.onnx").symlink_to(outside)
    assert bench(bench_model_dir, bench_images, artifacts, tmp_path / "r", "--backends", "onnx") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside the artifact folder" in err[0] and not (tmp_path / "r").exists()


def test_no_bf16_cpu_skips_the_bf16_target_everywhere(bench_model_dir, bench_images, tmp_path, monkeypatch,
                                                      empty_caches):
    """The branch of a CPU without bf16, forced by hiding BF16 from OpenVINO's capability probe (the one
    both the export and the runner ask): skipped with the reason, never failed; required -> failed."""
    ov = pytest.importorskip("openvino")
    probe = ov.Core.get_property

    def without_bf16(self, *args):
        value = probe(self, *args)
        return [c for c in value if c != "BF16"] if args[-1] == "OPTIMIZATION_CAPABILITIES" else value

    monkeypatch.setattr(ov.Core, "get_property", without_bf16)
    manifest = export(str(bench_model_dir), tmp_path / "art", "openvino-bf16", tile=16, validation=SMALL)
    entry = manifest.entry("openvino-bf16")
    assert entry.status == "skipped" and "bf16" in entry.reason
    assert bench(bench_model_dir, bench_images, tmp_path / "art", tmp_path / "r") == 0
    _, rows = report_of(tmp_path / "r")
    assert rows["openvino-bf16"]["status"] == "skipped" and "bf16" in rows["openvino-bf16"]["reason"]
    assert bench(bench_model_dir, bench_images, tmp_path / "art", tmp_path / "r2", "--require", "openvino-bf16") == 1
