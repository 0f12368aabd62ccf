"""`vpdsr upscale --backend onnxruntime|openvino --artifact DIR`: through the CLI, exit codes and all."""
from __future__ import annotations

import numpy as np
import pytest

from tests.runtimes.tiny_artifacts import onnx_artifact, openvino_artifact, tiny_model
from vpdsr.cli import main
from vpdsr.data.io import read_image, write_image

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'vpdsr[onnx]')")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from vpdsr.models import save_pretrained

    root = tmp_path_factory.mktemp("upscale")
    img = np.random.default_rng(0).random((10, 13, 3), dtype=np.float32)  # odd sizes: padding and shifted tiles
    write_image(root / "photo.png", img)
    save_pretrained(tiny_model(), root / "student")
    # the torch run on the same weights is the reference
    assert main(["upscale", str(root / "photo.png"), "--model", str(root / "student"), "--out", str(root / "torch"),
                 "--tile", "8", "--overlap", "2"]) == 0
    return root


def upscale(setup, backend, artifact, out, *extra):
    return main(["upscale", str(setup / "photo.png"), "--backend", backend, "--artifact", str(artifact),
                 "--out", str(setup / out), "--tile", "8", "--overlap", "2", *extra])


def assert_matches_torch(setup, out):
    got, ref = read_image(setup / out / "photo_x4.png"), read_image(setup / "torch" / "photo_x4.png")
    assert got.shape == ref.shape == (40, 52, 3)
    assert np.abs(got - ref).max() <= 1 / 255 + 1e-6  # 8-bit PNG: at most one rounding step apart


def test_upscale_with_onnxruntime_artifact(setup):
    assert upscale(setup, "onnxruntime", onnx_artifact(setup / "art" / "onnx"), "ort") == 0
    assert_matches_torch(setup, "ort")


def test_upscale_with_openvino_artifact(setup):
    pytest.importorskip("openvino", reason="openvino not installed")
    assert upscale(setup, "openvino", openvino_artifact(setup / "art" / "openvino-fp32"), "ov") == 0
    assert_matches_torch(setup, "ov")


def test_tampered_artifact_exits_2_with_one_line(setup, capsys):
    folder = onnx_artifact(setup / "tampered" / "onnx")
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert upscale(setup, "onnxruntime", folder, "bad") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sha256 mismatch" in err and err.startswith("vpdsr upscale: error:")
    assert not (setup / "bad" / "photo_x4.png").exists()


def test_backend_without_artifact_exits_2(setup, capsys):
    assert main(["upscale", str(setup / "photo.png"), "--backend", "openvino", "--out", str(setup / "x")]) == 2
    assert "needs `--artifact PATH`" in capsys.readouterr().err


@pytest.fixture(scope="module")
def static_artifact(setup):
    """A static-shape artifact (8x8 LR tiles) made by the real export."""
    from vpdsr.export import export
    from vpdsr.export.validation import ValidationConfig

    export(tiny_model(), setup / "static", "onnx", tile=8, validation=ValidationConfig(max_size=16, overlap=2))
    return setup / "static" / "onnx"


def test_static_artifact_takes_its_own_tile(setup, static_artifact):
    """No `--tile`: the artifact's 8-pixel tile is used (the torch reference ran with --tile 8 --overlap 2)."""
    assert main(["upscale", str(setup / "photo.png"), "--artifact", str(static_artifact), "--out",
                 str(setup / "static-out"), "--overlap", "2"]) == 0
    assert_matches_torch(setup, "static-out")


def test_static_onnx_artifact_run_by_openvino_takes_its_own_tile(setup, static_artifact):
    """`--backend openvino --artifact <static ONNX artifact>` without `--tile` takes the artifact's tile (was
    a shape error)."""
    pytest.importorskip("openvino", reason="openvino not installed")
    assert main(["upscale", str(setup / "photo.png"), "--backend", "openvino", "--artifact", str(static_artifact),
                 "--out", str(setup / "static-ov"), "--overlap", "2"]) == 0
    assert_matches_torch(setup, "static-ov")


@pytest.mark.parametrize("tile", ["16", "0"])
def test_contradicting_tile_is_one_line_exit_2(setup, static_artifact, capsys, tile):
    assert main(["upscale", str(setup / "photo.png"), "--artifact", str(static_artifact), "--out",
                 str(setup / "bad-tile"), "--tile", tile, "--overlap", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "contradicts" in err and "fixed at 8x8" in err and "--tile 8" in err
    assert not (setup / "bad-tile").exists()
