"""User errors of every command, through the CLI: each is one line on stderr, exit 2, found before any
expensive work (no model loaded, nothing written), and no two inputs write the same output."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.runtimes.tiny_artifacts import export_dir
from vpdsr.cli import main
from vpdsr.data.io import read_image, write_image


def one_line_exit_2(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith(f"vpdsr {argv[0]}: error:"), err
    return err[0]


@pytest.fixture
def photo(tmp_path):
    write_image(tmp_path / "in" / "photo.png", np.random.default_rng(0).random((12, 12, 3), dtype=np.float32))
    return tmp_path / "in" / "photo.png"


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "not-a-folder"
    path.write_text("mine")
    return path


@pytest.mark.parametrize("command", [
    ["export", "--model", "tiny", "--targets", "onnx"],
    ["upscale", "PHOTO"],
    ["bench", "--model", "tiny", "--images", "PHOTO"],
    ["pipeline"],
])
@pytest.mark.parametrize("below", [False, True])
def test_out_naming_a_file_is_refused_first(capsys, photo, a_file, command, below):
    out = a_file / "sub" if below else a_file
    argv = [photo if a == "PHOTO" else a for a in command] + ["--out", out]
    msg = one_line_exit_2(capsys, argv)
    assert str(a_file) in msg and "is a file" in msg
    assert a_file.read_text() == "mine"


def test_pipeline_refuses_a_file_where_it_writes_a_folder(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report").write_text("mine")
    msg = one_line_exit_2(capsys, ["pipeline", "--out", tmp_path / "run"])
    assert str(tmp_path / "run" / "report") in msg
    assert not (tmp_path / "run" / "artifacts").exists()


def test_score_json_naming_a_folder_or_below_a_file(capsys, photo, a_file, tmp_path):
    assert "is a folder" in one_line_exit_2(capsys, ["score", photo, "--metrics", "psnr_y", "--reference",
                                                     photo.parent, "--json", tmp_path])
    assert "is a file" in one_line_exit_2(capsys, ["score", photo, "--metrics", "piqe", "--json", a_file / "x.json"])


def test_two_inputs_with_one_stem_are_refused_before_the_model_loads(capsys, photo, tmp_path):
    other = tmp_path / "other" / "photo.png"
    other.parent.mkdir()
    shutil.copy(photo, other)
    msg = one_line_exit_2(capsys, ["upscale", photo, other, "--model", "no-such-model", "--out", tmp_path / "out"])
    assert "would both be written" in msg and "photo_x<scale>.png" in msg  # checked before `--model` is even read
    assert not (tmp_path / "out").exists()


def test_the_same_file_twice_is_upscaled_once(capsys, photo, tmp_path):
    assert main(["upscale", str(photo), str(photo), "--out", str(tmp_path / "out"), "--tile", "0"]) == 0
    run = json.loads((tmp_path / "out" / "upscale.json").read_text())
    assert [r["input"] for r in run["images"]] == [str(photo.resolve())]
    assert run["runs"][-1]["done"] == 1 and "1 made" in capsys.readouterr().out


def test_output_name_carries_the_models_scale(tmp_path, photo):
    from tests.models.gan.conftest import tiny_srvgg
    from vpdsr.models import save_pretrained

    save_pretrained(tiny_srvgg(scale=2), tmp_path / "x2")
    assert main(["upscale", str(photo), "--model", str(tmp_path / "x2"), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo_x2.png", "upscale.json", "upscale.log"]
    assert read_image(tmp_path / "out" / "photo_x2.png").shape == (24, 24, 3)


MALFORMED = {  # what a hand-edited or hostile manifest.json can hold
    "artifacts is a string": (lambda m: m.update(artifacts="abc"), "`artifacts` must be a list"),
    "artifacts is a number": (lambda m: m.update(artifacts=5), "`artifacts` must be a list"),
    "options is a string": (lambda m: m["artifacts"][0].update(options="abc"), "`options` must be an object"),
    "a path is not a string": (lambda m: m["artifacts"][0]["files"][0].update(path=5), "must be a relative path"),
    "an entry is not an object": (lambda m: m["artifacts"].__setitem__(0, "x"), "must be an artifact entry"),
    "a path climbs out": (lambda m: m["artifacts"][0]["files"][0].update(path="../../x.onnx"), "without '..'"),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    return export_dir(tmp_path_factory.mktemp("exported") / "art")


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_is_one_line_for_bench_and_upscale(capsys, exported, photo, tmp_path, case):
    edit, expected = MALFORMED[case]
    art = shutil.copytree(exported, tmp_path / "art")
    manifest = json.loads((art / "manifest.json").read_text())
    edit(manifest)
    (art / "manifest.json").write_text(json.dumps(manifest))
    msg = one_line_exit_2(capsys, ["bench", "--model", "tiny", "--images", photo, "--artifacts", art,
                                   "--out", tmp_path / "r"])
    assert expected in msg and "manifest.json" in msg and not (tmp_path / "r").exists()
    msg = one_line_exit_2(capsys, ["upscale", photo, "--artifact", art, "--target", "onnx", "--out", tmp_path / "u"])
    assert expected in msg and not (tmp_path / "u").exists()


@pytest.mark.parametrize("rows", [["abc", 5], [{"name": "torch-fp32", "latency_ms": 3}], [{"latency_ms": None}],
                                  [{"name": "onnx", "latency_ms": {"p50": "fast"}}]])
def test_baseline_whose_rows_are_not_backend_rows(capsys, photo, tmp_path, rows):
    (tmp_path / "base.json").write_text(json.dumps({"schema": 1, "backends": rows}))
    msg = one_line_exit_2(capsys, ["bench", "--model", "tiny", "--images", photo, "--baseline", tmp_path / "base.json",
                                   "--max-latency-regression", "10", "--out", tmp_path / "r"])
    assert "--baseline" in msg and "backends[0]" in msg and not (tmp_path / "r").exists()
