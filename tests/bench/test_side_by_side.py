"""`vpdsr bench --artifacts ptq=DIR,qat=DIR`: post-training and quantization-aware artifacts of one model in one
report, every row scored against the same torch fp32 reference, with the colour check (mean shift per channel)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.bench.test_statuses import FAST, report_of
from tests.conftest import SMALL
from vpdsr.cli import main
from vpdsr.errors import InputError


@pytest.fixture(scope="module")
def two_folders(bench_model_dir, tmp_path_factory):
    from vpdsr.distill.quantize import QuantizeConfig, quantize
    from vpdsr.export import export

    root = tmp_path_factory.mktemp("side")
    export(str(bench_model_dir), root / "ptq", "ort-int8", tile=16, calib_count=2, validation=SMALL)
    cfg = QuantizeConfig(model=str(bench_model_dir), targets="ort-int8", steps=2, crop_size=64, batch_size=2,
                         tile=16, calib_count=2, threads=1)
    quantize(cfg, root / "qat", validation=SMALL, progress=False)
    return root / "ptq", root / "qat"


def test_rows_named_by_folder_against_one_reference(bench_model_dir, bench_images, two_folders, tmp_path,
                                                    empty_caches):
    ptq, qat = two_folders
    code = main(["bench", "--model", str(bench_model_dir), "--images", str(bench_images[0]), "--hr",
                 str(bench_images[1]), "--artifacts", f"ptq={ptq},qat={qat}", "--out", str(tmp_path / "r"), *FAST])
    assert code == 0
    report, rows = report_of(tmp_path / "r")
    assert {"torch-fp32", "ptq/ort-int8", "qat/ort-int8"} <= set(rows)
    assert report["reference"] == "torch-fp32"
    for name in ("ptq/ort-int8", "qat/ort-int8"):
        q = rows[name]["quality"]
        assert rows[name]["status"] == "ok" and q["psnr_vs_ref"] > 25
        shift = q["colour_shift_vs_ref"]
        assert len(shift) == 3 and all(np.isfinite(shift))
        assert abs(q["colour_shift_vs_ref_worst"]) >= max(abs(v) for v in shift) - 1e-9
        assert q["colour_shift_vs_ref_worst_at"].split()[0] in ("R", "G", "B")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "qat/ort-int8" in md and "colour shift /255 worst" in md


def test_colour_shift_is_the_mean_difference_per_channel():
    from vpdsr.bench.quality import colour_shift

    ref = np.full((8, 8, 3), 0.5, np.float32)
    img = ref.copy()
    img[..., 2] -= 2 / 255  # two levels darker in blue
    assert colour_shift(img, ref) == pytest.approx([0.0, 0.0, -2.0], abs=1e-3)


def test_folders_of_different_models_are_refused(two_folders, tmp_path):
    from tests.models.gan.conftest import tiny_srvgg
    from vpdsr.bench.backends import artifact_folders
    from vpdsr.export import export
    from vpdsr.models import save_pretrained

    other = save_pretrained(tiny_srvgg(), tmp_path / "other")
    export(str(other), tmp_path / "o", "onnx", tile=16, validation=SMALL)
    with pytest.raises(InputError, match="different models"):
        artifact_folders(f"{two_folders[0]},{tmp_path / 'o'}")
    with pytest.raises(InputError, match="used twice"):
        artifact_folders(f"a={two_folders[0]},a={two_folders[1]}")
    assert [label for label, _, _ in artifact_folders(f"{two_folders[0]},{two_folders[1]}")] == ["ptq", "qat"]
