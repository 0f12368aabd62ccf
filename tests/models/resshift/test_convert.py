"""`vpdsr convert resshift`: official-layout `.pth` files -> model directory, against the reference.

Golden values (`golden.json`): the reference implementation's outputs on the same random weights
and inputs, computed once with
    python tests/models/resshift/reference_parity.py --reference <checkout of github zsyOAOA/ResShift> \\
        --config resshift-tiny --sizes 16x16 32x48 --golden tests/models/resshift/golden.json
(the weights come from `official.random_official_states(model, seed)`, the inputs from
`official.make_inputs`; the teacher's per-step noise from torch's global RNG seeded with 77, as the
reference sampler draws it). `realsr_keys.json` is the reference's own key -> shape list of the
full-size realsr UNetModelSwin and VQModelTorch (written by the same script with `--keys`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.models.resshift.official import make_inputs, random_official_states, save_official, write_resshift_yaml
from vpdsr.cli import main as cli
from vpdsr.errors import InputError
from vpdsr.models import from_pretrained, get_preset
from vpdsr.models.checkpoint import build
from vpdsr.models.resshift import ResShiftSR
from vpdsr.models.resshift.convert import convert, official_shapes

HERE = Path(__file__).parent
GOLDEN = json.loads((HERE / "golden.json").read_text())
SLICE = (slice(0, 1), slice(None), slice(0, 2), slice(0, 4))


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> tuple[Path, Path, dict]:
    states = random_official_states(build(get_preset("resshift-tiny"), seed=1), GOLDEN["seed"])
    unet, vq = save_official(states, tmp_path_factory.mktemp("official"))
    return unet, vq, states


@pytest.fixture(scope="module")
def converted(official, tmp_path_factory) -> ResShiftSR:
    unet, vq, _ = official
    out = tmp_path_factory.mktemp("conv") / "model"
    assert cli(["convert", "resshift", "--config", "resshift-tiny", "--unet", str(unet),
                "--autoencoder", str(vq), "--out", str(out)]) == 0
    record = json.loads((out / "convert.json").read_text())
    assert record["sources"]["unet"]["sha256"] and record["config"] == {"name": "resshift-tiny"}
    assert record["derived_buffers_checked"] == 4
    return from_pretrained(out)


@pytest.mark.parametrize("size", sorted(GOLDEN["sizes"]))
def test_one_step_matches_the_reference(converted, size):
    h, w = map(int, size.split("x"))
    gold = GOLDEN["sizes"][size]
    lr, noise = make_inputs(h, w, 3, gold["input_seed"])
    with torch.no_grad():
        got = converted(lr, noise)[SLICE].flatten()
    torch.testing.assert_close(got, torch.tensor(gold["one_step"]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", sorted(GOLDEN["sizes"]))
def test_teacher_sampler_matches_the_reference(converted, size):
    h, w = map(int, size.split("x"))
    gold = GOLDEN["sizes"][size]
    lr, noise = make_inputs(h, w, 3, gold["input_seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(77)
        got = converted.teacher_sample(lr, noise)[SLICE].flatten()
    torch.testing.assert_close(got, torch.tensor(gold["teacher"]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["resshift-v1", "resshift-v2", "resshift-v3", "sinsr"])
def test_every_official_key_maps_and_none_is_left_over(name):
    ref = json.loads((HERE / "realsr_keys.json").read_text())
    with torch.device("meta"):
        shapes = official_shapes(ResShiftSR(get_preset(name)))
    for part in ("unet", "autoencoder"):
        assert shapes[part] == {k: tuple(v) for k, v in ref[part].items()}
    assert (len(shapes["unet"]), len(shapes["autoencoder"])) == (564, 205)


@pytest.mark.parametrize("sinsr", [False, True])
def test_yaml_layouts_read_as_the_builtin(tmp_path, sinsr):
    from vpdsr.models.resshift.yaml_config import load_resshift_yaml

    cfg = load_resshift_yaml(write_resshift_yaml(get_preset("resshift-tiny"), tmp_path / "c.yaml", sinsr=sinsr))
    tiny = get_preset("resshift-tiny")
    assert cfg.denoiser == tiny.denoiser and cfg.autoencoder == tiny.autoencoder
    assert (cfg.diffusion.etas_start_cap is not None) == sinsr


def test_prefixes_are_stripped_and_yaml_config_is_read(official, tmp_path, converted):
    _, vq, states = official
    unet = tmp_path / "ddp.pth"
    torch.save({"state_dict": {"module._orig_mod." + k: v for k, v in states["unet"].items()}}, unet)
    yaml_path = write_resshift_yaml(get_preset("resshift-tiny"), tmp_path / "tiny.yaml")
    out = convert(yaml_path, unet, vq, tmp_path / "m")
    model = from_pretrained(out)
    lr, noise = make_inputs(16, 16, 3, 0)
    with torch.no_grad():
        assert torch.equal(model(lr, noise), converted(lr, noise))
    assert json.loads((out / "convert.json").read_text())["config"]["sha256"]


def _convert_fails(capsys, tmp_path, unet, vq, config="resshift-tiny") -> str:
    out = tmp_path / "out"
    assert cli(["convert", "resshift", "--config", config, "--unet", str(unet), "--autoencoder", str(vq),
                "--out", str(out)]) == 2
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_refusals_are_one_line_and_leave_nothing(official, tmp_path, capsys):
    unet, vq, states = official
    pickled = tmp_path / "pickled.pth"
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1)
    torch.save({"state_dict": states["unet"], "opt": optimizer}, pickled)
    assert "refused: it needs more than tensors" in _convert_fails(capsys, tmp_path, pickled, vq)

    partial = dict(states["unet"])
    for k in ["time_embed.0.weight", "out.2.bias", "input_blocks.1.1.blocks.1.attn_mask"]:
        del partial[k]
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pth")
    err = _convert_fails(capsys, tmp_path, tmp_path / "partial.pth", vq)
    assert "3 missing (e.g. input_blocks.1.1.blocks.1.attn_mask, out.2.bias, time_embed.0.weight)" in err
    assert "1 unexpected (e.g. extra.weight)" in err

    wider = write_resshift_yaml(get_preset("resshift-tiny"), tmp_path / "wider.yaml", model_channels=64)
    assert ("'time_embed.0.weight' has shape (128, 32), the config expects (256, 64)"
            in _convert_fails(capsys, tmp_path, unet, vq, str(wider)))
    assert "keys do not match" in _convert_fails(capsys, tmp_path, vq, unet)

    tampered = dict(states["unet"])
    key = "input_blocks.1.1.blocks.1.attn_mask"
    tampered[key] = torch.zeros_like(tampered[key])
    torch.save(tampered, tmp_path / "tampered.pth")
    tampered_error = _convert_fails(capsys, tmp_path, tmp_path / "tampered.pth", vq)
    assert "differs from the mask this config implies" in tampered_error
    assert "neither a ResShift YAML file nor a built-in name" in _convert_fails(capsys, tmp_path, unet, vq, "v9")


def test_yaml_errors_name_the_field(tmp_path):
    from vpdsr.errors import ConfigError
    from vpdsr.models.resshift.yaml_config import load_resshift_yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {target: models.unet.UNetModel, params: {}}\n"
                   "autoencoder: {params: {}}\ndiffusion: {params: {}}\n")
    with pytest.raises(ConfigError,
                       match="`model.target` is 'models.unet.UNetModel'; this converter reads UNetModelSwin"):
        load_resshift_yaml(bad)
    bad.write_text("model: {target: x}\n")
    with pytest.raises(ConfigError, match="missing `model.params`"):
        load_resshift_yaml(bad)
    with pytest.raises(InputError, match="nope.yaml: file not found"):
        load_resshift_yaml(tmp_path / "nope.yaml")
