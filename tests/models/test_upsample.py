"""Bicubic x s as a fixed convolution (vpdsr.models.upsample) equals F.interpolate, and VPDSR's export
form uses it: no Resize in the ONNX graph, the same output as the trained form, the trained form back after."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vpdsr.models.upsample import BicubicPhases, bicubic_upsample, cubic, phase_taps


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 2, 3), (2, 3, 17, 9)])
def test_the_convolution_is_pytorchs_bicubic(scale, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    phases = BicubicPhases(scale)
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert (bicubic_upsample(x, phases) - ref).abs().max() < 1e-6  # float rounding: the sums run in another order
    assert (phases(x) - F.pixel_unshuffle(ref, scale)).abs().max() < 1e-6


def test_each_phase_is_a_partition_of_unity_with_keys_weights():
    taps, pad = phase_taps(4)
    assert pad == 2 and taps.shape == (4, 5)
    assert torch.allclose(taps.sum(1), torch.ones(4, dtype=taps.dtype))
    # phase 0 reads input k - 0.375: weights at distances 1.625, 0.625, 0.375, 1.375 on inputs k-2 .. k+1
    expected = [cubic(1.625), cubic(0.625), cubic(0.375), cubic(1.375), 0.0]
    assert torch.allclose(taps[0], torch.tensor(expected, dtype=taps.dtype))
    assert cubic(0.0) == 1.0 and cubic(1.0) == 0.0 and cubic(2.5) == 0.0


def test_vpdsr_export_form_has_no_resize_and_the_same_output(tmp_path):
    import onnx

    from vpdsr.export.onnx_graph import export_graph
    from vpdsr.models import build
    from vpdsr.models.presets import get_preset

    model = build(get_preset("tiny"), seed=0).eval()
    keys = set(model.state_dict())
    lr = torch.rand(1, 3, 12, 20, generator=torch.Generator().manual_seed(1))
    noise = model.make_noise(lr, seed=0)
    with torch.no_grad():
        trained = model(lr, noise)
        model.set_deploy_form(True)
        deployed = model(lr, noise)
        model.set_deploy_form(False)
    assert (trained - deployed).abs().max() < 1e-5
    for name in ("model", "encoder"):
        graph = onnx.load(str(export_graph(model, name, tmp_path / f"{name}.onnx", 16, True)))
        resizes = [n.name for n in graph.graph.node if n.op_type == "Resize"]
        assert not [r for r in resizes if not r.startswith("/denoiser/")], resizes  # the UNet's own upsampling stays
        assert any(n.name.startswith("/upsample/") for n in graph.graph.node)  # the float policy's name
    assert model.deploy_form is False and set(model.state_dict()) == keys  # checkpoints keep their keys
