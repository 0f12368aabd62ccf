"""The learned f=4 autoencoder stage writes a diffusers directory that a model config can load."""
from __future__ import annotations

import pytest

from tests.distill.conftest import tiny_config
from vpdsr.distill.autoencoder import train_autoencoder
from vpdsr.distill.config import load_config
from vpdsr.errors import ConfigError


@pytest.mark.slow
def test_train_tiny_vq_and_load_it_as_pretrained(tmp_path, train_images):
    from vpdsr.models import build

    ae = {"kind": "vq", "latent_channels": 3, "block_out_channels": [8, 8, 8], "layers_per_block": 1,
          "num_vq_embeddings": 16}
    cfg = tiny_config(train_images, autoencoder_training={"steps": 2, "optim": {"warmup_steps": 0}})
    cfg["model"]["autoencoder"] = ae
    target = train_autoencoder(load_config(cfg), tmp_path, progress=False)
    assert (target / "config.json").is_file() and list(target.glob("*.safetensors"))
    cfg["model"]["autoencoder"] = {**ae, "pretrained": str(target)}
    model = build(load_config(cfg).model_config())
    assert model.latent_channels == 3


def test_space_to_depth_has_nothing_to_train(tmp_path, train_images):
    with pytest.raises(ConfigError, match="nothing to train"):
        train_autoencoder(load_config(tiny_config(train_images)), tmp_path, progress=False)
