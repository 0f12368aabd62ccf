"""Parity of vpdsr's ResShift port with the reference implementation (run by hand, not by pytest).

    python tests/models/resshift/reference_parity.py --reference /path/to/ResShift --config resshift-tiny \\
        --sizes 16x16 32x48 --golden tests/models/resshift/golden.json
    python tests/models/resshift/reference_parity.py --reference /path/to/ResShift \\
        --yaml /path/to/ResShift/configs/realsr_swinunet_realesrgan256_journal.yaml --sizes 64x64 64x128
    python tests/models/resshift/reference_parity.py --reference /path/to/SinSR --yaml /path/to/SinSR/configs/SinSR.yaml

`--reference` is a checkout of github zsyOAOA/ResShift or wyf0912/SinSR (its `models/` and `ldm/`
are imported; it needs timm, einops, omegaconf). Random weights in the official layout
(`official.random_official_states`) are saved with torch.save, converted with `vpdsr convert resshift`
and loaded into the reference's own UNetModelSwin / VQModelTorch (strict, after checking that the
reference's key list and buffers equal what the converter expects). Then, on the same LR images and
noise: the one-step output (t = T-1 from x_T = y + kappa sqrt(eta_T) noise: the reference's
`p_mean_variance(...)["pred_xstart"]`, or SinSR's `p_sample_loop(one_step=True)`) and the T-step
sampler (`p_sample_loop` with the same global-RNG draws) are compared, reporting max and mean |diff|
of the [0, 1] outputs. `--golden` writes the reference's output slices for the tests.
"""
from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tests.models.resshift.official import (  # noqa: E402
    make_inputs,
    random_official_states,
    reference_params,
    save_official,
    write_resshift_yaml,
)
from vpdsr.models import from_pretrained  # noqa: E402
from vpdsr.models.checkpoint import build  # noqa: E402
from vpdsr.models.resshift.configs import builtin_config  # noqa: E402
from vpdsr.models.resshift.convert import official_shapes  # noqa: E402
from vpdsr.models.resshift.yaml_config import SINSR_ETAS_START_CAP, is_sinsr_layout, load_resshift_yaml  # noqa: E402

SLICE = (slice(0, 1), slice(None), slice(0, 2), slice(0, 4))  # sr[0, :, :2, :4]: 24 numbers per image


def build_reference(repo: Path, params: dict):
    sys.path.insert(0, str(repo))
    from ldm.models.autoencoder import VQModelTorch
    from models.script_util import create_gaussian_diffusion
    from models.unet import UNetModelSwin

    return UNetModelSwin(**params["unet"]).eval(), VQModelTorch(**params["vq"]).eval(), \
        create_gaussian_diffusion(**params["diffusion"])


def check_reference_layout(ref_unet, ref_vq, ours) -> dict:
    """The reference's keys/shapes/buffers equal what our converter expects: exact key coverage."""
    expected = official_shapes(ours)
    got = {"unet": {k: tuple(v.shape) for k, v in ref_unet.state_dict().items()},
           "autoencoder": {k: tuple(v.shape) for k, v in ref_vq.state_dict().items()}}
    for part in expected:
        missing, extra = set(got[part]) - set(expected[part]), set(expected[part]) - set(got[part])
        assert not missing and not extra, (part, sorted(missing)[:5], sorted(extra)[:5])
        bad = [k for k in expected[part] if expected[part][k] != got[part][k]]
        assert not bad, (part, bad[:5])
    return {part: len(keys) for part, keys in got.items()}


def reference_one_step(diffusion, unet, vq, lq, noise, sinsr_api: bool):
    """(sr in [0, 1], x0 latent) of the reference's one-step sampling."""
    kwargs = {"lq": lq} if unet.cond_lq else None
    if sinsr_api:  # SinSR's own one-step sampler (apply_decoder=True decodes this same latent)
        z = diffusion.p_sample_loop(y=lq, model=unet, first_stage_model=vq, noise=noise, clip_denoised=False,
                                    model_kwargs=kwargs, one_step=True, apply_decoder=False)["sample"]
    else:
        z_y = diffusion.encode_first_stage(lq, vq, up_sample=True)
        z_t = diffusion.prior_sample(z_y, noise)
        t = torch.full((lq.shape[0],), diffusion.num_timesteps - 1, dtype=torch.long)
        z = diffusion.p_mean_variance(unet, z_t, z_y, t, clip_denoised=False, model_kwargs=kwargs)["pred_xstart"]
    return diffusion.decode_first_stage(z, vq).clamp(-1.0, 1.0) * 0.5 + 0.5, z


def reference_teacher(diffusion, unet, vq, lq, noise, seed: int):
    """(sr in [0, 1], the final latent): `p_sample_loop`'s steps, then its decode."""
    torch.manual_seed(seed)
    kwargs = {"lq": lq} if unet.cond_lq else None
    for step in diffusion.p_sample_loop_progressive(y=lq, model=unet, first_stage_model=vq, noise=noise,
                                                    clip_denoised=False, model_kwargs=kwargs):
        z = step["sample"]
    return diffusion.decode_first_stage(z, vq).clamp(-1.0, 1.0) * 0.5 + 0.5, z


def code_flips(ours, z_ours: torch.Tensor, z_ref: torch.Tensor) -> int:
    """Positions whose nearest codebook entry differs between the two latents (a near-tie in argmin
    turns a 1e-6 latent difference into a different 4x4 pixel block)."""
    q = ours.autoencoder.quantize
    s = ours.config.diffusion.scale_factor
    return int((q.indices(z_ours / s) != q.indices(z_ref / s)).sum())


def diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a - b).abs()
    return {"max": float(d.max()), "mean": float(d.mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", required=True, type=Path, help="checkout of zsyOAOA/ResShift or wyf0912/SinSR")
    ap.add_argument("--config", default="resshift-tiny", help="built-in config name (ignored with --yaml)")
    ap.add_argument("--yaml", type=Path, help="a YAML of the reference repository (its params build the reference)")
    ap.add_argument("--sizes", nargs="+", default=["16x16", "32x48"], help="LR sizes HxW")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--golden", type=Path, help="write the reference's output slices here (tiny configs)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--keys", type=Path, help="write the reference's official key -> shape lists here")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)

    if args.yaml:
        cfg = load_resshift_yaml(args.yaml)
        from omegaconf import OmegaConf

        doc = OmegaConf.to_container(OmegaConf.load(args.yaml), resolve=True)
        sinsr = is_sinsr_layout(doc["model"]["params"])
        params = {"unet": doc["model"]["params"], "vq": doc["autoencoder"]["params"],
                  "diffusion": doc["diffusion"]["params"]}
    else:
        cfg = builtin_config(args.config)
        sinsr = (args.reference / "main_distill.py").exists()  # SinSR's checkout
        if sinsr:  # SinSR's code also bounds sqrt(eta_1) by sqrt(0.001); the same model in our terms has it set
            cfg.diffusion.etas_start_cap = SINSR_ETAS_START_CAP
        params = reference_params(cfg, sinsr)
    ours_init = build(cfg, seed=1)
    states = random_official_states(ours_init, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        unet_pth, vq_pth = save_official(states, Path(tmp))
        out_dir = Path(tmp) / "converted"
        # a built-in config goes through the YAML reader too, in the reference's own layout
        config_arg = args.yaml or write_resshift_yaml(cfg, Path(tmp) / "config.yaml", sinsr=sinsr)
        cmd = [sys.executable, "-m", "vpdsr.cli", "convert", "resshift", "--config", str(config_arg),
               "--unet", str(unet_pth), "--autoencoder", str(vq_pth), "--out", str(out_dir)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
        convert_s = time.perf_counter() - t0
        ours = from_pretrained(out_dir)

    ref_unet, ref_vq, ref_diff = build_reference(args.reference, params)
    coverage = check_reference_layout(ref_unet, ref_vq, ours)
    if args.keys:
        keys = {part: {k: list(v.shape) for k, v in m.state_dict().items()} for part, m in
                (("unet", ref_unet), ("autoencoder", ref_vq))}
        args.keys.write_text(json.dumps({"config": str(args.yaml or args.config), **keys}, indent=0) + "\n")
    ref_unet.load_state_dict(states["unet"], strict=True)
    ref_vq.load_state_dict(states["autoencoder"], strict=True)
    sinsr_api = "one_step" in inspect.signature(ref_diff.p_sample_loop).parameters
    report = {"reference": str(args.reference), "config": str(args.yaml or args.config), "seed": args.seed,
              "one_step_via": "p_sample_loop(one_step=True)" if sinsr_api else "p_mean_variance(t=T-1).pred_xstart",
              "official_keys": coverage, "convert_s": round(convert_s, 2), "sizes": {}}
    golden = {"config": args.config, "seed": args.seed, "slice": "sr[0, :, :2, :4]", "sizes": {}}
    for i, size in enumerate(args.sizes):
        h, w = map(int, size.split("x"))
        lr, noise = make_inputs(h, w, cfg.autoencoder.embed_dim, 1000 + i)
        t0 = time.perf_counter()
        ref, z_ref = reference_one_step(ref_diff, ref_unet, ref_vq, lr * 2 - 1, noise, sinsr_api)
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        mine = ours(lr, noise)
        t_ours = time.perf_counter() - t0
        z_ours = ours.student_step(ours.encode(lr), noise, lr)
        # decoded without the codebook lookup: all of the network but the argmin
        plain_ref = ref_vq.decode(z_ref / ref_diff.scale_factor, force_not_quantize=True).clamp(-1, 1) * 0.5 + 0.5
        plain_ours = ours.autoencoder.decode(z_ours / ours.config.diffusion.scale_factor,
                                             quantize=False).clamp(-1, 1) * 0.5 + 0.5
        entry = {"one_step": {**diff(mine, ref), "latent": diff(z_ours, z_ref),
                              "code_flips": code_flips(ours, z_ours, z_ref),
                              "decoded_without_codebook": diff(plain_ours, plain_ref)},
                 "sr_mean": float(ref.mean()), "sr_std": float(ref.std()),
                 "clamped_fraction": float(((ref <= 0) | (ref >= 1)).float().mean()),
                 "seconds": {"reference": round(t_ref, 2), "ours": round(t_ours, 2)}}
        gold = {"input_seed": 1000 + i, "one_step": ref[SLICE].flatten().tolist()}
        if not args.no_teacher:
            ref_t, z_ref = reference_teacher(ref_diff, ref_unet, ref_vq, lr * 2 - 1, noise, seed=77)
            torch.manual_seed(77)
            z_ours = ours.teacher_sample_latent(ours.encode(lr), noise, lr)
            mine_t = ours.decode(z_ours)
            entry["teacher"] = {**diff(mine_t, ref_t), "latent": diff(z_ours, z_ref),
                                "code_flips": code_flips(ours, z_ours, z_ref), "positions": z_ref[0, 0].numel()}
            gold["teacher"] = ref_t[SLICE].flatten().tolist()
        report["sizes"][size] = entry
        golden["sizes"][size] = gold
        print(size, json.dumps(entry), flush=True)
    if args.golden:
        args.golden.write_text(json.dumps(golden, indent=1) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
