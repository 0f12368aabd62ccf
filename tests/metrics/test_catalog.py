"""The metric table: directions agree with pyiqa's, names parse, the help text lists them all."""
from __future__ import annotations

import pytest

from vpdsr.errors import InputError
from vpdsr.metrics.catalog import METRICS, describe, parse_metric_names


def test_directions_agree_with_pyiqa():
    pyiqa_configs = pytest.importorskip("pyiqa.default_model_configs")
    checked = 0
    for name, info in METRICS.items():
        cfg = pyiqa_configs.DEFAULT_CONFIGS.get(name)
        if cfg is None:  # psnr_y / ssim_y are ours (BT.601 Y)
            continue
        assert info.higher_is_better == (not cfg.get("lower_better", False)), name
        assert (cfg["metric_mode"] == "FR") == info.needs_reference, name
        checked += 1
    assert checked >= 7


def test_parse_names_keeps_order_and_drops_duplicates():
    assert parse_metric_names("ms_ssim, PIQE,ms_ssim") == ["ms_ssim", "piqe"]
    assert parse_metric_names("all") == list(METRICS)


@pytest.mark.parametrize("spec", ["piqe,nique", "", " , "])
def test_unknown_or_empty_is_one_line_error(spec):
    with pytest.raises(InputError) as info:
        parse_metric_names(spec)
    assert "--metrics" in str(info.value) and "\n" not in str(info.value)


def test_describe_lists_every_metric_with_its_direction():
    text = describe()
    for name, info in METRICS.items():
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        assert f"{info.direction} better" in line and info.meaning in line
