"""`vpdsr distill --resume` over a corrupt checkpoint: one line, exit 2, before any training starts."""
from __future__ import annotations

import pytest
import yaml

from tests.distill.conftest import tiny_config
from vpdsr.cli import main
from vpdsr.distill.config import load_config
from vpdsr.distill.trainer import train_teacher
from vpdsr.errors import CheckpointError


@pytest.fixture
def stopped_run(tmp_path, train_images):
    """A real teacher run stopped after 2 of 4 steps (its checkpoint is what --resume reads), and its config."""
    cfg = tiny_config(train_images)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    train_teacher(load_config(cfg), tmp_path / "run", progress=False, stop_at=2)
    return tmp_path / "run", config


def resume(capsys, run, config) -> str:
    rc = main(["distill", "teacher", "--config", str(config), "--out", str(run), "--resume", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("vpdsr distill: error:"), err
    return err[0]


@pytest.mark.parametrize("damage", ["truncate-modules", "garbage-optimizers", "missing-rng"])
def test_corrupt_tensor_file_is_one_line(capsys, stopped_run, damage):
    run, config = stopped_run
    ckpt = run / "checkpoint"
    target = {"truncate-modules": "modules", "garbage-optimizers": "optimizers", "missing-rng": "rng"}[damage]
    path = ckpt / f"{target}.safetensors"
    if damage == "truncate-modules":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage-optimizers":
        path.write_bytes(b"\x00" * 64)
    else:
        path.unlink()
    msg = resume(capsys, run, config)
    assert path.name in msg and "corrupt or missing" in msg
    assert not (run / "model").exists(), "nothing was trained"


def test_state_json_that_is_not_json(capsys, stopped_run):
    run, config = stopped_run
    (run / "checkpoint" / "state.json").write_text('{"step": 2, ')
    assert "state.json: corrupt training checkpoint" in resume(capsys, run, config)


def test_checkpoint_of_another_model_is_a_checkpoint_error(stopped_run, train_images, tmp_path):
    run, _ = stopped_run
    cfg = tiny_config(train_images)
    cfg["model"]["denoiser"]["block_out_channels"] = [8, 8]  # the saved tensors do not fit this model
    cfg["model"]["denoiser"]["norm_num_groups"] = 4
    with pytest.raises(CheckpointError, match="does not fit this run") as err:
        train_teacher(load_config(cfg), run, resume=True, progress=False)
    assert "\n" not in str(err.value)
