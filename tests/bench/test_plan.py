"""The bench plan: the config read once and left as it was, every tiling decided once, the model loaded once."""
from __future__ import annotations

import dataclasses

import pytest

from vpdsr.bench.backends import UNTUNED_TILING
from vpdsr.bench.config import BenchConfig
from vpdsr.bench.harness import run_bench
from vpdsr.bench.latency import LatencyConfig
from vpdsr.bench.plan import NOISE_CACHE_MB, make_plan
from vpdsr.errors import ConfigError
from vpdsr.runtimes.autotile import AutoTileConfig
from vpdsr.runtimes.tiling import TileConfig


def config(model_dir, images, artifacts=None, **kw) -> BenchConfig:
    lr, hr = images
    kw.setdefault("latency", LatencyConfig(warmup=0, iters=1, threads=1))
    return BenchConfig(model=str(model_dir), images=str(lr), hr=str(hr), artifacts=artifacts and str(artifacts),
                       gan_baseline=None, **kw)


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """Every model loaded from disk (vpdsr.models.from_pretrained), in order."""
    import vpdsr.models

    seen: list[str] = []
    real = vpdsr.models.from_pretrained

    def counting(name_or_path, *args, **kwargs):
        seen.append(str(name_or_path))
        return real(name_or_path, *args, **kwargs)

    monkeypatch.setattr(vpdsr.models, "from_pretrained", counting)
    return seen


def test_config_is_frozen_and_backends_a_tuple(bench_model_dir, bench_images):
    cfg = config(bench_model_dir, bench_images, backends=["torch-fp32"])
    assert cfg.backends == ("torch-fp32",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.tile = 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.latency.threads = 2


def test_each_row_gets_its_tiling_once(bench_model_dir, bench_images, bench_artifacts):
    auto = make_plan(config(bench_model_dir, bench_images, bench_artifacts, backends=("onnx", "onnx@untuned")))
    assert [b.spec.name for b in auto.backends] == ["torch-fp32", "onnx", "onnx@untuned"]
    ref, onnx, untuned = auto.backends
    assert ref.tiles == onnx.tiles == AutoTileConfig(overlap=8, max_batch=4) and auto.baseline_tile is None
    assert untuned.tiles == TileConfig(*UNTUNED_TILING) and untuned.noise_cache_mb == 0 and untuned.untuned
    assert onnx.noise_cache_mb == NOISE_CACHE_MB and not onnx.untuned
    from vpdsr.env import available_cpus

    assert onnx.peak_threads == 1 and untuned.peak_threads == available_cpus()

    fixed = make_plan(config(bench_model_dir, bench_images, bench_artifacts, backends=("onnx",), tile=16))
    assert all(b.tiles == TileConfig(16, 8, 4) for b in fixed.backends) and fixed.baseline_tile == 16


def test_bad_tiling_is_refused_before_the_images_are_read(bench_model_dir, tmp_path):
    cfg = BenchConfig(model=str(bench_model_dir), images=str(tmp_path / "missing"), tile=16, overlap=16)
    with pytest.raises(ConfigError, match="overlap"):
        make_plan(cfg)


def test_run_leaves_the_config_as_given_and_loads_the_model_once(bench_model_dir, bench_images, loads):
    cfg = config(bench_model_dir, bench_images, backends=("torch-fp32", "torch-bf16"), tile=16,
                 latency=LatencyConfig(warmup=0, iters=1, threads="auto"))
    before = dataclasses.replace(cfg)
    report = run_bench(cfg).report
    assert cfg == before and cfg.latency.threads == "auto"  # the probe's count went into the plan, not the config
    assert report["latency_config"]["threads"] == report["environment"]["threads_probe"]["threads"]
    # two torch rows, the FLOP counter and the model's stats: one load
    assert loads.count(str(bench_model_dir)) == 1
    assert report["backends"][0]["status"] == "ok" and report["model"]["parameters"] > 0
    assert report["roofline"]["flops_error"] is None and report["backends"][0]["roofline"]["gflop_per_image"] > 0


def test_a_model_that_does_not_load_fails_its_torch_rows_only(bench_images, bench_artifacts, tmp_path):
    cfg = config(tmp_path / "gone", bench_images, bench_artifacts, backends=("onnx", "torch-bf16"), reference="onnx",
                 tile=16)
    report = run_bench(cfg).report
    rows = {b["name"]: b for b in report["backends"]}
    assert rows["onnx"]["status"] == "ok"
    assert rows["torch-bf16"]["status"] == "failed" and "load error" in rows["torch-bf16"]["reason"]
    assert "parameters" not in report["model"] and report["roofline"]["flops_error"] == "no model to count"


def test_the_teachers_engines_are_planned_once_with_the_students_images_and_metrics(bench_model_dir, bench_images,
                                                                                     bench_artifacts, loads):
    teacher = str(bench_model_dir)
    plan = make_plan(config(bench_model_dir, bench_images, backends=("torch-fp32",), teacher=teacher,
                            teacher_artifacts=str(bench_artifacts)))
    assert [b.spec.name for b in plan.backends] == ["torch-fp32"]
    sub = plan.teacher
    assert [b.spec.name for b in sub.backends][:2] == ["torch-fp32", "onnx"]
    assert sub.images is plan.images and sub.suite is plan.suite and sub.latency == plan.latency  # read once
    assert sub.model is plan.teacher_model and plan.teacher_model.source == teacher and sub.teacher is None
    assert sub.policy.require == frozenset() and sub.baselines.gan is None and sub.baselines.teacher is None
    assert loads == [teacher, teacher]  # the benched model and the teacher, each once (here the same folder)
    assert make_plan(config(bench_model_dir, bench_images, teacher=teacher)).teacher is None  # no artifacts: a row
