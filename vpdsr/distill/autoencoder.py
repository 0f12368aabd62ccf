"""Training a learned f=4 autoencoder (`vq` or `kl`, for `base`) with offline reconstruction losses.

Losses (ours; no perceptual network, so nothing needs downloaded weights): L1 in pixels, HFP
(Haar high-frequency L1, vpdsr.distill.losses.hfp_loss), plus the VQ commitment loss (`vq`) or a
small KL term (`kl`). The result is a diffusers directory (config.json + safetensors) that a
model config uses through `model.autoencoder.pretrained`. Loading a pretrained f=4 VQGAN instead
(e.g. the LDM x4 upscaler's `vqvae/`) needs no training: set `pretrained` directly.

The `tiny` preset's autoencoder is the lossless space_to_depth and is never trained: learned
f=4 autoencoders trained for minutes on 2 CPU cores capped everything behind them at 24-25 dB.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def train_autoencoder(cfg, out: str | Path, progress: bool = True) -> Path:
    """Train `cfg.model_config().autoencoder` (vq/kl) on the run's crops; returns OUT/autoencoder.

    Args:
        cfg: a DistillConfig (its `autoencoder_training`, `data`, `seed`, `accelerate` sections).
        out: output folder; the diffusers directory goes to OUT/autoencoder.
    """
    from tqdm import tqdm

    from vpdsr.data.degrade import DegradationConfig
    from vpdsr.distill.config import StageConfig
    from vpdsr.distill.data import CropDataset
    from vpdsr.distill.loop import make_accelerator
    from vpdsr.distill.losses import hfp_loss, pixel_loss
    from vpdsr.distill.optim import lr_lambda, make_optimizer
    from vpdsr.errors import ConfigError
    from vpdsr.models.autoencoder import DiffusersAutoencoder

    acfg = cfg.model_config().autoencoder
    if acfg.kind not in ("vq", "kl"):
        raise ConfigError(f"`model.autoencoder.kind` {acfg.kind!r} has nothing to train (expected vq or kl)")
    tc = cfg.autoencoder_training
    acc = make_accelerator(cfg, 1)
    torch.manual_seed(cfg.seed)
    ae = DiffusersAutoencoder(acfg).model
    data = CropDataset(cfg.data.images, cfg.data.crop_size, DegradationConfig.from_dict({"mode": "bicubic"}), cfg.seed,
                       cfg.data.augment)
    opt, sched = make_optimizer(ae.parameters(), tc.optim, lr_lambda(StageConfig(steps=tc.steps, optim=tc.optim)))
    ae, opt = acc.prepare(ae, opt)
    net = acc.unwrap_model(ae)
    t0 = time.perf_counter()
    bar = tqdm(range(1, tc.steps + 1), desc="autoencoder", disable=not progress or None)
    for step in bar:
        hr = data.batch(step, 0, cfg.data.batch_size, "test").hr.to(acc.device) * 2 - 1
        if acfg.kind == "vq":
            out_ = net.decode(net.encode(hr).latents)
            rec, extra = out_.sample, tc.commit * out_.commit_loss.mean()
        else:
            post = net.encode(hr).latent_dist
            rec, extra = net.decode(post.sample()).sample, tc.kl * post.kl().mean()
        loss = tc.l1 * pixel_loss(rec, hr) + tc.hfp * hfp_loss(rec, hr) + extra
        acc.backward(loss)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
    target = Path(out) / "autoencoder"
    if acc.is_main_process:
        from vpdsr.utils import atomic_directory

        with atomic_directory(target) as tmp:
            net.save_pretrained(str(tmp), safe_serialization=True)
    log.info(f"autoencoder: {tc.steps} steps in {time.perf_counter() - t0:.0f} s -> {target}")
    return target
