"""Held-out evaluation: grid crops, PIQE, the noise controls, extra models, and the crops grid PNG."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from vpdsr.distill.crops import crop_grid_png, detailed_box
from vpdsr.distill.evaluate import eval_markdown, evaluate, grid_crops


def _photo(size: int = 264) -> torch.Tensor:
    from vpdsr.data.samples import resolve_images

    img = next(iter(resolve_images("samples:demo"))).load()[:size, :size]  # astronaut (a held-out photo)
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()


def test_grid_crops_stay_inside_the_border_and_pick_the_detailed_ones():
    hr = np.zeros((140, 270, 3))
    hr[10:40, 150:180] = np.indices((30, 30)).sum(0)[..., None] % 2  # a checkerboard in one square only
    sr = hr + 1.0
    crops = grid_crops(sr, hr, 64, 4)
    assert len(crops) == 2 * 4  # rows start at 4 and 68; columns at 4, 68, 132, 196
    best = grid_crops(sr, hr, 64, 4, top=1)
    assert len(best) == 1 and best[0][1].sum() == hr.sum()  # the square holding the checkerboard
    assert np.array_equal(best[0][0], best[0][1] + 1.0)  # SR and HR cut at the same place


def test_detailed_box_finds_the_textured_square():
    hr = np.full((100, 100, 3), 0.5)
    hr[60:90, 10:40] = np.random.default_rng(0).random((30, 30, 1))
    top, left = detailed_box(hr, 32)
    assert 44 <= top <= 64 and 0 <= left <= 16


def test_evaluate_scores_piqe_and_shows_that_noise_fools_it():
    from vpdsr.data.degrade import DegradationConfig
    from vpdsr.models import build, get_preset

    model = build(get_preset("tiny"), seed=0).eval()  # untrained: reproduces bicubic (zero residual)
    outputs: dict = {}
    result = evaluate([("astronaut", _photo())], DegradationConfig(), 0, 4, student=model, others={"again": model},
                      noise_control=0.005, outputs=outputs)
    mean = result["mean"]
    assert set(mean) == {"bicubic", "student_1step", "again"}
    assert mean["student_1step"] == mean["again"]  # same model, same noise
    assert result["crops"]["count"] == 4
    assert set(result["crops"]["mean"]["bicubic"]) == {"psnr_y", "ssim_y", "piqe", "grid"}
    controls = result["controls"]
    noisy = controls["bicubic+noise0.005"]
    # invisible noise (1.3/255): PSNR barely moves, PIQE drops by far more than any model here gains
    assert abs(noisy["psnr_y"] - mean["bicubic"]["psnr_y"]) < 0.1
    assert noisy["piqe"] < mean["bicubic"]["piqe"] - 20
    assert set(outputs["astronaut"]) == {"hr", "bicubic", "student_1step", "again"}
    md = eval_markdown(result)
    assert "| bicubic+noise0.005 (control) |" in md and "crops: PIQE" in md


def test_crop_grid_is_a_png_with_a_column_per_method():
    hr = np.random.default_rng(1).random((64, 64, 3))
    png = crop_grid_png({"a": {"hr": hr, "bicubic": hr * 0.5, "x": hr}, "b": {"hr": hr, "bicubic": hr}},
                        ["bicubic", "x"], size=32, zoom=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import io

    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png))
    # three columns of 32 px crops shown 2x (64 px each), two rows of 64 px plus a title line each
    assert img.shape[1] == 3 * 64 and img.shape[0] == round(2 * (64 + 35))


@contextlib.contextmanager
def run_threads(cfg):
    """torch's thread count pinned to the one the shipped run evaluated with (`accelerate.num_threads`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(cfg.accelerate.num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_shipped_perceptual_student_meets_its_targets_and_its_eval_file():
    """Recomputes the held-out evaluation of the shipped tiny-perceptual student (about 20 s)."""
    import json

    from vpdsr.distill.config import default_config_path, load_config
    from vpdsr.distill.evaluate import evaluate_run
    from vpdsr.models import from_pretrained
    from vpdsr.models.checkpoint import SHIPPED

    model = from_pretrained("tiny-perceptual")
    assert model.config.preset == "tiny-perceptual"
    cfg = load_config(default_config_path("tiny-perceptual"))
    with run_threads(cfg):
        result = evaluate_run(cfg, None, student=model)
    for part in (result["mean"], result["crops"]["mean"]):
        assert part["student_1step"]["piqe"] <= 60.0
        assert part["student_1step"]["psnr_y"] >= part["bicubic"]["psnr_y"] + 0.3
        assert part["student_1step"]["grid"] < part["bicubic"]["grid"] + 0.5  # no mesh drawn over the photos
    shipped = json.loads((SHIPPED / "tiny-perceptual" / "eval.json").read_text())
    for k in ("psnr_y", "ssim_y", "piqe"):
        assert result["mean"]["student_1step"][k] == pytest.approx(shipped["mean"]["student_1step"][k], abs=1e-6)


def test_shipped_x4plus_student_is_compact_and_names_its_teacher():
    import json

    from vpdsr.models import from_pretrained
    from vpdsr.models.checkpoint import SHIPPED

    model = from_pretrained("tiny-x4plus")
    assert model.config.preset == "tiny-x4plus"
    assert sum(p.numel() for p in model.parameters()) <= 2_000_000
    record = json.loads((SHIPPED / "tiny-x4plus" / "distill.json").read_text())
    assert record["teacher"] == "realesrgan-x4plus" and record["targets"] == "outputs"
    for name in ("eval.md", "eval.json", "crops.png"):
        assert (SHIPPED / "tiny-x4plus" / name).is_file()


@pytest.mark.slow
def test_shipped_x4plus_student_matches_its_eval_file():
    """Recomputes the student's rows of the shipped tiny-x4plus evaluation (the teacher is not run)."""
    import json

    from vpdsr.distill.config import default_config_path, load_config
    from vpdsr.distill.evaluate import evaluate_run
    from vpdsr.models import from_pretrained
    from vpdsr.models.checkpoint import SHIPPED

    cfg = load_config(default_config_path("tiny-x4plus"))
    cfg.eval.compare = []
    with run_threads(cfg):  # PIQE's sums split across threads: its last digits need the run's count
        result = evaluate_run(cfg, None, student=from_pretrained("tiny-x4plus"))
    shipped = json.loads((SHIPPED / "tiny-x4plus" / "eval.json").read_text())
    for k in ("psnr_y", "ssim_y", "piqe"):
        assert result["mean"]["student_1step"][k] == pytest.approx(shipped["mean"]["student_1step"][k], abs=1e-6)
