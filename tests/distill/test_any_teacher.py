"""Any model as teacher (vpdsr.distill.teachers): a GAN (a small SRVGG saved as the converter saves one)
and a ResShift model teach a VPDSR student with their outputs on the LR crops, cached on disk."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.distill.conftest import tiny_config
from vpdsr.cli import main
from vpdsr.distill.config import load_config
from vpdsr.distill.trainer import train_student
from vpdsr.models import build, save_pretrained
from vpdsr.models.gan.config import GANConfig


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory) -> Path:
    # random weights: what matters here is that the student learns this network's outputs, whatever they are
    cfg = GANConfig(preset="test-srvgg", arch="srvgg", num_feat=8, num_conv=2, act_type="prelu")
    return save_pretrained(build(cfg, seed=7), tmp_path_factory.mktemp("gan") / "teacher")


def gan_config(images: Path, cache: Path, **student) -> dict:
    cfg = tiny_config(images, losses={"distill": 1.0, "distill_space": "pixel", "distill_kind": "l1", "recon": 0.0,
                                      "hfp": 0.1, "adv": 0.01, "ess": 0.0})
    cfg["student"].update({"init_from_teacher": False, "targets": "outputs", "target_cache": str(cache), **student})
    return cfg


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.model_dir / "model.safetensors"))


def _identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.safetensors"))


def test_gan_teacher_outputs_are_the_targets_and_are_cached(tmp_path, train_images, gan_dir):
    from vpdsr.distill.teachers import plan_teacher

    cache = tmp_path / "cache"
    cfg = load_config(gan_config(train_images, cache))
    first = train_student(cfg, gan_dir, tmp_path / "a", progress=False)
    entries = _entries(cache)
    # 4 steps x batch 2: one entry per LR crop, in one folder per teacher
    assert len(entries) == 8 and len({e.parent.parent for e in entries}) == 1
    # an entry holds exactly the teacher's output on that crop
    teacher = plan_teacher(cfg, gan_dir).load(cfg, "cpu")
    from vpdsr.distill.data import CropDataset

    data = CropDataset(cfg.data.images, cfg.data.crop_size, cfg.degradation_config(), cfg.seed, cfg.data.augment)
    lr = data.batch(1, 0, cfg.data.batch_size, "student").lr[:1]
    cached = teacher.cache.get(teacher.cache.key(lr))
    assert cached is not None and torch.equal(cached, teacher.model(lr).clamp(0, 1))
    # a repeated run reads every target from the cache and trains the same weights
    before = {e: e.stat().st_mtime_ns for e in entries}
    again = train_student(load_config(gan_config(train_images, cache)), gan_dir, tmp_path / "b", progress=False)
    assert {e: e.stat().st_mtime_ns for e in _entries(cache)} == before
    assert _identical(_weights(first), _weights(again))
    # and the student moved toward the teacher: its L1 to the teacher's outputs fell
    rows = (tmp_path / "a" / "log.csv").read_text().splitlines()
    assert float(rows[-1].split(",")[3]) < float(rows[1].split(",")[3])


def test_a_corrupt_cache_entry_is_computed_again(tmp_path, train_images, gan_dir, caplog):
    cache = tmp_path / "cache"
    first = train_student(load_config(gan_config(train_images, cache)), gan_dir, tmp_path / "a", progress=False)
    victim = _entries(cache)[0]
    victim.write_bytes(victim.read_bytes()[:50])  # truncated
    again = train_student(load_config(gan_config(train_images, cache)), gan_dir, tmp_path / "b", progress=False)
    assert "dropped" in caplog.text and str(victim) in caplog.text
    assert _identical(_weights(first), _weights(again)) and len(_entries(cache)) == 8


def test_another_teacher_has_other_entries(tmp_path, train_images, gan_dir):
    cache = tmp_path / "cache"
    other = save_pretrained(build(GANConfig(preset="other", arch="srvgg", num_feat=8, num_conv=2), seed=8),
                            tmp_path / "other")
    train_student(load_config(gan_config(train_images, cache, steps=1)), gan_dir, tmp_path / "a", progress=False)
    train_student(load_config(gan_config(train_images, cache, steps=1)), other, tmp_path / "b", progress=False)
    assert len({e.parent.parent for e in _entries(cache)}) == 2  # keyed by the teacher's hash


def test_target_crops_resume_and_the_draw_worker_give_the_same_student(tmp_path, train_images, gan_dir, capfd):
    cache = tmp_path / "cache"
    base = gan_config(train_images, cache, target_crops=6, grad_accum=2, ema={"enabled": True, "decay": 0.9})
    base["accelerate"] = {**base["accelerate"], "num_threads": 1}
    full = train_student(load_config(base), gan_dir, tmp_path / "full", progress=False)
    assert len(_entries(cache)) == 6  # the fixed crops only, however many steps draw from them
    worker = json.loads(json.dumps(base))
    worker["accelerate"]["draw_worker"] = "on"
    part = tmp_path / "part"
    train_student(load_config(worker), gan_dir, part, progress=False, stop_at=2)
    resumed = train_student(load_config(worker), gan_dir, part, resume=True, progress=False)
    assert "draw worker stopped" not in capfd.readouterr().err
    assert _identical(_weights(full), _weights(resumed))


def test_resshift_teacher_teaches_a_vpdsr_student_with_its_outputs(tmp_path, train_images):
    from vpdsr.models import get_preset

    teacher = save_pretrained(build(get_preset("resshift-tiny"), seed=5), tmp_path / "rt")
    cfg = gan_config(train_images, tmp_path / "cache", steps=2, teacher_call="sample")
    run = train_student(load_config(cfg), teacher, tmp_path / "s", progress=False)
    assert json.loads((run.model_dir / "config.json").read_text())["_class_name"] == "VPDSR"
    assert len(_entries(tmp_path / "cache")) == 4  # its 4-step samples, padded to its window rule and cropped back


def test_pixel_reference_teacher_and_its_refusals(tmp_path, train_images, gan_dir):
    from vpdsr.errors import ConfigError

    cfg = gan_config(train_images, tmp_path / "cache", steps=2)
    cfg["losses"].update({"pixel_reference": "teacher", "recon": 1.0})
    assert train_student(load_config(cfg), gan_dir, tmp_path / "s", progress=False).model_dir is not None
    sampled = tiny_config(train_images, losses={"pixel_reference": "teacher"})
    with pytest.raises(ConfigError, match="pixel_reference"):
        train_student(load_config(sampled), "tiny-teacher", tmp_path / "t", progress=False)
    assert not (tmp_path / "t").exists()


def test_cli_gan_teacher_needs_a_start_and_takes_images(tmp_path, train_images, gan_dir, capsys):
    import yaml

    path = tmp_path / "cfg.yaml"
    cfg = tiny_config(Path("nowhere"))
    cfg["student"]["target_cache"] = str(tmp_path / "cache")
    path.write_text(yaml.safe_dump(cfg))
    # the config starts the student from its teacher: a GAN's weights cannot be that start
    code = main(["distill", "student", "--config", str(path), "--teacher", str(gan_dir), "--images", str(train_images),
                 "--out", str(tmp_path / "o1"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "init_from" in err and "GAN" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o1").exists()
    cfg["student"]["init_from_teacher"] = False
    path.write_text(yaml.safe_dump(cfg))
    code = main(["distill", "student", "--config", str(path), "--teacher", str(gan_dir), "--images", str(train_images),
                 "--out", str(tmp_path / "o2"), "--no-progress"])
    assert code == 0
    saved = yaml.safe_load((tmp_path / "o2" / "config.yaml").read_text())
    assert saved["data"]["images"] == [str(train_images)]  # --images replaced the config's (missing) folder


def test_a_cache_key_names_the_thread_count_the_output_is_computed_with(tmp_path):
    from vpdsr.distill.target_cache import TargetCache

    cache = TargetCache(tmp_path, "0" * 64, {"call": "forward", "seed": 0})
    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cache.key(lr)
        torch.set_num_threads(2)  # e.g. a training that pins 1 thread, targets computed with 2
        assert cache.key(lr) != one
        torch.set_num_threads(1)
        assert cache.key(lr) == one and cache.key(lr + 1e-7) != one
    finally:
        torch.set_num_threads(before)


def test_target_workers_compute_the_same_targets_as_one_process(tmp_path, train_images, gan_dir, caplog):
    import logging

    from vpdsr.distill.data import CropDataset
    from vpdsr.distill.target_pool import TargetPool
    from vpdsr.distill.teachers import plan_teacher

    def pool(cache: Path, workers: int) -> TargetPool:
        cfg = load_config(gan_config(train_images, cache, target_crops=7))
        data = CropDataset(cfg.data.images, cfg.data.crop_size, cfg.degradation_config(), cfg.seed, cfg.data.augment)
        return TargetPool(data, plan_teacher(cfg, gan_dir).load(cfg, "cpu"), 7, cfg.seed, progress=False, threads=1,
                          workers=workers)

    one = pool(tmp_path / "one", 1)
    with caplog.at_level(logging.INFO, logger="vpdsr.distill.target_pool"):
        three = pool(tmp_path / "three", 3)
    assert "7 of 7 to compute, in 3 processes" in caplog.text and "0 from the cache, 7 computed" in caplog.text
    assert "stopped" not in caplog.text  # no worker failed: they computed their shares
    # the same crops and the same bits, under the same entry names
    assert torch.equal(one.lr, three.lr) and torch.equal(one.target, three.target)
    assert [e.name for e in _entries(tmp_path / "one")] == [e.name for e in _entries(tmp_path / "three")]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vpdsr.distill.target_pool"):
        again = pool(tmp_path / "three", 3)  # all cached: no worker starts
    assert "to compute" not in caplog.text and "7 from the cache, 0 computed" in caplog.text
    assert torch.equal(again.target, one.target)


def test_a_target_worker_process_writes_the_entries_this_process_would(tmp_path, train_images, gan_dir):
    from vpdsr.distill import target_workers
    from vpdsr.distill.teachers import plan_teacher

    cfg = load_config(gan_config(train_images, tmp_path / "cache"))
    teacher = plan_teacher(cfg, gan_dir).load(cfg, "cpu")
    g = torch.Generator().manual_seed(0)
    crops = [(torch.rand(1, 3, 8 + i, 8, generator=g), None) for i in range(3)]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        proc, log_path = target_workers._start(teacher, crops, [2, 0], tmp_path / "w")
        assert proc.wait(timeout=120) == 0, log_path.read_text()
        assert target_workers.missing(teacher, crops) == [1]  # the worker's share, and only it
        for i in (0, 2):
            lr, _ = crops[i]
            assert torch.equal(teacher.cache.get(teacher.cache.key(lr)), teacher.model(lr).clamp(0, 1))
    finally:
        torch.set_num_threads(before)
