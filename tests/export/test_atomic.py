"""A failed or killed export leaves no artifact that loads; a changed file is refused in one line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL, vpdsr_log_lines
from tests.export.conftest import TILE
from vpdsr.artifacts import Manifest, read_entry
from vpdsr.errors import ArtifactError
from vpdsr.export import TargetSpec, export, register_target
from vpdsr.export.targets import TARGETS


def build_then_fail(ctx, spec, folder):
    """A target that writes part of an artifact (a real graph and an entry-like file), then fails."""
    from vpdsr.export.onnx_targets import build_onnx

    build_onnx(ctx, spec, folder)
    (folder / "artifact.json").write_text('{"name": "half-written"}')
    raise RuntimeError("injected failure mid-way")


@pytest.fixture
def failing_target():
    spec = register_target(TargetSpec("test-fails", "onnxruntime", "fp32", f"{__name__}:build_then_fail", 60.0))
    yield spec
    TARGETS.pop(spec.name, None)


def test_failing_target_leaves_nothing_loadable(model_dir, tmp_path, failing_target):
    manifest = export(str(model_dir), tmp_path, ["onnx", "test-fails"], tile=TILE, validation=SMALL)
    entry = manifest.entry("test-fails")
    assert entry.status == "failed" and "injected failure" in entry.reason
    assert not (tmp_path / "test-fails").exists()
    with pytest.raises(ArtifactError):
        read_entry(tmp_path / "test-fails")
    assert manifest.entry("onnx").status == "ok", "the other targets are still produced"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders are cleaned up"
    assert Manifest.read(tmp_path).entry("test-fails").status == "failed"


def test_strict_turns_failures_into_exit_1(model_dir, tmp_path, failing_target):
    from vpdsr.cli import main

    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path), "--targets", "test-fails",
                 "--tile", str(TILE), "--strict"]) == 1


KILLED_SCRIPT = """
import sys, time
from vpdsr.export import TargetSpec, export, register_target

def slow(ctx, spec, folder):
    from vpdsr.export.onnx_targets import build_onnx
    result = build_onnx(ctx, spec, folder)
    (folder / "started").write_text("x")
    time.sleep(600)
    return result

register_target(TargetSpec("test-slow", "onnxruntime", "fp32", "__main__:slow", 60.0))
export(sys.argv[1], sys.argv[2], ["test-slow"], tile={TILE})
""".replace("{TILE}", str(TILE))


def test_killed_export_leaves_no_loadable_artifact(model_dir, tmp_path):
    out = tmp_path / "art"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(model_dir), str(out)], cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(out.glob(".test-slow.tmp-*/started")):
            assert proc.poll() is None and time.time() < deadline, "the export never reached the build step"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "test-slow").exists()
    with pytest.raises(ArtifactError):
        read_entry(out / "test-slow")
    assert list(out.glob(".test-slow.tmp-*")), "SIGKILL leaves the hidden temporary behind"
    export(str(model_dir), out, ["onnx"], tile=TILE, validation=SMALL)  # the next export removes it
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_changed_file_is_refused_in_one_line(model_dir, tmp_path):
    export(str(model_dir), tmp_path, ["onnx"], tile=TILE, validation=SMALL)
    graph = tmp_path / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactError, match="sha256 mismatch") as err:
        read_entry(tmp_path / "onnx").verify(tmp_path / "onnx")
    assert "\n" not in str(err.value)
    with vpdsr_log_lines() as logs:
        export(str(model_dir), tmp_path, ["onnx"], tile=TILE, validation=SMALL)
    assert not any("reused" in line for line in logs), "a changed artifact is rebuilt, not reused"
    read_entry(tmp_path / "onnx").verify(tmp_path / "onnx")
