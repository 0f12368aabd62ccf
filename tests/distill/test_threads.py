"""Thread counts: the start-up probe, `num_threads: auto`, and the side-by-side measurement."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.distill.conftest import tiny_config
from vpdsr.distill.config import load_config
from vpdsr.distill.threads import parse_num_threads, probe_threads
from vpdsr.env import available_cpus
from vpdsr.errors import ConfigError


@pytest.mark.parametrize("seconds, chosen", [({1: 0.03, 2: 0.05}, 1), ({1: 0.03, 2: 0.02}, 2)])
def test_probe_times_each_count_and_keeps_the_fastest(seconds, chosen):
    """The step's cost per thread count is what it says on an injected clock: the probe keeps the fastest,
    whatever this machine's cores and load."""
    before = torch.get_num_threads()
    calls, now = [], [0.0]

    def step():
        calls.append(torch.get_num_threads())
        torch.randn(64, 64) @ torch.randn(64, 64)  # a real step at that count
        now[0] += seconds[torch.get_num_threads()]

    try:
        result = probe_threads(step, (1, 2), repeats=2, clock=lambda: now[0])
        assert calls == [1, 1, 1, 2, 2, 2]  # one warm-up and two timed calls per count
        assert result.seconds == pytest.approx(seconds) and result.chosen == chosen
        assert torch.get_num_threads() == chosen
        assert result.summary().startswith(f"{chosen} thread(s)") and "2: " in result.summary()
    finally:
        torch.set_num_threads(before)


def test_num_threads_values():
    assert parse_num_threads("auto") == "auto" and parse_num_threads(2) == 2 and parse_num_threads("3") == 3
    for bad in (-1, "fast", True, 1.5):
        with pytest.raises(ConfigError, match="num_threads"):
            parse_num_threads(bad)
    with pytest.raises(ConfigError, match="num_threads"):
        load_config({"accelerate": {"num_threads": "many"}})


def test_auto_probes_records_the_count_and_trains_as_that_count_would(tmp_path, train_images):
    from vpdsr.distill.trainer import train_teacher

    before = torch.get_num_threads()
    auto = train_teacher(load_config(tiny_config(train_images, accelerate={"cpu": True, "num_threads": "auto"})),
                         tmp_path / "auto", progress=False)
    probed = json.loads((tmp_path / "auto" / "threads.json").read_text())
    assert set(probed["seconds_per_probe_step"]) == {str(n) for n in range(1, available_cpus() + 1)}
    n = probed["num_threads"]
    pinned = train_teacher(load_config(tiny_config(train_images, accelerate={"cpu": True, "num_threads": n})),
                           tmp_path / "pinned", progress=False)
    a, b = (load_file(str(r.model_dir / "model.safetensors")) for r in (auto, pinned))
    assert all(torch.equal(a[k], b[k]) for k in a)  # probing changed nothing but the count
    assert not (tmp_path / "pinned" / "threads.json").exists()
    torch.set_num_threads(before)


def test_measure_reports_each_count_and_whether_its_weights_match(tmp_path, train_images):
    """1 and 2 threads side by side; 2 threads run on a single CPU too (oversubscribed), so no skip."""
    from vpdsr.distill.thread_timing import measure
    from vpdsr.distill.trainer import train_teacher

    cfg = tiny_config(train_images)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    teacher = train_teacher(load_config(cfg), tmp_path / "t", progress=False).model_dir
    before = torch.get_num_threads()
    rows = measure(path, steps=2, student_steps=2, rounds=1, teacher=teacher)
    torch.set_num_threads(before)
    assert [r["threads"] for r in rows] == [1, 2]
    for r in rows:
        assert r["teacher_s_per_step"] > 0 and r["student_s_per_step"] > 0 and len(r["teacher_s_all"]) == 1
    assert rows[0]["teacher_identical"] is True and rows[0]["student_identical"] is True
