"""`vpdsr distill quantize`: a fake-quantized copy trained against its fp32 original, then exported.

Test-made models in the real format (a small SRVGG, a VPDSR with noise), a few steps, small validation.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import SMALL
from tests.export.conftest import tiny_model
from tests.models.gan.conftest import tiny_srvgg
from vpdsr.distill.quantize import QuantizeConfig, quantize
from vpdsr.errors import ConfigError, InputError
from vpdsr.models import save_pretrained


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path / "cache"))  # the teacher-output cache


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory):
    return save_pretrained(tiny_srvgg(), tmp_path_factory.mktemp("fp32") / "srvgg")


def _cfg(model, **kw) -> QuantizeConfig:
    values = {"steps": 4, "crop_size": 64, "batch_size": 2, "tile": 16, "calib_count": 2, "checkpoint_every": 2,
              "threads": 1, **kw}
    return QuantizeConfig(model=str(model), **values)


def test_trains_the_copy_and_exports_validated_int8_artifacts(gan_dir, tmp_path):
    from vpdsr.artifacts import Manifest
    from vpdsr.export.qat_model import load
    from vpdsr.runtimes import load as load_runner

    manifest = quantize(_cfg(gan_dir), tmp_path / "q", validation=SMALL, progress=False)
    assert {a.name for a in manifest.artifacts} == {"ort-int8", "openvino-int8"}
    for a in manifest.artifacts:
        assert a.status == "ok", a.reason
        assert a.validation["reference"] == "torch-fp32" and a.validation["psnr_db"] > 30
        assert a.options["quantization"] == "qat" and a.files
        with load_runner(a, tmp_path / "q" / a.name):
            pass  # loads like any artifact (hashes checked)
    assert Manifest.read(tmp_path / "q").artifacts
    trained, _, record = load(tmp_path / "q" / "model")
    init, _, _ = load(tmp_path / "q" / "train" / "init")
    moved = [k for k, v in trained.state_dict().items() if v.dtype.is_floating_point
             and not torch.equal(v, init.state_dict()[k])]
    assert any("weight" in k and "nncf" not in k for k in moved), "weights trained"
    assert any("nncf" in k for k in moved), "quantizer ranges trained"
    assert record["training"]["steps"] == 4
    assert json.loads((tmp_path / "q" / "quantize.json").read_text())["model"] == str(gan_dir)
    assert (tmp_path / "q" / "train" / "log.csv").read_text().count("\n") >= 2


def test_resume_is_bit_exact(gan_dir, tmp_path):
    cfg = _cfg(gan_dir, targets="ort-int8")
    quantize(cfg, tmp_path / "straight", validation=SMALL, progress=False)
    assert quantize(cfg, tmp_path / "resumed", validation=SMALL, progress=False, stop_at=2) is None
    quantize(cfg, tmp_path / "resumed", validation=SMALL, progress=False, resume=True)
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings(gan_dir, tmp_path):
    quantize(_cfg(gan_dir, targets="ort-int8"), tmp_path / "q", validation=SMALL, progress=False, stop_at=2)
    with pytest.raises(ConfigError, match="other settings"):
        quantize(_cfg(gan_dir, targets="ort-int8", lr=1e-3), tmp_path / "q", resume=True, progress=False)


def test_a_model_with_noise(tmp_path):
    """A VPDSR student: the teacher (its fp32 self) and the copy see the same noise."""
    model_dir = save_pretrained(tiny_model(), tmp_path / "vpdsr")
    manifest = quantize(_cfg(model_dir, steps=2, targets="ort-int8"), tmp_path / "q", validation=SMALL,
                        progress=False)
    assert [a.status for a in manifest.artifacts] == ["ok"], manifest.artifacts[0].reason


def test_bad_settings_are_one_line_errors(gan_dir, tmp_path):
    with pytest.raises(InputError, match="no quantization-aware form"):
        quantize(_cfg(gan_dir, targets="onnx-fp16"), tmp_path / "a")
    with pytest.raises(ConfigError, match="crop_size"):
        quantize(_cfg(gan_dir, crop_size=66), tmp_path / "b")
    model_dir = save_pretrained(tiny_model(), tmp_path / "vpdsr")
    with pytest.raises(ConfigError, match="target_crops"):
        quantize(_cfg(model_dir, target_crops=4), tmp_path / "c")


def test_cli(gan_dir, tmp_path, capsys):
    from vpdsr.cli import main

    assert main(["distill", "quantize", "--out", str(tmp_path / "x")]) == 2
    assert "needs `--model MODEL`" in capsys.readouterr().err
    code = main(["distill", "quantize", "--model", str(gan_dir), "--out", str(tmp_path / "q"), "--steps", "2",
                 "--targets", "ort-int8", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "ort-int8: ok" in out and "dB worst vs torch fp32" in out


def test_budget_advice_names_the_command():
    from vpdsr.export.budget import qat_advice

    slow = {"budget": "psnr-vs-ref:40", "kept_float_added": ["a", "b"],
            "latency_ms": {"fp32": 2282.0, "all_int8": 979.0, "final": 2284.0}}
    line = qat_advice("ort-int8", slow, "realesrgan-x4plus", "art-qat")
    assert "100% of INT8's speed" in line and "vpdsr distill quantize --model realesrgan-x4plus" in line
    assert "--targets ort-int8" in line and "\n" not in line
    cheap = {**slow, "latency_ms": {"fp32": 2282.0, "all_int8": 979.0, "final": 1400.0}}
    assert qat_advice("ort-int8", cheap, "m", "o") is None
    assert qat_advice("modelopt-int8", slow, "m", "o") is None
    assert "cannot meet the budget" in qat_advice("openvino-int8", None, "m", "o", unreachable=True)
