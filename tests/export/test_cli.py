"""`vpdsr export`: one-line errors and exit codes."""
from __future__ import annotations

import importlib.util

import pytest

from tests.export.conftest import TILE
from vpdsr.cli import main


def test_unknown_target_is_one_line_exit_2(tmp_path, capsys):
    assert main(["export", "--model", "tiny", "--out", str(tmp_path), "--targets", "onnx,tensorrt-int4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tensorrt-int4" in err and "onnx-fp16" in err
    assert not any(tmp_path.iterdir()), "nothing is written for a bad command line"


def test_bad_calibration_folder_is_one_line_exit_2(model_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["export", "--model", str(model_dir), "--out", str(tmp_path / "a"), "--targets", "ort-int8",
                 "--calib", str(empty), "--tile", str(TILE)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(empty) in err


@pytest.mark.skipif(bool(importlib.util.find_spec("tensorrt")), reason="TensorRT is installed here")
def test_tensorrt_skipped_exit_0_unless_strict(model_dir, tmp_path, capsys):
    args = ["export", "--model", str(model_dir), "--out", str(tmp_path), "--targets", "tensorrt-fp16",
            "--tile", str(TILE)]
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(args + ["--strict"]) == 1
    assert "tensorrt-fp16" in capsys.readouterr().err


def test_export_cli_writes_its_log_and_one_line_per_target(model_dir, tmp_path, capsys):
    import logging
    import sys

    out = tmp_path / "art"
    assert main(["export", "--model", str(model_dir), "--out", str(out), "--targets", "onnx,tensorrt-fp16",
                 "--tile", "32", "--validation-images", "1"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in err] == ["onnx", "tensorrt-fp16"], err
    text = (out / "export.log").read_text()
    assert "DEBUG" in text and "exporting fp32 ONNX graph 'model'" in text and "onnx: ok" in text
    assert sys.modules.get("nncf") is None or logging.getLogger("nncf").propagate is False


def test_validation_max_size_crops_the_validation_photos(model_dir, tmp_path, capsys):
    from vpdsr.artifacts import Manifest

    out = tmp_path / "art"
    assert main(["export", "--model", str(model_dir), "--out", str(out), "--targets", "onnx", "--tile", str(TILE),
                 "--validation-images", "1", "--validation-max-size", str(TILE)]) == 0
    inputs = Manifest.read(out).entry("onnx").validation["inputs"]
    assert inputs["max_size"] == TILE and inputs["max_images"] == 1 and len(inputs["images"]) == 1
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "b"), "--validation-max-size", "0"]) == 2
    assert "max_size" in capsys.readouterr().err
