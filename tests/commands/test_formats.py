"""Every format Pillow decodes goes in (BMP, as the classic IQA sets have it, PGM, TGA, ...): `vpdsr upscale`
gives the same output for the same pixels whatever the input's format."""
from __future__ import annotations

import numpy as np
from PIL import Image

from vpdsr.cli import main
from vpdsr.data.io import read_image


def test_upscale_takes_bmp_pgm_and_tga_as_it_takes_png(tmp_path):
    from tests.models.gan.conftest import tiny_srvgg
    from vpdsr.models import save_pretrained

    save_pretrained(tiny_srvgg(scale=2), tmp_path / "x2")
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(pixels).save(inputs / "a.png")
    Image.fromarray(pixels).save(inputs / "b.bmp")
    Image.fromarray(pixels).save(inputs / "c.tga")
    Image.fromarray(pixels).convert("L").save(inputs / "d.pgm")
    Image.fromarray(pixels).convert("L").save(inputs / "e.png")
    assert main(["upscale", str(inputs), "--model", str(tmp_path / "x2"), "--out", str(tmp_path / "out")]) == 0
    out = {p.stem: read_image(p) for p in (tmp_path / "out").glob("*.png")}
    assert sorted(out) == ["a_x2", "b_x2", "c_x2", "d_x2", "e_x2"] and out["a_x2"].shape == (24, 20, 3)
    assert np.array_equal(out["b_x2"], out["a_x2"]) and np.array_equal(out["c_x2"], out["a_x2"])
    assert np.array_equal(out["d_x2"], out["e_x2"])
    assert main(["upscale", str(inputs / "b.bmp"), "--model", str(tmp_path / "x2"), "--out", str(tmp_path / "one"),
                 "--tile", "0"]) == 0
    assert np.array_equal(read_image(tmp_path / "one" / "b_x2.png"), out["a_x2"])
