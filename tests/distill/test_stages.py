"""End-to-end tiny runs: CLI stages, ESS with a real (tiny) CLIP file, missing CLIP weights, eval files."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from tests.distill.conftest import tiny_config
from vpdsr.cli import main


@pytest.fixture
def no_clip_anywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("VPDSR_CLIP_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_cli_all_trains_teacher_then_student_and_evaluates(tmp_path, train_images):
    from vpdsr.models import from_pretrained

    cfg = tiny_config(train_images, eval={"images": [str(train_images)], "crop_border": 4})
    cfg["teacher"]["steps"] = cfg["student"]["steps"] = 2
    out = tmp_path / "run"
    assert main(["distill", "--config", _write(tmp_path, cfg), "--out", str(out), "--no-progress"]) == 0
    student = from_pretrained(out / "student" / "model")
    assert student.schedule.steps == 4
    result = json.loads((out / "student" / "eval.json").read_text())
    assert set(result["mean"]) == {"bicubic", "teacher_4step", "teacher_1step", "student_1step"}
    assert len(result["images"]) == 2 and "student_minus_bicubic_db" in result["summary"]
    assert all(0.0 <= v["piqe"] <= 100.0 for v in result["mean"].values())
    assert "crops" not in result  # 48x64 photos hold no 128-pixel crop
    assert set(result["controls"]) == {"bicubic+noise0.005", "student_1step+noise0.005"}
    md = (out / "student" / "eval.md").read_text()
    assert "| student_1step |" in md and "full: PIQE" in md and "(control)" in md
    saved = yaml.safe_load((out / "student" / "config.yaml").read_text())
    assert saved["data"]["crop_size"] == 32
    # the student stage alone, from the teacher run directory
    assert main(["distill", "student", "--config", _write(tmp_path, cfg), "--teacher", str(out / "teacher"),
                 "--out", str(tmp_path / "s2"), "--no-progress"]) == 0


def test_missing_clip_weights_error_names_where_it_looked(tmp_path, train_images, no_clip_anywhere, capsys):
    cfg = tiny_config(train_images, losses={"ess": 0.1, "on_missing_weights": "error"})
    cfg["teacher"]["steps"] = 1
    path = _write(tmp_path, cfg)
    assert main(["distill", "teacher", "--config", path, "--out", str(tmp_path / "t"), "--no-progress"]) == 0
    code = main(["distill", "student", "--config", path, "--teacher", str(tmp_path / "t"), "--out",
                 str(tmp_path / "s"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert "CLIP weights not found" in err and str(tmp_path / "torch_home") in err and "VPDSR_CLIP_WEIGHTS" in err


def test_missing_clip_weights_skip_records_disabled_term(tmp_path, train_images, no_clip_anywhere):
    from vpdsr.distill.config import load_config
    from vpdsr.distill.trainer import train_student, train_teacher

    cfg = tiny_config(train_images, losses={"ess": 0.1, "on_missing_weights": "skip"})
    cfg["teacher"]["steps"] = 1
    cfg["student"]["steps"] = 2
    t = train_teacher(load_config(cfg), tmp_path / "t", progress=False)
    s = train_student(load_config(cfg), t.model_dir, tmp_path / "s", progress=False)
    assert "ess" in s.disabled_terms
    saved = yaml.safe_load((tmp_path / "s" / "config.yaml").read_text())
    assert "CLIP weights not found" in saved["disabled_terms"]["ess"]
    rows = list(csv.DictReader((tmp_path / "s" / "log.csv").open()))
    assert rows and all(r["ess"] == "disabled" for r in rows)


def test_student_with_ess_from_a_tiny_clip_file(tmp_path, train_images, clip_weights):
    from vpdsr.distill.config import load_config
    from vpdsr.distill.trainer import train_student, train_teacher

    cfg = tiny_config(train_images, losses={"ess": 0.1, "clip_weights": str(clip_weights), "adv": 0.0})
    cfg["teacher"]["steps"] = 1
    cfg["student"]["steps"] = 2
    t = train_teacher(load_config(cfg), tmp_path / "t", progress=False)
    s = train_student(load_config(cfg), t.model_dir, tmp_path / "s", progress=False)
    rows = list(csv.DictReader((tmp_path / "s" / "log.csv").open()))
    assert not s.disabled_terms
    assert all(0.0 <= float(r["ess"]) < 2.0 for r in rows)
