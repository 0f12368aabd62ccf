"""Every CPU target of a tiny model: produced, validated against torch fp32, recorded in the manifest."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from tests.conftest import SMALL, vpdsr_log_lines
from tests.export.conftest import TILE
from vpdsr.artifacts import Manifest, read_entry
from vpdsr.export import export
from vpdsr.export.calibration import CalibrationSet
from vpdsr.metrics.fidelity import psnr
from vpdsr.models import from_pretrained
from vpdsr.runtimes import load
from vpdsr.utils import sha256_file

CPU_TARGETS = ["onnx", "onnx-fp16", "ort-int8", "openvino", "openvino-bf16", "openvino-int8"]
if importlib.util.find_spec("modelopt"):
    CPU_TARGETS.append("modelopt-int8")
FLOORS = {"onnx": 60, "openvino": 60, "openvino-bf16": 40, "onnx-fp16": 40,
          "ort-int8": 30, "openvino-int8": 30, "modelopt-int8": 30}


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    with vpdsr_log_lines() as logs:
        manifest = export(str(model_dir), out, CPU_TARGETS + ["tensorrt-fp16"], tile=TILE, calib_count=3,
                          validation=SMALL)
    return out, manifest, logs


def _cpu_capabilities() -> list[str]:
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_target_produced_and_above_floor(exported, target):
    out, manifest, _ = exported
    entry = manifest.entry(target)
    if target == "openvino-bf16" and "BF16" not in _cpu_capabilities():
        # a CPU without bf16 execution: skipped with the reason there, never failed (ok everywhere else)
        assert entry.status == "skipped" and "bf16" in entry.reason, (entry.status, entry.reason)
        return
    assert entry.status == "ok", entry.reason
    assert entry.validation["psnr_db"] >= FLOORS[target]
    assert entry.validation["passed"] and entry.validation["finite"]
    read_entry(out / target).verify(out / target)  # files match their recorded sha256


@pytest.mark.parametrize("target", ["onnx", "ort-int8", "openvino", "openvino-int8"])
def test_artifact_output_matches_torch_when_run_again(exported, model_dir, target):
    """Independent re-run of the artifact folder on fresh held-out-like inputs (not the export's own)."""
    out, manifest, _ = exported
    feeds = CalibrationSet("samples:demo", count=1, tile=TILE, channels=48, seed=99).feeds()
    with torch.inference_mode():
        ref = from_pretrained(model_dir)(*(torch.from_numpy(feeds[0][k]) for k in ("lr", "noise"))).numpy()
    with load(out / target) as runner:  # the artifact's own runner and settings
        got = runner.infer(feeds[0])["sr"]
    assert got.shape == ref.shape == (1, 3, 4 * TILE, 4 * TILE)
    assert psnr(got[0].transpose(1, 2, 0), ref[0].transpose(1, 2, 0)) >= FLOORS[target]


def test_openvino_precision_is_recorded_for_the_runner(exported):
    _, manifest, _ = exported
    assert manifest.entry("openvino").options["inference_precision"] == "f32"
    assert manifest.entry("openvino-bf16").options["inference_precision"] == "bf16"
    assert manifest.entry("openvino-int8").options["ignored_ops"]["model"], "the sensitive layers are ignored"


def test_manifest_fields(exported, model_dir):
    out, manifest, _ = exported
    on_disk = Manifest.read(out)
    assert [a.name for a in on_disk.artifacts] == [a.name for a in manifest.artifacts]
    assert on_disk.model["sha256"] == manifest.model["sha256"] and len(on_disk.model["sha256"]) == 64
    calib = CalibrationSet("samples:calib", count=3, tile=TILE, channels=48)
    for entry in on_disk.artifacts:
        if entry.status != "ok":
            continue
        for f in entry.files:
            assert sha256_file(out / entry.name / f.path) == f.sha256
        assert entry.versions["onnx"] and entry.versions["torch"] and entry.versions["onnxruntime"]
        assert entry.inputs["lr"]["shape"] == ["batch", 3, TILE, TILE]
        assert entry.inputs["noise"]["shape"] == ["batch", 48, TILE, TILE]
        assert entry.outputs["sr"]["shape"] == ["batch", 3, 4 * TILE, 4 * TILE]
        assert entry.cache_key
    for name in ("ort-int8", "openvino-int8", "onnx-fp16"):
        c = on_disk.entry(name).calibration
        assert c["count"] == 3 and c["sha256"] == calib.sha256()
    assert on_disk.entry("onnx").calibration is None
    assert json.loads((out / "onnx" / "artifact.json").read_text())["name"] == "onnx"


def test_fp16_records_stage_precisions(exported):
    opts = exported[1].entry("onnx-fp16").options
    assert set(opts["stage_checks"]) == {"encoder", "denoiser", "decoder"}
    assert set(opts["fp16_stages"]) | set(opts["fp32_stages"]) == {"encoder", "denoiser", "decoder"}


def test_tensorrt_skipped_with_reason(exported):
    if importlib.util.find_spec("tensorrt"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are present: the target is built, not skipped")
    out, manifest, _ = exported
    entry = manifest.entry("tensorrt-fp16")
    assert entry.status == "skipped" and entry.reason and "\n" not in entry.reason
    assert not (out / "tensorrt-fp16").exists()


def test_rerun_reuses_and_changed_calibration_rebuilds(exported, model_dir):
    out, manifest, _ = exported
    with vpdsr_log_lines() as logs:
        again = export(str(model_dir), out, ["onnx", "ort-int8"], tile=TILE, calib_count=3, validation=SMALL)
    assert any(line.startswith("onnx: reused") for line in logs)
    assert any(line.startswith("ort-int8: reused") for line in logs)
    assert again.entry("onnx").created == manifest.entry("onnx").created
    with vpdsr_log_lines() as logs:
        changed = export(str(model_dir), out, ["onnx", "ort-int8"], tile=TILE, calib_count=2, validation=SMALL)
    assert any(line.startswith("onnx: reused") for line in logs), "fp32 ONNX does not depend on calibration"
    assert not any(line.startswith("ort-int8: reused") for line in logs)
    assert changed.entry("ort-int8").calibration["count"] == 2
    assert changed.entry("ort-int8").cache_key != manifest.entry("ort-int8").cache_key
    assert changed.entry("ort-int8").status == "ok", changed.entry("ort-int8").reason
