"""GANConfig (per-architecture fields, one-line errors) and the two networks (basicsr names, shapes, contract)."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from tests.models.gan.conftest import tiny_rrdbnet, tiny_srvgg
from vpdsr.errors import CheckpointError, ConfigError
from vpdsr.models import from_pretrained, load_config, save_pretrained
from vpdsr.models.families import SRModel, family_of, get_family
from vpdsr.models.gan import GANSR, GANConfig, RRDBNet, SRVGGNetCompact


def test_config_json_holds_only_the_architectures_fields():
    rrdb = GANConfig(arch="rrdbnet", num_block=6).to_dict()
    assert rrdb["_class_name"] == "GANSR" and rrdb["num_block"] == 6
    assert "num_conv" not in rrdb and "act_type" not in rrdb
    srvgg = GANConfig(arch="srvgg", num_conv=32).to_dict()
    assert "num_block" not in srvgg and srvgg["num_conv"] == 32
    for d in (rrdb, srvgg):
        assert GANConfig.from_dict(json.loads(json.dumps(d))).to_dict() == d
    assert family_of(GANConfig()) is get_family("GANSR")


@pytest.mark.parametrize("d, match", [
    ({"arch": "esrgan"}, "`arch` must be one of"),
    ({"arch": "rrdbnet", "num_block": 0}, "`num_block` must be a positive integer"),
    ({"arch": "rrdbnet", "scale": 3}, "rrdbnet `scale` must be one of"),
    ({"arch": "srvgg", "act_type": "gelu"}, "`act_type` must be one of"),
    ({"arch": "srvgg", "num_in_ch": 1}, "`num_in_ch` == `num_out_ch`"),
    ({"arch": "srvgg", "num_block": 3}, r"\['num_block'\] do not apply to arch 'srvgg'"),
    ({"arch": "rrdbnet", "width": 3}, r"unknown field `width`"),
    ({"arch": "rrdbnet", "num_feat": "64"}, "`num_feat` must be an integer, got '64'"),
])
def test_config_errors_are_one_line(d, match):
    with pytest.raises(ConfigError, match=match) as info:
        GANConfig.from_dict({"_class_name": "GANSR", **d}, source="x/config.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("x/config.json: ")


def test_state_dict_keys_are_basicsrs():
    rrdb = tiny_rrdbnet()
    assert isinstance(rrdb, RRDBNet) and isinstance(rrdb, SRModel)
    keys = set(rrdb.state_dict())
    assert {"conv_first.weight", "body.1.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight", "conv_up2.weight",
            "conv_hr.weight", "conv_last.bias"} <= keys
    assert len([k for k in keys if k.endswith(".weight")]) == 15 * 2 + 6
    assert tuple(rrdb.state_dict()["body.0.rdb1.conv5.weight"].shape) == (8, 8 + 4 * 4, 3, 3)
    srvgg = tiny_srvgg()
    assert isinstance(srvgg, SRVGGNetCompact)
    convs = [f"body.{i}.{p}" for i in range(0, 9, 2) for p in ("weight", "bias")]
    prelus = [f"body.{i}.weight" for i in range(1, 9, 2)]
    assert sorted(srvgg.state_dict()) == sorted(convs + prelus)
    assert tuple(srvgg.state_dict()["body.8.weight"].shape) == (48, 8, 3, 3)
    assert tuple(srvgg.state_dict()["body.1.weight"].shape) == (8,)


@pytest.mark.parametrize("make, scale, multiple", [
    (lambda: tiny_rrdbnet(4), 4, 1), (lambda: tiny_rrdbnet(2), 2, 2), (lambda: tiny_rrdbnet(1), 1, 4),
    (lambda: tiny_srvgg(), 4, 1), (lambda: tiny_srvgg("relu", scale=3), 3, 1),
    (lambda: tiny_srvgg("leakyrelu"), 4, 1),
])
def test_forward_shapes_and_contract(make, scale, multiple):
    model = make()
    assert model.input_names == ("lr",) and model.latent_channels is None and model.noise_shape((1, 3, 8, 8)) is None
    assert model.size_multiple == multiple and model.scale == scale
    lr = torch.rand(2, 3, 8, 12)
    with torch.no_grad():
        raw, sr = model.raw(lr), model(lr)
    assert sr.shape == (2, 3, 8 * scale, 12 * scale)
    assert torch.equal(sr, raw.clamp(0, 1))
    with pytest.raises(ValueError, match="takes no `noise` input"):
        model(lr, torch.zeros(2, 48, 8, 12))


def test_srvgg_learns_a_residual_over_nearest_upsampling():
    model = tiny_srvgg()
    with torch.no_grad():
        model.body[-1].weight.zero_()
        model.body[-1].bias.zero_()
        lr = torch.rand(1, 3, 5, 7)
        assert torch.equal(model.raw(lr), F.interpolate(lr, scale_factor=4.0, mode="nearest"))


def test_rrdbnet_x2_pixel_unshuffles_its_input():
    model = tiny_rrdbnet(2)
    assert model.conv_first.in_channels == 12
    with torch.no_grad():
        assert model(torch.rand(1, 3, 6, 10)).shape == (1, 3, 12, 20)


def test_save_load_round_trip_and_copy(tmp_path):
    for model in (tiny_rrdbnet(), tiny_srvgg()):
        folder = save_pretrained(model, tmp_path / model.config.arch)
        assert load_config(folder).to_dict() == model.config.to_dict()
        loaded = from_pretrained(folder)
        assert type(loaded) is type(model)
        lr = torch.rand(1, 3, 6, 6)
        with torch.no_grad():
            assert torch.equal(loaded(lr), model(lr))
        clone = copy.deepcopy(model)  # GANSR.__new__ dispatches only for the base class
        assert type(clone) is type(model)
        assert all(torch.equal(v, clone.state_dict()[k]) for k, v in model.state_dict().items())


def test_wrong_shapes_in_a_model_directory_are_one_line(tmp_path):
    folder = save_pretrained(tiny_srvgg(), tmp_path / "m")
    data = json.loads((folder / "config.json").read_text())
    data["num_feat"] = 16
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="'body.0.weight' has shape"):
        from_pretrained(folder)
    assert isinstance(GANSR(GANConfig(arch="srvgg", num_feat=4, num_conv=1)), SRVGGNetCompact)
