"""The CLI's contract: outputs, one-line user errors, exit codes."""
import subprocess
import sys

import numpy as np
import pytest

from vpdsr.cli import main
from vpdsr.data.io import read_image, write_image


@pytest.fixture
def photo(tmp_path):
    from vpdsr.data.samples import load_sample

    path = tmp_path / "chelsea.png"
    write_image(path, load_sample("chelsea")[:61, :47])  # odd size, not divisible by anything useful
    return path


def test_upscale_writes_4x_png(photo, tmp_path, capsys):
    assert main(["upscale", str(photo), "--model", "tiny", "--out", str(tmp_path / "out"), "--tile", "32",
                 "--overlap", "8"]) == 0
    sr = read_image(tmp_path / "out" / "chelsea_x4.png")
    assert sr.shape == (61 * 4, 47 * 4, 3)


def test_upscale_tiling_does_not_change_the_result(photo, tmp_path):
    # `tiny` resolves to the shipped (trained) student when present: the denoiser is active
    main(["upscale", str(photo), "--out", str(tmp_path / "a"), "--tile", "0"])
    main(["upscale", str(photo), "--out", str(tmp_path / "b"), "--tile", "24", "--overlap", "8"])
    a = read_image(tmp_path / "a" / "chelsea_x4.png")
    b = read_image(tmp_path / "b" / "chelsea_x4.png")
    assert a.shape == b.shape
    # away from tile borders identical up to 8-bit rounding; the blend keeps the rest close
    assert np.abs(a - b).mean() < 2 / 255


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_text_file_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    assert main(["upscale", str(bad), "--model", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "notes.txt" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("args, needle", [
    (["upscale", "{missing}", "--out", "{out}"], "missing.png"),
    (["upscale", "{photo}", "--model", "nope", "--out", "{out}"], "nope"),
    (["upscale", "{photo}", "--out", "{out}", "--tile", "16", "--overlap", "16"], "overlap"),
])
def test_user_errors_exit_2(args, needle, photo, tmp_path, capsys):
    args = [a.format(missing=tmp_path / "missing.png", out=tmp_path / "o", photo=photo) for a in args]
    assert main(args) == 2
    assert needle in _one_error_line(capsys)


def test_version_and_info():
    out = subprocess.run([sys.executable, "-m", "vpdsr.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("vpdsr ")
    info = subprocess.run([sys.executable, "-m", "vpdsr.cli", "info", "--json"], capture_output=True, text=True)
    assert info.returncode == 0
    import json

    data = json.loads(info.stdout)
    assert data["backends"]["torch"]["importable"] is True
    assert "tensorrt" in data["backends"]


def test_unknown_flag_exits_2():
    proc = subprocess.run([sys.executable, "-m", "vpdsr.cli", "upscale", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2
