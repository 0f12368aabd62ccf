import json

import pytest
import torch
import torch.nn.functional as F

from vpdsr.errors import CheckpointError, ConfigError
from vpdsr.models import (
    AutoencoderConfig,
    DecoderStage,
    DenoiserConfig,
    DenoiserStage,
    EncoderStage,
    ModelConfig,
    ScheduleConfig,
    build,
    from_pretrained,
    save_pretrained,
)
from vpdsr.models.autoencoder import SpaceToDepth

# diffusers-style tiny configs, built in the test
TINY = ModelConfig(
    preset="test",
    denoiser=DenoiserConfig(block_out_channels=(16, 32), layers_per_block=1, attention_levels=(False, True),
                            attention_head_dim=16, norm_num_groups=8),
    schedule=ScheduleConfig(steps=3),
)


def tiny_vq() -> ModelConfig:
    return ModelConfig(
        preset="test-vq",
        autoencoder=AutoencoderConfig(kind="vq", latent_channels=3, block_out_channels=(8, 16, 16), layers_per_block=1,
                                      num_vq_embeddings=32),
        denoiser=DenoiserConfig(block_out_channels=(16, 16), attention_levels=(False, False), norm_num_groups=8),
        schedule=ScheduleConfig(steps=2),
    )


def randomize(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_space_to_depth_is_lossless():
    ae = SpaceToDepth()
    x = torch.rand(2, 3, 12, 20)
    z = ae.encode(x)
    assert z.shape == (2, 48, 3, 5)
    assert torch.allclose(ae.decode(z), x, atol=1e-7)


@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (13, 9), (16, 16)])
def test_shapes_through_every_stage(hw):
    model = randomize(build(TINY)).eval()
    lr = torch.rand(2, 3, *hw)
    noise = model.make_noise(lr, seed=3)
    assert noise.shape == (2, 48, *hw)
    with torch.no_grad():
        y = EncoderStage(model)(lr)
        x0 = DenoiserStage(model)(y, noise)
        sr = DecoderStage(model)(x0)
        fused = model(lr, noise)
    assert y.shape == x0.shape == (2, 48, *hw)
    assert sr.shape == (2, 3, 4 * hw[0], 4 * hw[1])
    assert torch.equal(sr, fused)
    assert sr.min() >= 0 and sr.max() <= 1


def test_vq_autoencoder_shapes():
    model = build(tiny_vq()).eval()
    lr = torch.rand(1, 3, 6, 10)
    with torch.no_grad():
        sr = model(lr, model.make_noise(lr))
    assert model.latent_channels == 3 and sr.shape == (1, 3, 24, 40)


def test_untrained_student_reproduces_bicubic():
    model = build(TINY).eval()  # residual head starts at zero
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        sr = model(lr, model.make_noise(lr))
    up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(sr, up, atol=1e-6)


def test_teacher_runs_T_steps():
    model = randomize(build(TINY)).eval()
    calls = []
    model.denoiser.register_forward_hook(lambda m, i, o: calls.append(int(i[2][0])))
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        sr = model.teacher_sample(lr, model.make_noise(lr), torch.Generator().manual_seed(0))
    assert calls == [2, 1, 0]
    assert sr.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("make", [lambda: TINY, tiny_vq])
def test_save_load_roundtrip_bit_exact(tmp_path, make):
    model = randomize(build(make())).eval()
    save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = from_pretrained(tmp_path / "m")
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    lr = torch.rand(1, 3, 8, 8)
    n = model.make_noise(lr)
    with torch.no_grad():
        assert torch.equal(model(lr, n), loaded(lr, n))


def test_preset_builds_are_seeded():
    a, b = from_pretrained("tiny"), from_pretrained("tiny")
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


def test_load_errors_name_the_file(tmp_path):
    model = build(TINY)
    d = save_pretrained(model, tmp_path / "m")
    # config and tensors disagree
    cfg = json.loads((d / "config.json").read_text())
    cfg["denoiser"]["block_out_channels"] = [16, 48]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape"):
        from_pretrained(d)
    cfg["denoiser"]["block_out_channels"] = [16, 32]
    cfg["denoiser"]["colour"] = 1
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json.*colour"):
        from_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json.*JSON"):
        from_pretrained(d)
    save_pretrained(model, d)
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        from_pretrained(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        from_pretrained(d)
    with pytest.raises(ConfigError, match="preset"):
        from_pretrained("no-such-model")


def test_missing_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    d = save_pretrained(build(TINY), tmp_path / "m")
    state = load_file(str(d / "model.safetensors"))
    key = sorted(state)[0]
    del state[key]
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing") as e:
        from_pretrained(d)
    assert key in str(e.value) and "\n" not in str(e.value)


def test_loads_a_diffusers_vqmodel_directory(tmp_path):
    from diffusers import VQModel

    vq = VQModel(block_out_channels=(8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                 up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1, latent_channels=3,
                 num_vq_embeddings=16, norm_num_groups=8)
    vq.save_pretrained(tmp_path / "ldm" / "vqvae", safe_serialization=True)
    cfg = tiny_vq()
    cfg.autoencoder = AutoencoderConfig(kind="vq", pretrained=str(tmp_path / "ldm" / "vqvae"))
    model = build(cfg).eval()
    assert model.autoencoder.latent_channels == 3
    for k, v in vq.state_dict().items():
        assert torch.equal(model.autoencoder.model.state_dict()[k], v)
    # the saved checkpoint carries the VQ weights and no longer needs the original folder
    d = save_pretrained(model, tmp_path / "ours")
    assert json.loads((d / "config.json").read_text())["autoencoder"]["pretrained"] is None
    reloaded = from_pretrained(d)
    for k, v in vq.state_dict().items():
        assert torch.equal(reloaded.autoencoder.model.state_dict()[k], v)


def test_vqmodel_directory_without_safetensors_is_refused(tmp_path):
    (tmp_path / "vqvae").mkdir()
    (tmp_path / "vqvae" / "config.json").write_text("{}")
    cfg = tiny_vq()
    cfg.autoencoder.pretrained = str(tmp_path / "vqvae")
    with pytest.raises(CheckpointError, match="safetensors"):
        build(cfg)


@pytest.mark.parametrize("section, key, value, message", [
    ("denoiser", "block_out_channels", [16, "32"], "`denoiser.block_out_channels[1]` must be an integer, got '32'"),
    ("denoiser", "attention_levels", "no", "`denoiser.attention_levels` must be a list, got 'no'"),
    ("denoiser", "predict_residual", 1, "`denoiser.predict_residual` must be true or false, got 1"),
    ("denoiser", "layers_per_block", True, "`denoiser.layers_per_block` must be an integer, got True"),
    ("schedule", "kappa", "two", "`schedule.kappa` must be a number, got 'two'"),
    ("autoencoder", "pretrained", 3, "`autoencoder.pretrained` must be a string, got 3"),
])
def test_config_value_types_are_checked_and_named(section, key, value, message):
    d = TINY.to_dict()
    d[section] = {**d[section], key: value}
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(d, source="x/config.json")
    assert str(info.value) == f"x/config.json: {message}"


def test_config_types_are_normalised_as_saved():
    d = TINY.to_dict()
    d["schedule"] = {**d["schedule"], "kappa": 2, "eta_start": "4e-4"}  # an int, and YAML 1.1's float string
    cfg = ModelConfig.from_dict(d)
    assert cfg.schedule.kappa == 2.0 and isinstance(cfg.schedule.kappa, float) and cfg.schedule.eta_start == 4e-4
    assert ModelConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
