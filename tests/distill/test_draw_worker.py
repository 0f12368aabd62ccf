"""The draw worker (vpdsr.distill.draw_worker): the same weights as drawing in-process, resumed runs
included; a worker that fails costs a warning and changes nothing; frames keep every bit."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from tests.distill.conftest import tiny_config
from vpdsr.distill import draw_worker
from vpdsr.distill.config import load_config
from vpdsr.distill.draw_worker import DrawSpec, StepDraws, decode_frame, encode_frame
from vpdsr.distill.trainer import train_student, train_teacher


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _config(images: Path, mode: str) -> dict:
    cfg = tiny_config(images)
    cfg["student"].update({"grad_accum": 2})  # two draws per step: the worker must keep their order
    cfg["accelerate"] = {**cfg["accelerate"], "num_threads": 1, "draw_worker": mode}
    return cfg


def test_worker_draws_give_the_weights_of_in_process_draws(tmp_path, train_images, caplog):
    off = _config(train_images, "off")
    on = _config(train_images, "on")
    t_off = train_teacher(load_config(off), tmp_path / "off" / "teacher", progress=False)
    s_off = train_student(load_config(off), t_off.model_dir, tmp_path / "off" / "student", progress=False)
    t_on = train_teacher(load_config(on), tmp_path / "on" / "teacher", progress=False)
    _assert_identical(_weights(t_off.run_dir), _weights(t_on.run_dir))
    # the student stopped at step 2 (its worker drew from step 1), then resumed (the worker starts at 3)
    part = tmp_path / "on" / "student"
    train_student(load_config(on), t_on.model_dir, part, progress=False, stop_at=2)
    resumed = train_student(load_config(on), t_on.model_dir, part, resume=True, progress=False)
    _assert_identical(_weights(s_off.run_dir), _weights(resumed.run_dir))
    assert "draw worker stopped" not in caplog.text  # the worker ran: no fallback
    import threading

    # the stopped run's worker was ahead of it: its reader thread was drained and ended, not left blocked
    assert not [t.name for t in threading.enumerate() if "_read_frames" in t.name]


def test_a_failing_worker_falls_back_to_the_same_draws(tmp_path, caplog):
    from vpdsr.models import build
    from vpdsr.models.presets import get_preset

    def draw(step: int, micro: int):
        return torch.full((2,), float(step * 10 + micro)), None

    model = build(get_preset("tiny"), seed=0)
    spec = DrawSpec("student", load_config(None).to_dict(), "", False, teacher_dir=str(tmp_path / "no-teacher"))
    with StepDraws(draw, spec, model, last_step=3, micros=[0, 1], label="student") as draws:
        got = [draws(s, m) for s in (1, 2, 3) for m in (0, 1)]
        assert not draws.in_worker
    for (value, none), (s, m) in zip(got, [(s, m) for s in (1, 2, 3) for m in (0, 1)]):
        assert torch.equal(value, torch.full((2,), float(s * 10 + m))) and none is None
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "vpdsr.distill.draw_worker" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "student: the draw worker stopped" in warnings[0], warnings
    assert "no-teacher" in warnings[0]


def test_frames_keep_dtype_shape_bits_and_none():
    g = torch.Generator().manual_seed(0)
    value = (torch.randn(2, 3, 5, 7, generator=g), None, torch.arange(6, dtype=torch.int64).view(2, 3).t())
    (step, micro), back = decode_frame(encode_frame(12, 3, value))
    assert (step, micro) == (12, 3) and back[1] is None and len(back) == 3
    for a, b in ((value[0], back[0]), (value[2], back[2])):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize(("mode", "device", "precision", "steps", "processes", "expected"), [
    ("auto", "cpu", "no", draw_worker.AUTO_MIN_STEPS, 1, True),
    ("auto", "cpu", "no", draw_worker.AUTO_MIN_STEPS - 1, 1, False),  # too short to earn the start back
    ("auto", "cpu", "no", 1000, 2, False),  # DDP ranks use the cores
    ("on", "cpu", "no", 1, 2, True),
    ("on", "cpu", "bf16", 1000, 1, False),  # autocast would make the draws differ
    ("on", "cuda", "no", 1000, 1, False),
    ("off", "cpu", "no", 1000, 1, False),
])
def test_when_a_worker_is_wanted(monkeypatch, mode, device, precision, steps, processes, expected):
    monkeypatch.setattr("vpdsr.env.available_cpus", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    cfg = SimpleNamespace(accelerate=SimpleNamespace(draw_worker=mode, mixed_precision=precision))
    acc = SimpleNamespace(device=torch.device(device), num_processes=processes)
    assert draw_worker.wanted(cfg, acc, steps) is expected


def test_draw_worker_choice_is_checked(train_images):
    from vpdsr.errors import ConfigError

    cfg = tiny_config(train_images)
    cfg["accelerate"]["draw_worker"] = "sometimes"
    with pytest.raises(ConfigError, match="draw_worker"):
        load_config(cfg)
