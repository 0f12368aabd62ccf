"""Model families: config.json `_class_name` dispatch, presets with a weights provider."""
from __future__ import annotations

import json

import pytest

from vpdsr.errors import CheckpointError, ConfigError
from vpdsr.models import VPDSR, from_pretrained, get_preset, load_config, save_pretrained
from vpdsr.models.checkpoint import build
from vpdsr.models.families import SRModel, family_names, family_of, get_family
from vpdsr.models.presets import _PRESETS, _WEIGHTS, register_preset


def test_vpdsr_is_a_registered_family():
    assert "VPDSR" in family_names()
    cfg = get_preset("tiny")
    assert family_of(cfg).model_cls is VPDSR
    model = build(cfg)
    assert isinstance(model, SRModel)
    assert model.input_names == ("lr", "noise")
    assert model.noise_shape((2, 3, 8, 8)) == (2, 48, 8, 8)
    assert set(model.stage_modules()) == {"encoder", "denoiser", "decoder"}


def test_config_without_class_name_is_vpdsr(tmp_path):
    model = build(get_preset("tiny"))
    save_pretrained(model, tmp_path / "m")
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    assert data["_class_name"] == "VPDSR"
    del data["_class_name"]  # checkpoints written before families existed
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    assert load_config(tmp_path / "m").preset == "tiny"
    assert isinstance(from_pretrained(tmp_path / "m"), VPDSR)


def test_unknown_family_is_one_line(tmp_path):
    model = build(get_preset("tiny"))
    save_pretrained(model, tmp_path / "m")
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    data["_class_name"] = "NoSuchNet"
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="unknown model family .*NoSuchNet"):
        from_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match="NoSuchNet"):
        get_family("NoSuchNet")


def test_preset_with_weights_provider_loads_that_directory(tmp_path):
    model = build(get_preset("tiny"), seed=7)
    save_pretrained(model, tmp_path / "w")
    calls = []

    def provider():
        calls.append(1)
        return tmp_path / "w"

    register_preset(lambda: get_preset("tiny"), name="tiny-from-provider", weights=provider)
    try:
        loaded = from_pretrained("tiny-from-provider")
        assert calls == [1]
        ref = model.state_dict()
        assert all((loaded.state_dict()[k] == v).all() for k, v in ref.items())
    finally:
        _PRESETS.pop("tiny-from-provider", None)
        _WEIGHTS.pop("tiny-from-provider", None)
