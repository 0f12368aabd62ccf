"""What the TensorRT builder, runner and ORT's TensorRT EP share: plain Python, checked on every machine."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vpdsr.errors import CapabilityError
from vpdsr.runtimes.tensorrt_common import (
    MAX_TENSORRT_MAJOR,
    MIN_TENSORRT,
    PYPROJECT_BOUND,
    check_supported,
    graph_sha256,
    ort_engine_cache_dir,
    ort_profile_options,
    profile_shapes,
    same_release,
    timing_cache_path,
    version_tuple,
)


def test_versions_compare_as_numbers_not_strings():
    assert "10.9.0" > "10.12.0"  # what a string comparison says: wrong
    assert version_tuple("10.12.0.36") > version_tuple("10.9.0")
    assert version_tuple("10.12.0.36") == (10, 12, 0, 36) and version_tuple("11.0") == (11, 0)
    assert version_tuple("10.3.0.post1") == (10, 3, 0) and version_tuple("11.4.0rc2") == (11, 4, 0)
    with pytest.raises(ValueError, match="not a version"):
        version_tuple("latest")


def test_same_release_ignores_the_build_number_only():
    assert same_release("10.12.0.36", "10.12.0") and same_release("10.12", "10.12.0.5")
    assert not same_release("10.12.0", "10.1.20") and not same_release("10.12.0", "10.12.1")


def test_supported_tensorrt_range():
    check_supported("10.12.0.36")
    check_supported("10.16.1")
    check_supported("11.4.0")
    with pytest.raises(CapabilityError, match="older than 10.12.*strongly typed"):
        check_supported("10.9.0.34")  # as strings "10.9" > "10.12": the numeric check must refuse it
    with pytest.raises(CapabilityError, match="newer than the 11.x"):
        check_supported("12.0.0")


def test_the_gpu_extra_pins_what_the_code_supports():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    gpu = pyproject["project"]["optional-dependencies"]["gpu"]
    assert PYPROJECT_BOUND in gpu, gpu
    assert PYPROJECT_BOUND == f"tensorrt>={MIN_TENSORRT[0]}.{MIN_TENSORRT[1]},<{MAX_TENSORRT_MAJOR + 1}"


def test_static_profile_is_the_tile_with_a_batch_range():
    shapes = profile_shapes({"lr": 3, "noise": 4}, tile=64, dynamic=False)
    assert shapes["lr"] == {"min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [8, 3, 64, 64]}
    assert shapes["noise"]["opt"] == [4, 4, 64, 64]


def test_dynamic_profile_spans_the_range_and_respects_the_size_multiple():
    shapes = profile_shapes({"lr": 3}, tile=100, dynamic=True, size_multiple=64)
    assert shapes["lr"] == {"min": [1, 3, 64, 64], "opt": [4, 3, 128, 128], "max": [8, 3, 256, 256]}
    big = profile_shapes({"lr": 3}, tile=512, dynamic=True)["lr"]  # the tile is always inside the range
    assert big["max"][2] == 512 and big["opt"][2] == 512
    with pytest.raises(ValueError):
        profile_shapes({"lr": 3}, tile=64, dynamic=False, max_batch=2, opt_batch=4)


def test_ort_profile_strings():
    opts = ort_profile_options(profile_shapes({"lr": 3, "noise": 4}, tile=16, dynamic=False))
    assert opts == {"trt_profile_min_shapes": "lr:1x3x16x16,noise:1x4x16x16",
                    "trt_profile_opt_shapes": "lr:4x3x16x16,noise:4x4x16x16",
                    "trt_profile_max_shapes": "lr:8x3x16x16,noise:8x4x16x16"}


def test_timing_cache_lives_in_the_vpdsr_cache_per_gpu_and_release(tmp_path, monkeypatch):
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path))
    path = timing_cache_path("NVIDIA H100 80GB HBM3", (9, 0), "10.12.0.36")
    assert path == tmp_path / "tensorrt" / "timing-nvidia-h100-80gb-hbm3-sm90-trt10.12.0.cache"
    assert timing_cache_path("NVIDIA H100 80GB HBM3", "9.0", "10.12.0.7") == path  # the build number does not matter
    assert timing_cache_path("NVIDIA L4", (8, 9), "10.12.0") != path
    assert timing_cache_path("NVIDIA H100 80GB HBM3", (9, 0), "11.0.0") != path


def test_ort_engine_cache_is_one_folder_per_graph_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path))
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"graph a")
    b.write_bytes(b"graph b")
    da, db = ort_engine_cache_dir(graph_sha256(a)), ort_engine_cache_dir(graph_sha256(b))
    assert da != db and da.parent == db.parent == tmp_path / "ort-tensorrt"
    before = graph_sha256(a)
    (tmp_path / "a.onnx.data").write_bytes(b"weights")  # external data is part of the graph's identity
    assert graph_sha256(a) != before
    with pytest.raises(ValueError, match="sha256"):
        ort_engine_cache_dir("../../etc")
