"""Export validation runs on the artifact's own runner: honest status, and `vpdsr bench` reproduces it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SMALL
from tests.export.conftest import TILE
from vpdsr.artifacts import read_entry
from vpdsr.errors import ArtifactError
from vpdsr.export import TargetSpec, export, register_target
from vpdsr.export.targets import TARGETS
from vpdsr.export.validation import ValidationConfig, holdout_images


def build_unloadable(ctx, spec, folder):
    """A target whose builder succeeds but whose graph its runner cannot load."""
    from vpdsr.export.targets import BuildResult

    (folder / "model.onnx").write_bytes(b"this is not an ONNX protobuf")
    return BuildResult(options={"graphs": {"model": "model.onnx"}})


@pytest.fixture
def odd_targets():
    specs = [register_target(TargetSpec("test-high-floor", "onnxruntime", "fp32",
                                        "vpdsr.export.onnx_targets:build_onnx", 1000.0)),
             register_target(TargetSpec("test-unloadable", "onnxruntime", "fp32",
                                        f"{__name__}:build_unloadable", 60.0))]
    yield specs
    for spec in specs:
        TARGETS.pop(spec.name, None)


def test_below_floor_and_unloadable_are_failed_not_ok(model_dir, tmp_path, odd_targets):
    manifest = export(str(model_dir), tmp_path, ["onnx", "test-high-floor", "test-unloadable"], tile=TILE,
                      validation=SMALL)
    assert manifest.entry("onnx").status == "ok"
    high = manifest.entry("test-high-floor")
    assert high.status == "failed" and "below its floor" in high.reason and "1000" in high.reason
    assert high.validation["passed"] is False and high.validation["psnr_db"] > 60  # the figures are kept
    bad = manifest.entry("test-unloadable")
    assert bad.status == "failed" and "does not run on its runner" in bad.reason and "\n" not in bad.reason
    for name in ("test-high-floor", "test-unloadable"):
        assert not (tmp_path / name).exists()  # nothing that loads is left
        with pytest.raises(ArtifactError):
            read_entry(tmp_path / name)


def test_validation_is_recorded_per_image_with_its_settings(model_dir, tmp_path):
    manifest = export(str(model_dir), tmp_path, ["onnx"], tile=TILE, validation=SMALL)
    v = manifest.entry("onnx").validation
    assert v["inputs"]["images"] == ["astronaut", "chelsea", "coffee"] and v["inputs"]["tile"] == TILE
    assert v["inputs"]["seed"] == 0 and v["inputs"]["max_size"] == 32 and v["n_inputs"] == 3
    assert set(v["psnr_db_per_image"]) == {"astronaut", "chelsea", "coffee"}
    assert v["psnr_db"] == min(v["psnr_db_per_image"].values()) >= 60


def test_holdout_images_are_8bit_lr_of_the_hr():
    (name, lr, hr), *_ = holdout_images(max_images=1, max_size=20)
    assert name == "astronaut" and lr.shape == (20, 20, 3) and hr.shape == (80, 80, 3)
    assert np.abs(lr * 255 - np.round(lr * 255)).max() < 1e-4  # 8-bit levels, what a PNG of it holds
    box = hr.reshape(20, 4, 20, 4, 3).mean(axis=(1, 3))
    assert np.abs(lr - box).mean() < 0.03


def test_bad_validation_settings_are_user_errors():
    from vpdsr.errors import InputError

    with pytest.raises(InputError, match="max_size"):
        ValidationConfig(max_size=0)


@pytest.mark.parametrize("targets", [["openvino", "openvino-int8"]])
def test_bench_reproduces_the_manifest_psnr(model_dir, tmp_path, targets):
    """`vpdsr bench` on the validation images, seed and tile gives the manifest's figures (to 0.01 dB)."""
    pytest.importorskip("openvino")
    from vpdsr.cli import main
    from vpdsr.data.io import write_image

    cfg = ValidationConfig(max_images=2, max_size=40)
    manifest = export(str(model_dir), tmp_path / "art", targets, tile=TILE, calib_count=3, validation=cfg)
    for name, lr, _ in cfg.images():
        write_image(tmp_path / "lr" / f"{name}.png", lr)
    assert main(["bench", "--model", str(model_dir), "--artifacts", str(tmp_path / "art"), "--images",
                 str(tmp_path / "lr"), "--out", str(tmp_path / "report"), "--tile", str(TILE), "--overlap", "8",
                 "--batch", "4", "--seed", "0", "--warmup", "0", "--iters", "1"]) == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "report" / "report.json").read_text())["backends"]}
    for target in targets:
        v, q = manifest.entry(target).validation, rows[target]["quality"]
        # Above 100 dB the outputs are equal up to float rounding, whose order depends on the thread count (the
        # bench's `--threads auto` probe may choose 1 thread where validation ran on the default): 0.1 dB there.
        tol = 0.01 if v["psnr_db"] < 100 else 0.1
        assert abs(q["psnr_vs_ref"] - v["psnr_db_mean"]) <= tol, (target, q["psnr_vs_ref"], v["psnr_db_mean"])
        assert abs(q["psnr_vs_ref_min"] - v["psnr_db"]) <= tol, (target, q["psnr_vs_ref_min"], v["psnr_db"])
