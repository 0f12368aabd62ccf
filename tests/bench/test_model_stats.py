"""Parameters and GFLOP per LR tile in the bench report, counted against a hand count."""
from __future__ import annotations

from vpdsr.bench.model_stats import count_gflop, model_stats, stats_line
from vpdsr.models import save_pretrained
from vpdsr.models.checkpoint import build
from vpdsr.models.gan.config import GANConfig


def test_srvgg_gflop_equal_the_hand_count(tmp_path):
    """SRVGG at LR HxW: 3x3 convs first (3->F), body (F->F, num_conv of them), last (F->3 s^2), 2 FLOP per MAC."""
    feat, convs, scale = 8, 3, 4
    model = build(GANConfig(arch="srvgg", num_feat=feat, num_conv=convs, scale=scale), seed=0).eval()
    gflop, side = count_gflop(model, 32)
    macs = 9 * side * side * (3 * feat + convs * feat * feat + feat * 3 * scale * scale)
    assert side == 32 and abs(gflop - 2 * macs / 1e9) < 1e-9
    info = model_stats(str(save_pretrained(model, tmp_path / "m")), tile=32)
    assert info == {"parameters": model.num_parameters(), "gflop_per_tile": round(2 * macs / 1e9, 3), "stats_tile": 32}
    assert "GFLOP per LR 32x32" in stats_line(info)


def test_the_tile_is_rounded_up_to_the_size_rule():
    from vpdsr.models import get_preset

    model = build(get_preset("resshift-tiny"), seed=0).eval()  # LR sides a multiple of 16
    assert count_gflop(model, 20)[1] == 32


def test_a_model_that_does_not_load_has_no_stats(tmp_path):
    assert model_stats(str(tmp_path / "nothing")) == {} and stats_line({}) is None
