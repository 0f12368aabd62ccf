"""Official Real-ESRGAN `.pth` layout (basicsr keys under params_ema / params), made by the tests."""
from __future__ import annotations

import pytest
import torch

from tests.models.gan.conftest import tiny_rrdbnet, tiny_srvgg
from vpdsr.errors import CheckpointError
from vpdsr.models import from_pretrained
from vpdsr.models.gan.convert import convert_pth, load_pth


def _save_basicsr(model, path, key="params_ema", extra=None):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({key: state, **(extra or {})}, path)  # what basicsr's save_network writes
    return path


def _same_output(a, b) -> bool:
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        return torch.equal(a(lr), b(lr))


@pytest.mark.parametrize("make, kwargs", [
    (lambda: tiny_rrdbnet(4), {}), (lambda: tiny_rrdbnet(2), {}), (lambda: tiny_rrdbnet(1), {}),
    (lambda: tiny_srvgg(), {}), (lambda: tiny_srvgg("relu"), {"act_type": "relu"}),
    (lambda: tiny_srvgg("leakyrelu", scale=2), {"act_type": "leakyrelu"}),
])
def test_config_is_recognised_from_keys_and_shapes(tmp_path, make, kwargs):
    model = make()
    loaded = load_pth(_save_basicsr(model, tmp_path / "net.pth"), **kwargs)
    assert loaded.config.to_dict() == {**model.config.to_dict(), "preset": "custom"}
    assert _same_output(loaded, model)


def test_params_ema_wins_over_params_and_prefixes_go(tmp_path):
    ema, plain = tiny_rrdbnet(seed=1), tiny_rrdbnet(seed=2)
    path = tmp_path / "RealESRGAN_x4plus.pth"
    wrapped = {f"module.{k}": v for k, v in ema.state_dict().items()}  # DataParallel prefix
    torch.save({"params": plain.state_dict(), "params_ema": wrapped}, path)
    assert _same_output(load_pth(path), ema)
    torch.save({"params": plain.state_dict()}, path)
    assert _same_output(load_pth(path), plain)


def test_convert_writes_a_model_directory_with_hashes(tmp_path):
    model = tiny_srvgg()
    pth = _save_basicsr(model, tmp_path / "x.pth")
    out = convert_pth(pth, tmp_path / "out")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    import json

    record = json.loads((out / "convert.json").read_text())
    assert record["converter"] == "realesrgan-pth" and len(record["sources"]["pth"]["sha256"]) == 64
    assert record["num_parameters"] == model.num_parameters()
    assert _same_output(from_pretrained(out), model)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": tiny_srvgg().state_dict(), "opt": torch.optim.SGD([torch.zeros(1)], lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="refused: it needs more than tensors"):
        load_pth(path)


def test_mismatches_are_one_line(tmp_path):
    model = tiny_rrdbnet()
    state = model.state_dict()
    state.pop("conv_hr.weight")
    torch.save({"params_ema": state}, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"1 missing \(e.g. conv_hr.weight\)"):
        load_pth(tmp_path / "a.pth")
    state = tiny_rrdbnet().state_dict()
    state["conv_body.weight"] = torch.zeros(8, 8, 1, 1)
    torch.save({"params_ema": state}, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=r"'conv_body.weight' has shape \(8, 8, 1, 1\)"):
        load_pth(tmp_path / "b.pth")
    torch.save({"params_ema": {"encoder.weight": torch.zeros(1)}}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="neither RRDBNet .* nor SRVGGNetCompact"):
        load_pth(tmp_path / "c.pth")
    _save_basicsr(tiny_srvgg(), tmp_path / "d.pth")
    with pytest.raises(CheckpointError, match="`--arch rrdbnet` asked for, but the keys are those of srvgg"):
        load_pth(tmp_path / "d.pth", arch="rrdbnet")
    with pytest.raises(CheckpointError, match=r"`--scale 2` asked for, but the last conv makes x4"):
        load_pth(tmp_path / "d.pth", scale=2)
    with pytest.raises(CheckpointError, match="has PReLU slopes .* but `--act-type relu`"):
        load_pth(tmp_path / "d.pth", act_type="relu")
    _save_basicsr(tiny_srvgg("relu"), tmp_path / "e.pth")
    with pytest.raises(CheckpointError, match="no PReLU slopes .*pass `--act-type relu` or `leakyrelu`"):
        load_pth(tmp_path / "e.pth")
