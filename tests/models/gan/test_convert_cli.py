"""`vpdsr convert realesrgan`: exit 0 and a summary line, or exit 2 and one line on stderr."""
from __future__ import annotations

import torch

from tests.models.gan.conftest import tiny_rrdbnet, tiny_srvgg
from tests.models.gan.ncnn_files import write_ncnn
from vpdsr.cli import main
from vpdsr.models import from_pretrained


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_ncnn_and_pth_convert(tmp_path, capsys):
    rrdb = tiny_rrdbnet()
    param, bin_path = write_ncnn(rrdb, tmp_path / "src", "tiny")
    moved = tmp_path / "elsewhere.bin"
    bin_path.rename(moved)
    assert main(["convert", "realesrgan", "--ncnn", str(param), "--bin", str(moved), "--out", str(tmp_path / "a")]) == 0
    assert "rrdbnet x4 (8 features, 2 blocks)" in capsys.readouterr().out
    assert from_pretrained(tmp_path / "a").num_parameters() == rrdb.num_parameters()
    torch.save({"params_ema": tiny_srvgg().state_dict()}, tmp_path / "s.pth")
    assert main(["convert", "realesrgan", "--pth", str(tmp_path / "s.pth"), "--out", str(tmp_path / "b")]) == 0
    assert "srvgg x4 (8 features, 3 convs, prelu)" in capsys.readouterr().out


def test_bad_input_is_exit_2_and_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", "realesrgan", "--ncnn", str(tmp_path / "none.param"), "--out", str(out)]) == 2
    assert "file not found" in _one_error_line(capsys)
    param, _ = write_ncnn(tiny_srvgg(), tmp_path)
    assert main(["convert", "realesrgan", "--ncnn", str(param), "--arch", "rrdbnet", "--out", str(out)]) == 2
    assert "the file is srvgg" in _one_error_line(capsys)
    assert main(["convert", "realesrgan", "--ncnn", str(param), "--scale", "2", "--out", str(out)]) == 2
    assert "apply to `--pth` only" in _one_error_line(capsys)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["convert", "realesrgan", "--pth", str(tmp_path / "junk.pth"), "--out", str(out)]) == 2
    assert "junk.pth" in _one_error_line(capsys)
    assert not out.exists()
