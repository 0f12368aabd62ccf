"""INT8 budgets: parsing, layer groups, the search on a known function, validation tiles, overlap refusals."""
from __future__ import annotations

import numpy as np
import pytest

from tests.export.conftest import TILE
from vpdsr.errors import InputError
from vpdsr.export.budget import Budget, ValidationTiles
from vpdsr.export.calibration import CalibrationSet, refuse_overlap
from vpdsr.export.float_policy import float_patterns, layer_groups, matching, scope_of
from vpdsr.export.search import BudgetUnreachable, Search


@pytest.mark.parametrize("text", ["psnr", "psnr:40", "psnr-vs-ref:", "psnr-vs-ref:forty", "ms-ssim-vs-ref:2",
                                  "piqe-drift:-1", "psnr-vs-ref:nan"])
def test_bad_budget_is_one_line(text):
    with pytest.raises(InputError) as e:
        Budget.parse(text)
    assert "\n" not in str(e.value) and "--int8-budget" in str(e.value)


def test_budget_directions_and_worst_tile():
    psnr, piqe = Budget.parse("psnr-vs-ref:40"), Budget.parse("piqe-drift:2")
    assert str(psnr) == "psnr-vs-ref:40" and psnr.higher_is_better and not piqe.higher_is_better
    assert psnr.aggregate([45.0, 39.0, 50.0]) == 39.0 and not psnr.holds(39.0) and psnr.holds(40.0)
    assert piqe.aggregate([0.5, 2.5, 1.0]) == 2.5 and not piqe.holds(2.5) and piqe.holds(2.0)
    assert psnr.better(41, 40) == 1 and piqe.better(1, 2) == 1


def test_ms_ssim_budget_needs_a_large_enough_tile():
    budget = Budget.parse("ms-ssim-vs-ref:0.99")
    with pytest.raises(InputError, match="161 px.*--tile 41"):
        budget.check_tile(16)
    budget.check_tile(41)


def test_scorers_on_real_images():
    rng = np.random.default_rng(0)
    ref = rng.random((48, 48, 3)).astype(np.float32)
    noisy = np.clip(ref + rng.normal(0, 0.01, ref.shape), 0, 1).astype(np.float32)
    psnr = Budget.parse("psnr-vs-ref:30").scorer([ref, ref])([ref, noisy])
    assert psnr[0] == 150.0 and 38 < psnr[1] < 42  # identical: the cap; sigma 0.01: 40 dB
    assert Budget.parse("psnr-vs-ref:30").scorer([ref])([np.full_like(ref, np.nan)]) == [0.0]


def test_layer_groups_follow_module_paths():
    nodes = ["/Resize", "/Mul", "/net/conv_in/Conv", "/net/down.0/conv1/Conv", "/net/down.0/conv2/Conv",
             "/net/down.1/conv1/Conv", "/net/Add", "/net/up.0/conv/Conv", "/Add_2", "/Clip"]
    coarse = layer_groups(nodes, max_groups=3)
    assert [g.name for g in coarse] == ["top-level: /Resize .. /Mul", "/net", "top-level: /Add_2 .. /Clip"]
    fine = layer_groups(nodes, max_groups=7, macs={"/net/conv_in/Conv": 5})
    assert [g.name for g in fine] == ["top-level: /Resize .. /Mul", "/net/conv_in", "/net/down.0", "/net/down.1",
                                      "/net (own nodes)", "/net/up.0", "top-level: /Add_2 .. /Clip"]
    assert len(layer_groups(nodes, max_groups=8)) == 8  # the biggest group that fits is split further
    assert sorted(n for g in fine for n in g.nodes) == sorted(nodes)  # a partition
    assert next(g for g in fine if g.name == "/net/conv_in").macs == 5
    assert [g.nodes for g in layer_groups(nodes, max_groups=0)] == [[n] for n in nodes]
    assert scope_of("/a/conv/Conv/WithoutBiases") == ("a", "conv") and scope_of("Multiply_12") == ()


def test_one_float_policy_for_every_int8_backend():
    names = ["/Resize", "/denoiser/unet/conv_out/Conv", "/denoiser/unet/conv_in/Conv", "/decoder/conv_out/Conv"]
    assert matching(names, float_patterns("int8")) == ["/Resize", "/denoiser/unet/conv_out/Conv",
                                                       "/decoder/conv_out/Conv"]
    assert all(p.endswith(".*") for p in float_patterns("int8", fullmatch=True))


def _toy(errors: dict[str, float], floor: float = 0.0):
    """A known 'model': each quantized node adds its own error pattern; `floor` is error nothing removes."""
    rng = np.random.default_rng(1)
    refs = [np.full((16, 16, 3), 0.5, np.float32) for _ in range(2)]
    patterns = {n: rng.standard_normal((2, 16, 16, 3)).astype(np.float32) for n in errors}
    base = rng.standard_normal((2, 16, 16, 3)).astype(np.float32) * floor
    calls = []

    def run(kept: list[str]) -> list[np.ndarray]:
        calls.append(tuple(kept))
        err = base + sum(errors[n] * patterns[n] for n in errors if n not in kept)
        return [r + e for r, e in zip(refs, err)]

    return run, refs, calls


def test_search_keeps_only_what_the_budget_needs():
    errors = {"/a/x/Conv": 0.02, "/a/y/Conv": 0.001, "/b/x/Conv": 0.03, "/b/y/Conv": 0.0005, "/c/Conv": 0.001}
    run, refs, _ = _toy(errors)
    groups = layer_groups(list(errors), max_groups=3)
    search = Search(Budget.parse("psnr-vs-ref:45"), groups, run, refs)
    final = search.fastest_within_budget()
    assert search.budget.holds(final.score)
    assert final.kept == {"/a/x/Conv", "/b/x/Conv"}  # the two loud nodes, found inside their groups
    for n in final.kept:  # nothing kept that the budget does not need
        assert not search.budget.holds(search.score(final.kept - {n}).score)
    summary = search.summary(final)
    assert summary["holds"] and summary["metric_final"] >= 45 > summary["metric_all_int8"]
    assert summary["kept_float_added"] == ["/a/x/Conv", "/b/x/Conv"] and summary["evaluations"] == search.evaluations


def test_search_adds_nothing_when_all_int8_meets_the_budget():
    run, refs, calls = _toy({"/a/Conv": 0.001, "/b/Conv": 0.001})
    search = Search(Budget.parse("psnr-vs-ref:40"), layer_groups(["/a/Conv", "/b/Conv"]), run, refs)
    assert search.fastest_within_budget().kept == frozenset() and calls == [()]


def test_unreachable_budget_says_what_float_gives():
    run, refs, _ = _toy({"/a/Conv": 0.01, "/b/Conv": 0.01}, floor=0.02)
    search = Search(Budget.parse("psnr-vs-ref:45"), layer_groups(["/a/Conv", "/b/Conv"]), run, refs)
    with pytest.raises(BudgetUnreachable, match="unreachable: with every quantizable layer in float psnr-vs-ref is 3"):
        search.fastest_within_budget()


def test_sensitivity_rows_sorted_by_loss():
    errors = {"/a/Conv": 0.001, "/b/Conv": 0.03, "/c/Conv": 0.01}
    run, refs, _ = _toy(errors)
    rows = Search(Budget.parse("psnr-vs-ref:40"), layer_groups(list(errors)), run, refs).sensitivity()
    assert [r["group"] for r in rows] == ["/b", "/c", "/a"]
    assert rows[0]["loss_int8_alone"] > rows[1]["loss_int8_alone"] > rows[2]["loss_int8_alone"] > 0
    assert rows[0]["gain_float_alone"] > rows[2]["gain_float_alone"] and rows[0]["node_names"] == ["/b/Conv"]


def test_calibration_crops_larger_than_the_tile_become_neighbouring_tiles():
    one = CalibrationSet("samples:calib", count=2, tile=TILE, channels=3, seed=5, crop=2 * TILE + 4)
    feeds = one.feeds()
    assert len(feeds) == 2 * 9 and all(f["lr"].shape == (1, 3, TILE, TILE) for f in feeds)
    # the third tile of the first row ends at the crop's edge: it overlaps the second by TILE - 4 pixels
    assert np.array_equal(feeds[1]["lr"][..., :, 4:], feeds[2]["lr"][..., :, :TILE - 4])
    info = one.describe()
    assert info["crop"] == 2 * TILE + 4 and info["samples"] == 18 and set(info["images_sha256"]) == {"rocket",
                                                                                                   "motorcycle_left"}
    with pytest.raises(InputError, match="calib-crop"):
        CalibrationSet(tile=TILE, crop=TILE - 1)
    assert "noise" not in CalibrationSet(count=1, tile=TILE, channels=None).feeds()[0]


def test_validation_tiles_are_degraded_like_the_held_out_photos():
    tiles = ValidationTiles("samples:val", count=3, tile=TILE, channels=3, seed=0)
    lr = tiles.feeds()[0]["lr"]
    assert np.allclose(lr * 255, np.round(lr * 255), atol=1e-4)  # 8-bit levels, as a PNG of the LR holds
    assert set(tiles.image_hashes()) == {"ihc", "camera", "grass"}


def test_overlapping_photo_sets_are_refused():
    calib = CalibrationSet("samples:calib", count=2, tile=TILE, channels=3)
    val = ValidationTiles("samples:calib", count=1, tile=TILE, channels=3)
    with pytest.raises(InputError, match="share a photo.*'rocket'"):
        refuse_overlap({"calibration": calib.image_hashes(), "budget validation": val.image_hashes()})
    refuse_overlap({"calibration": calib.image_hashes(),
                    "budget validation": ValidationTiles(count=2, tile=TILE, channels=3).image_hashes()})


def test_export_refuses_overlap_and_split_before_building(model_dir, tmp_path):
    from vpdsr.export import export
    from vpdsr.export.mixed_precision import BudgetOptions

    with pytest.raises(InputError, match="calibration images and the held-out validation images share"):
        export(str(model_dir), tmp_path / "a", "ort-int8", tile=TILE, calib="samples:holdout", calib_count=1,
               budget=BudgetOptions("psnr-vs-ref:40", count=1))
    with pytest.raises(InputError, match="budget validation"):
        export(str(model_dir), tmp_path / "b", "ort-int8", tile=TILE, calib_count=2,
               budget=BudgetOptions("psnr-vs-ref:40", images="samples:calib", count=1))
    with pytest.raises(InputError, match="--stages fused"):
        export(str(model_dir), tmp_path / "c", "ort-int8", tile=TILE, stages="split",
               budget=BudgetOptions(sensitivity="groups"))
    assert not list((tmp_path / "a").glob("ort-int8"))


def test_cli_bad_budget_is_one_line_exit_2(tmp_path, capsys):
    from vpdsr.cli import main

    assert main(["export", "--model", "tiny", "--out", str(tmp_path / "x"), "--targets", "ort-int8",
                 "--int8-budget", "psnr:40"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "psnr-vs-ref" in err



def _plan(budget, sensitivity, refs, feeds=None):
    from vpdsr.export.mixed_precision import BudgetOptions, Int8Plan

    feeds = feeds or [{"lr": np.zeros((1, 3, 4, 4), np.float32)} for _ in refs]
    return Int8Plan(BudgetOptions(budget, sensitivity, count=len(refs), max_groups=3, refine=4), feeds,
                    {"source": "toy", "count": len(refs)}, refs, {"a.x": 100, "b.x": 50, "a": 100, "b": 60, "c": 5})


def test_choose_kept_records_the_search_and_writes_the_sensitivity_files(tmp_path):
    import json

    from vpdsr.export.mixed_precision import choose_kept

    errors = {"/a/x/Conv": 0.02, "/a/y/Conv": 0.001, "/b/x/Conv": 0.03, "/b/y/Conv": 0.0005, "/c/Conv": 0.001}
    run, refs, _ = _toy(errors)
    kept, options = choose_kept(_plan("psnr-vs-ref:45", "groups", refs), "ort-int8", list(errors), run, tmp_path)
    ac = options["accuracy_control"]
    assert kept == ac["kept_float_added"] == ["/a/x/Conv", "/b/x/Conv"]
    assert ac["metric_all_int8"] < 45 <= ac["metric_final"] and ac["holds"] and ac["groups"] == 3
    assert ac["validation"] == {"source": "toy", "count": 2} and ac["budget"] == "psnr-vs-ref:45"
    sens = options["sensitivity"]
    table = json.loads((tmp_path / sens["table"]).read_text())
    assert [r["group"] for r in table["rows"]] == ["/b", "/a", "/c"] and table["budget"] == "psnr-vs-ref:45"
    assert table["all_int8"] == pytest.approx(ac["metric_all_int8"], abs=1e-4) and table["all_float"] == 150.0
    assert "| `/b` | 2 |" in (tmp_path / sens["markdown"]).read_text()
    assert (tmp_path / sens["plot"]).read_bytes()[:4] == b"\x89PNG"
    # the table alone (no budget): nothing kept, no search recorded
    kept, options = choose_kept(_plan(None, "groups", refs), "ort-int8", list(errors), run, tmp_path / "t")
    assert kept == [] and "accuracy_control" not in options and options["sensitivity"]["groups"] == 3


def test_plan_round_trips_for_the_modelopt_child(tmp_path):
    from vpdsr.export.mixed_precision import Int8Plan

    rng = np.random.default_rng(0)
    refs = [rng.random((8, 8, 3)).astype(np.float32) for _ in range(2)]
    feeds = [{"lr": rng.random((1, 3, 4, 4)).astype(np.float32), "noise": rng.random((1, 2, 4, 4)).astype(np.float32)}
             for _ in range(2)]
    plan = _plan("piqe-drift:2", None, refs, feeds)
    back = Int8Plan.load(plan.save(tmp_path / "plan"))
    assert back.options == plan.options and back.validation == plan.validation and back.macs == plan.macs
    assert all(np.array_equal(a, b) for a, b in zip(back.refs, refs))
    assert all(f.keys() == g.keys() and all(np.array_equal(f[k], g[k]) for k in f) for f, g in zip(back.feeds, feeds))
