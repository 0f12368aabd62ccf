"""`vpdsr distill ablate` and `vpdsr distill eval`: one student per term, the table, the eval files."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.distill.conftest import tiny_config
from vpdsr.cli import main
from vpdsr.distill.ablation import variants
from vpdsr.distill.config import load_config


@pytest.fixture
def no_clip_anywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("VPDSR_CLIP_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _cfg(train_images, **losses):
    cfg = tiny_config(train_images, eval={"images": [str(train_images)], "crop_size": 32, "noise_control": 0})
    cfg["teacher"]["steps"] = 2
    cfg["student"]["steps"] = 2
    cfg["losses"].update({"hfp": 0.1, "adv": 0.01, "feature_match": 0.5, "grid": 2.0, "ess": 0.1,
                          "on_missing_weights": "error",
                          **losses})
    return cfg


def test_variants_switch_terms_off_and_explain_absent_rows(train_images):
    cfg = load_config(_cfg(train_images, hfp=0.0))
    plan = {name: (v, note) for name, _, v, note in variants(cfg, clip_missing="CLIP weights not found; looked at X")}
    assert list(plan) == ["distill", "+hfp", "+adv", "+ess", "all"]
    assert plan["+hfp"][0] is None and "`losses.hfp` is 0" in plan["+hfp"][1]
    assert plan["+ess"][0] is None and plan["+ess"][1].startswith("no CLIP weights: CLIP weights not found")
    d, adv, every = plan["distill"][0].losses, plan["+adv"][0].losses, plan["all"][0].losses
    assert (d.hfp, d.adv, d.feature_match, d.grid, d.ess, d.distill, d.recon) == (0, 0, 0, 0, 0, 1.0, 1.0)
    assert (adv.adv, adv.feature_match, adv.grid, adv.hfp) == (0.01, 0.5, 2.0, 0)
    assert (every.adv, every.ess) == (0.01, 0.0) and plan["all"][1] == "without ESS (no CLIP weights)"
    with_clip = {name: v for name, _, v, _ in variants(cfg, clip_missing=None)}
    assert with_clip["+ess"].losses.ess == 0.1 and with_clip["all"].losses.ess == 0.1


def test_ablate_trains_each_variant_and_writes_the_table(tmp_path, train_images, no_clip_anywhere, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_cfg(train_images)))
    out = tmp_path / "ablate"
    assert main(["distill", "ablate", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    table = json.loads((out / "ablation.json").read_text())
    names = [r["name"] for r in table["rows"]]
    assert names == ["bicubic", "teacher_4step", "distill", "+hfp", "+adv", "+ess", "all"]
    rows = {r["name"]: r for r in table["rows"]}
    assert rows["+ess"]["status"] == "absent" and "no CLIP weights" in rows["+ess"]["reason"]
    for name in ("distill", "+hfp", "+adv", "all"):
        assert rows[name]["status"] == "ok"
        assert {"psnr_y", "ssim_y", "piqe"} <= set(rows[name]["full"]) and "piqe" in rows[name]["crops"]
        assert (out / rows[name]["folder"] / "model" / "model.safetensors").is_file()
    assert (out / "teacher" / "model" / "config.json").is_file()  # no teacher given: one was trained
    # the variants differ (the terms change the student), the reference rows are the same for all
    assert rows["distill"]["full"]["psnr_y"] != rows["+adv"]["full"]["psnr_y"]
    md = (out / "ablation.md").read_text()
    assert "| +ess | absent: no CLIP weights" in md and "crops: PIQE" in md and md in printed.out
    assert "ablate [5/5] all" in printed.err
    # resume reads finished variants back instead of training them again
    before = (out / "distill" / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(["distill", "ablate", "--config", str(path), "--out", str(out), "--teacher", str(out / "teacher"),
                 "--resume", "--no-progress"]) == 0
    assert (out / "distill" / "model" / "model.safetensors").stat().st_mtime_ns == before
    assert "done before" in capsys.readouterr().err


def test_eval_stage_scores_a_model_and_needs_one(tmp_path, train_images, capsys):
    cfg = _cfg(train_images, ess=0.0)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["distill", "teacher", "--config", str(path), "--out", str(tmp_path / "t"), "--no-progress"]) == 0
    out = tmp_path / "eval"
    assert main(["distill", "eval", "--config", str(path), "--model", str(tmp_path / "t" / "model"), "--teacher",
                 str(tmp_path / "t"), "--out", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result["mean"]) == {"bicubic", "teacher_4step", "teacher_1step", "student_1step"}
    assert "PIQE" in capsys.readouterr().out
    assert main(["distill", "eval", "--config", str(path), "--out", str(out)]) == 2
    assert "needs `--model DIR`" in capsys.readouterr().err


def test_shipped_teacher_by_name_and_the_student_named_after_its_preset(tmp_path, train_images):
    from vpdsr.distill.api import run_distill
    from vpdsr.distill.teachers import resolve_model_dir
    from vpdsr.errors import CheckpointError
    from vpdsr.models.checkpoint import load_config as load_model_config

    assert resolve_model_dir("tiny-teacher").name == "tiny-teacher"
    with pytest.raises(CheckpointError, match="shipped checkpoint .*tiny-teacher"):
        resolve_model_dir("no-such-model")
    cfg = tiny_config(train_images)
    cfg.update(model={"preset": "tiny-perceptual"}, eval={"enabled": False})
    cfg["student"].update(teacher="tiny-teacher", steps=1)
    result = run_distill(cfg, tmp_path / "run", progress=False)
    assert result.teacher is None and not (tmp_path / "run" / "teacher").exists()  # no teacher trained
    assert load_model_config(result.model_dir).preset == "tiny-perceptual"
