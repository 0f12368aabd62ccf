"""Config loading: unknown keys and bad values are one-line ConfigErrors; the CLI exits 2."""
from __future__ import annotations

import pytest
import yaml

from vpdsr.cli import main
from vpdsr.distill.config import default_config_path, load_config
from vpdsr.errors import ConfigError


def test_packaged_configs_load_and_match_the_repo_copies():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2] / "configs"
    for name in ("tiny", "tiny-perceptual", "tiny-x4plus", "base"):
        packaged = default_config_path(name)
        assert packaged.read_text() == (repo / f"{name}.yaml").read_text()
        cfg = load_config(packaged)
        assert cfg.model_config().preset == name


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"teacher": {"stepz": 3}}))
    with pytest.raises(ConfigError, match=r"teacher\.stepz") as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="losses.on_missing_weights"):
        load_config({"losses": {"on_missing_weights": "maybe"}})
    with pytest.raises(ConfigError, match="data.crop_size"):
        load_config({"data": {"crop_size": 30}})
    with pytest.raises(ConfigError, match="model.decoder"):
        load_config({"model": {"preset": "tiny", "decoder": {}}})


def test_yaml_numbers_and_no_are_read_as_meant(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("teacher:\n  optim: {lr: 2e-3}\naccelerate: {mixed_precision: no}\nexport: {anything: 1}\n")
    cfg = load_config(path)
    assert cfg.teacher.optim.lr == 2e-3 and cfg.accelerate.mixed_precision == "no"


def test_cli_bad_config_key_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  imagez: [x]\n")
    assert main(["distill", "teacher", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.imagez" in err
