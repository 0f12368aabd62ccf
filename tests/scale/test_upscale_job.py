"""`vpdsr upscale` in one process: the run manifest, resuming, stale outputs, failures, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vpdsr.cli import main
from vpdsr.data.io import read_image, write_image
from vpdsr.scale.job import noise_seed


@pytest.fixture
def photos(tmp_path) -> Path:
    from vpdsr.data.samples import load_sample

    folder = tmp_path / "in"
    write_image(folder / "cat.png", load_sample("chelsea")[40:77, 100:141])
    write_image(folder / "cup.png", load_sample("coffee")[50:81, 200:229])
    write_image(folder / "rocket.jpg", load_sample("rocket")[100:133, 300:335])
    return folder


def manifest(out: Path) -> dict:
    return json.loads((out / "upscale.json").read_text())


def upscale(*args) -> int:
    return main(["upscale", *map(str, args), "--no-progress"])


def test_manifest_records_every_input_and_output(photos, tmp_path):
    out = tmp_path / "out"
    assert upscale(photos, "--out", out) == 0
    m = manifest(out)
    assert m["schema"] == 1 and m["model"]["kind"] == "model" and len(m["model"]["sha256"]) == 64
    assert m["settings"]["seed"] == 0 and m["settings"]["scale"] == 4
    from vpdsr.utils import sha256_file

    assert len(m["images"]) == 3 and m["failures"] == []
    for r in m["images"]:
        assert r["sha256"] == sha256_file(r["input"])
        assert r["output_sha256"] == sha256_file(out / r["output"])
        assert r["status"] == "done" and r["seconds"] > 0 and r["mode"] == "memory"
        assert r["noise_seed"] == noise_seed(0, r["sha256"])
        h, w = read_image(r["input"]).shape[:2]
        assert read_image(out / r["output"]).shape == (4 * h, 4 * w, 3)
    assert m["runs"][-1]["done"] == 3 and m["runs"][-1]["images_per_s"] > 0


def test_rerun_skips_what_is_done_and_redoes_what_is_missing_or_stale(photos, tmp_path):
    out = tmp_path / "out"
    assert upscale(photos, "--out", out) == 0
    first = {r["input"]: r for r in manifest(out)["images"]}
    assert upscale(photos, "--out", out) == 0
    assert manifest(out)["runs"][-1]["todo"] == 0 and manifest(out)["runs"][-1]["skipped"] == 3

    (out / "cat_x4.png").unlink()  # missing
    (out / "cup_x4.png").write_bytes(b"edited")  # edited after the run
    write_image(photos / "rocket.jpg", read_image(photos / "rocket.jpg")[::-1])  # the input changed
    assert upscale(photos, "--out", out) == 0
    run = manifest(out)["runs"][-1]
    assert run["todo"] == 3 and run["skipped"] == 0
    now = {r["input"]: r for r in manifest(out)["images"]}
    cat = str(photos / "cat.png")
    assert now[cat]["output_sha256"] == first[cat]["output_sha256"]  # made again, the same bytes
    rocket = str(photos / "rocket.jpg")
    assert now[rocket]["sha256"] != first[rocket]["sha256"]

    assert upscale(photos, "--out", out, "--seed", "1") == 0  # other settings: every output is stale
    run = manifest(out)["runs"][-1]
    assert run["todo"] == 3 and run["stale"] == 3
    assert {r["output_sha256"] for r in manifest(out)["images"]}.isdisjoint(
        {r["output_sha256"] for r in now.values()})


def test_the_noise_seed_follows_the_image_not_the_order(photos, tmp_path):
    """One image alone, or after others, or under another name: the same bytes."""
    assert upscale(photos, "--out", tmp_path / "all") == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "zz-renamed.png").write_bytes((photos / "cup.png").read_bytes())
    assert upscale(alone / "zz-renamed.png", "--out", tmp_path / "one") == 0
    assert (tmp_path / "one" / "zz-renamed_x4.png").read_bytes() == (tmp_path / "all" / "cup_x4.png").read_bytes()
    # and two different images got different noise: their seeds differ
    seeds = {r["noise_seed"] for r in manifest(tmp_path / "all")["images"]}
    assert len(seeds) == 3


def test_a_corrupt_image_is_a_failure_and_the_rest_are_made(photos, tmp_path, capsys):
    (photos / "broken.png").write_bytes((photos / "cat.png").read_bytes()[:200])  # header fine, pixels cut
    (photos / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))  # not decodable at all
    out = tmp_path / "out"
    assert upscale(photos, "--out", out) == 1
    m = manifest(out)
    failed = {Path(f["input"]).name: f["reason"] for f in m["failures"]}
    assert set(failed) == {"broken.png", "noise.png"}
    assert all("\n" not in r and ("corrupt" in r or "truncated" in r or "not an image" in r) for r in failed.values())
    assert {Path(r["input"]).name for r in m["images"]} == {"cat.png", "cup.png", "rocket.jpg"}
    lines = capsys.readouterr().out.strip().splitlines()
    assert "2 failed of 5" in lines[-2] and "failed" in lines[-1] and len(lines) == 2

    (photos / "broken.png").unlink()
    (photos / "noise.png").unlink()
    assert upscale(photos, "--out", out) == 0  # the failures are not the current inputs' any more
    assert manifest(out)["failures"] == []


@pytest.mark.parametrize("args, needle", [
    (["--model", "nope"], "nope"),
    (["--out", "{tmp}/missing/parent/out"], "does not exist"),
    (["--workers", "2"], "--engine ray"),
    (["--tile", "16", "--overlap", "16"], "overlap"),
    (["--max-memory", "lots"], "--max-memory"),
])
def test_bad_settings_fail_at_once(args, needle, photos, tmp_path, capsys):
    args = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "o")]
    assert upscale(photos, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "o" / "upscale.json").exists()


def test_streamed_output_equals_the_in_memory_one(photos, tmp_path):
    """`--max-memory` below the image's need: a tiled TIFF, pixel for pixel the in-memory PNG."""
    assert upscale(photos / "cat.png", "--out", tmp_path / "mem", "--tile", "16", "--overlap", "4") == 0
    assert upscale(photos / "cat.png", "--out", tmp_path / "str", "--tile", "16", "--overlap", "4",
                   "--max-memory", "100K") == 0
    r = manifest(tmp_path / "str")["images"][0]
    assert r["mode"] == "stream" and r["output"] == "cat_x4.tif"
    import tifffile

    streamed = tifffile.imread(tmp_path / "str" / "cat_x4.tif")
    from PIL import Image

    in_memory = np.asarray(Image.open(tmp_path / "mem" / "cat_x4.png"))
    assert streamed.shape == in_memory.shape and np.array_equal(streamed, in_memory)
    # a rerun with room in memory keeps the streamed output: the pixels are the same either way
    assert upscale(photos / "cat.png", "--out", tmp_path / "str", "--tile", "16", "--overlap", "4") == 0
    assert manifest(tmp_path / "str")["runs"][-1]["skipped"] == 1


def test_the_default_engine_imports_no_ray(photos, tmp_path):
    code = ("import sys; from vpdsr.cli import main; "
            f"rc = main(['upscale', {str(photos / 'cat.png')!r}, '--out', {str(tmp_path / 'o')!r}, '--no-progress']); "
            "assert rc == 0, rc; assert 'ray' not in sys.modules, 'ray was imported'; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
