"""Kill-and-resume: a run stopped at N/2 and resumed ends bit-identical to an uninterrupted run."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.distill.conftest import tiny_config
from vpdsr.distill.config import load_config
from vpdsr.distill.trainer import train_student, train_teacher


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_teacher_and_student_resume_exactly(tmp_path, train_images):
    # EMA on and grad_accum 2 in the student, so their states are part of what must survive.
    cfg_dict = tiny_config(train_images)
    cfg_dict["student"].update({"grad_accum": 2, "ema": {"enabled": True, "decay": 0.9}})
    full_t = train_teacher(load_config(cfg_dict), tmp_path / "full" / "teacher", progress=False)
    assert full_t.step == 4
    full_s = train_student(load_config(cfg_dict), full_t.model_dir, tmp_path / "full" / "student", progress=False)

    part = tmp_path / "part"
    stopped = train_teacher(load_config(cfg_dict), part / "teacher", progress=False, stop_at=2)
    assert stopped.model_dir is None and stopped.step == 2
    resumed_t = train_teacher(load_config(cfg_dict), part / "teacher", resume=True, progress=False)
    _assert_identical(_weights(full_t.model_dir), _weights(resumed_t.model_dir))

    stopped = train_student(load_config(cfg_dict), resumed_t.model_dir, part / "student", progress=False, stop_at=2)
    assert stopped.model_dir is None
    resumed_s = train_student(load_config(cfg_dict), resumed_t.model_dir, part / "student", resume=True, progress=False)
    _assert_identical(_weights(full_s.model_dir), _weights(resumed_s.model_dir))
    # the discriminator and its optimizer were restored too (they shape the student's adv term)
    _assert_identical(load_file(str(full_s.run_dir / "checkpoint" / "modules.safetensors")),
                      load_file(str(resumed_s.run_dir / "checkpoint" / "modules.safetensors")))
    rows = (part / "student" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_without_resume_the_checkpoint_is_not_used(tmp_path, train_images):
    cfg = tiny_config(train_images)
    cfg["teacher"]["steps"] = 2
    a = train_teacher(load_config(cfg), tmp_path / "a", progress=False)
    b = train_teacher(load_config(cfg), tmp_path / "a", progress=False)  # starts over, same result
    _assert_identical(_weights(a.model_dir), _weights(b.model_dir))
    assert b.step == 2
