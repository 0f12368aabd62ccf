"""`vpdsr export --keep-failed` and `vpdsr bench` on what it kept: a real INT8 artifact below an
unreachable floor keeps its folder (failed, hashed), the bench times it and still fails the run.

The failing target is the real `ort-int8` builder registered under a test name with a 200 dB floor
(no quantised output comes within 200 dB of fp32), exported through the real CLI."""
from __future__ import annotations

import json

import pytest

from tests.bench.test_statuses import FAST, report_of
from tests.conftest import vpdsr_log_lines
from vpdsr.artifacts import Manifest, read_entry
from vpdsr.cli import main
from vpdsr.errors import ArtifactError
from vpdsr.export import TargetSpec, register_target
from vpdsr.export.targets import TARGETS
from vpdsr.runtimes import load

NAME = "test-int8-floor-200"
EXPORT = ["--tile", "16", "--calib-count", "2", "--validation-images", "1", "--validation-max-size", "32"]


@pytest.fixture
def high_floor_int8():
    spec = register_target(TargetSpec(NAME, "onnxruntime", "int8", "vpdsr.export.onnx_targets:build_ort_int8",
                                      200.0, calibrated=True))
    yield spec
    TARGETS.pop(spec.name, None)


def export_cli(model, out, *extra) -> int:
    return main(["export", "--model", str(model), "--out", str(out), "--targets", NAME, *EXPORT, *extra])


def bench_cli(model, images, artifacts, out, *extra) -> int:
    return main(["bench", "--model", str(model), "--images", str(images[0]), "--hr", str(images[1]),
                 "--artifacts", str(artifacts), "--out", str(out), "--backends", NAME, *FAST, *extra])


def test_without_keep_failed_nothing_is_left(bench_model_dir, tmp_path, high_floor_int8, empty_caches):
    assert export_cli(bench_model_dir, tmp_path / "art") == 1  # a failed target: exit 1, as before
    entry = Manifest.read(tmp_path / "art").entry(NAME)
    assert entry.status == "failed" and "below its floor" in entry.reason and not entry.kept
    assert not (tmp_path / "art" / NAME).exists()
    assert "kept" not in json.loads((tmp_path / "art" / "manifest.json").read_text())["artifacts"][0]  # as before


def test_kept_failed_artifact_is_timed_and_still_fails_the_run(bench_model_dir, bench_images, tmp_path,
                                                               high_floor_int8, empty_caches, capsys):
    art = tmp_path / "art"
    assert export_cli(bench_model_dir, art, "--keep-failed") == 1  # still a failed target
    assert f"(kept in {art / NAME})" in capsys.readouterr().out
    folder = art / NAME
    entry = read_entry(folder)
    assert entry.status == "failed" and entry.kept and "< 200.0 dB" in entry.reason
    assert entry.validation["passed"] is False and 20 < entry.validation["psnr_db"] < 200  # the figures
    assert entry.to_dict() == Manifest.read(art).entry(NAME).to_dict()
    assert {f.path for f in entry.files} >= {"model.onnx"}
    entry.verify(folder, allow_failed=True)  # every file hashed and unchanged
    with pytest.raises(ArtifactError, match="kept by --keep-failed"):
        load(folder)  # a failed artifact never loads unless asked for
    with load(folder, allow_failed=True) as runner:
        assert runner.entry.status == "failed"

    # the reuse cache keeps it failed (never ok), and does not rebuild it
    with vpdsr_log_lines() as lines:
        assert export_cli(bench_model_dir, art, "--keep-failed") == 1
    assert any(f"{NAME}: reused" in line and "still failed" in line for line in lines)
    assert read_entry(folder).status == "failed" and Manifest.read(art).entry(NAME).status == "failed"

    capsys.readouterr()
    assert bench_cli(bench_model_dir, bench_images, art, tmp_path / "r", "--min-psnr-vs-ref", "1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vpdsr bench: error: 1 backend(s) failed:") and NAME in err[-1]
    report, rows = report_of(tmp_path / "r")
    row = rows[NAME]
    assert row["status"] == "failed" and row["kept"] is True
    assert row["reason"].startswith("export failed: validation below its floor") and "< 200.0 dB" in row["reason"]
    assert row["latency_ms"]["p50"] > 0 and row["peak_mem_mb"] > 0
    q = row["quality"]
    assert 20 < q["psnr_vs_ref"] < 200 and q["psnr_vs_hr"] > 10  # measured, below its floor
    assert rows["torch-fp32"]["status"] == "ok" and report["passed"] is False
    assert report["verdict"]["failed_backends"] == [NAME]
    # a failed row gets no threshold gate that could pass: only its failed backend-ran gate
    assert [(g["name"], g["passed"]) for g in report["gates"] if g["backend"] == NAME] == [("backend-ran", False)]
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"| {NAME} | int8 | cpu | failed (kept) | {row['latency_ms']['p50']:.1f} |" in md
    assert "## Failed, measured anyway" in md and f"- `{NAME}` failed: export failed: validation below" in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert "failed (kept)" in html and "Not run" not in html  # it ran

    # the explicit escape hatch: the same row, the run passes and says so
    assert bench_cli(bench_model_dir, bench_images, art, tmp_path / "r2", "--allow-failed", NAME) == 0
    report, rows = report_of(tmp_path / "r2")
    assert rows[NAME]["status"] == "failed" and rows[NAME]["latency_ms"]["p50"] > 0 and report["passed"] is True
    assert report["verdict"]["text"] == f"no gates set; failed but allowed: {NAME}"

    # changed after export: refused at load, failed without figures, both reasons kept
    graph = folder / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x01")
    assert bench_cli(bench_model_dir, bench_images, art, tmp_path / "r3", "--allow-failed", NAME) == 0
    _, rows = report_of(tmp_path / "r3")
    row = rows[NAME]
    assert row["status"] == "failed" and row["latency_ms"] is None and row["kept"] is False
    assert row["reason"].startswith("export failed: ") and "; load error: " in row["reason"]
    assert "sha256 mismatch" in row["reason"]

    # exported again without --keep-failed: rebuilt, failed again, and the kept folder goes (as today)
    assert export_cli(bench_model_dir, art) == 1
    assert not folder.exists() and not Manifest.read(art).entry(NAME).kept


def test_kept_is_only_for_a_failed_entry(tmp_path):
    from vpdsr.artifacts import ArtifactEntry

    d = ArtifactEntry(name="x", target="onnx", backend="onnxruntime", precision="fp32", kept=True).to_dict()
    with pytest.raises(ArtifactError, match="`kept` is only for a failed artifact"):
        ArtifactEntry.from_dict(d)
