"""`vpdsr convert resshift`: official ResShift / SinSR `.pth` files -> a vpdsr model directory.

    vpdsr convert resshift --config resshift-v3 --unet resshift_realsrx4_s4_v3.pth \\
        --autoencoder autoencoder_vq_f4.pth --out models/resshift-v3

`--config` is a built-in name (resshift-v1, resshift-v2, resshift-v3, sinsr) or a YAML file in
ResShift's own layout. The `.pth` files are read with `torch.load(weights_only=True)` only; a
top-level `state_dict` is unwrapped and `module.` / `_orig_mod.` prefixes are stripped. Key names
map one to one (UNet -> `unet.*`, VQGAN -> `autoencoder.*`); the reference's `attn_mask` buffers are
derived from the config here, so they are checked against it and dropped. The output directory
(config.json, model.safetensors, convert.json with the sources' sha256) is written atomically.
"""
from __future__ import annotations

from pathlib import Path

import torch

from vpdsr.errors import CheckpointError
from vpdsr.models.checkpoint import build, save_pretrained
from vpdsr.models.foreign import CONVERT_NAME, check_keys, convert_record_text, read_state_dict, source_record
from vpdsr.models.resshift.configs import BUILTIN, ResShiftConfig, builtin_config
from vpdsr.models.resshift.model import ResShiftSR
from vpdsr.models.resshift.swin import BasicLayer, shifted_window_mask
from vpdsr.models.resshift.yaml_config import load_resshift_yaml

PARTS = {"unet": "unet.", "autoencoder": "autoencoder."}  # official file -> our state-dict prefix


def derived_buffers(model: ResShiftSR) -> dict[str, torch.Tensor]:
    """The reference UNet's `attn_mask` buffers (training-size masks of the shifted blocks), by official key."""
    out = {}
    for name, module in model.unet.named_modules():
        if isinstance(module, BasicLayer):
            for i, block in enumerate(module.blocks):
                if block.shift_size:
                    r = module.resolution
                    out[f"{name}.blocks.{i}.attn_mask"] = shifted_window_mask(r, r, block.window_size, block.shift_size)
    return out


def official_shapes(model: ResShiftSR) -> dict[str, dict[str, tuple[int, ...]]]:
    """{"unet": {key: shape}, "autoencoder": {key: shape}}: what the official files hold for this config."""
    state = model.state_dict()
    out = {part: {k[len(p):]: tuple(v.shape) for k, v in state.items() if k.startswith(p)} for part, p in PARTS.items()}
    out["unet"].update({k: tuple(v.shape) for k, v in derived_buffers(model).items()})
    return out


def load_official(model: ResShiftSR, states: dict[str, dict[str, torch.Tensor]], sources: dict[str, str]) -> dict:
    """Copy official state dicts into `model` after checking keys, shapes and derived buffers.

    Args:
        model: a freshly built model of the config.
        states: {"unet": state, "autoencoder": state} in the official key layout.
        sources: {"unet": name, "autoencoder": name} for messages.

    Returns:
        {"cast": [...keys cast to float32], "derived_checked": n} for convert.json.
    """
    expected = official_shapes(model)
    derived = derived_buffers(model)
    ours = model.state_dict()
    merged, cast = {}, []
    for part, prefix in PARTS.items():
        state, src = states[part], sources[part]
        check_keys(expected[part], state, src)
        for key, value in state.items():
            if tuple(value.shape) != expected[part][key]:
                raise CheckpointError(f"{src}: tensor {key!r} has shape {tuple(value.shape)}, the config expects "
                                      f"{expected[part][key]} (is --config the one these weights were trained with?)")
            if part == "unet" and key in derived:
                if not torch.equal(value.to(derived[key].dtype), derived[key]):
                    raise CheckpointError(f"{src}: buffer {key!r} differs from the mask this config implies "
                                          "(window_size / image_size do not match the weights)")
                continue
            target = ours[prefix + key]
            if key.endswith("relative_position_index"):
                if not torch.equal(value.long(), target):
                    raise CheckpointError(f"{src}: buffer {key!r} differs from the window layout this config implies")
            if value.dtype != target.dtype:
                if not value.is_floating_point():
                    raise CheckpointError(f"{src}: tensor {key!r} is {value.dtype}, expected {target.dtype}")
                cast.append(key)
            merged[prefix + key] = value.to(target.dtype)
    model.load_state_dict(merged, strict=True)
    return {"cast_to_float32": len(cast), "derived_buffers_checked": len(derived)}


def resolve_config(spec: str) -> tuple[ResShiftConfig, dict]:
    """A built-in name or a ResShift-layout YAML path -> (config, its record for convert.json)."""
    if spec in BUILTIN or not Path(spec).exists():
        return builtin_config(str(spec)), {"name": str(spec)}  # a name, or a one-line error listing them
    cfg = load_resshift_yaml(spec)
    return cfg, source_record(config=spec)["config"]


def convert(config: str, unet: str | Path, autoencoder: str | Path, out: str | Path, preset: str | None = None) -> Path:
    """Convert official weights into a vpdsr model directory at `out` (replaced atomically)."""
    cfg, config_record = resolve_config(config)
    if preset:
        cfg.preset = preset
    states = {"unet": read_state_dict(unet), "autoencoder": read_state_dict(autoencoder)}
    with torch.no_grad():
        model = build(cfg, seed=0)
        report = load_official(model, states, {"unet": str(unet), "autoencoder": str(autoencoder)})
    record = convert_record_text("resshift", source_record(unet=unet, autoencoder=autoencoder),
                                 config=config_record, **report)
    return save_pretrained(model.eval(), out, extra_files={CONVERT_NAME: record})


def register_cli(kinds) -> None:
    p = kinds.add_parser("resshift", help="ResShift v1/v2/v3 or SinSR .pth (Swin-UNet + VQGAN-f4)")
    p.add_argument("--config", required=True,
                   help="a ResShift/SinSR YAML config, or one of "
                        + ", ".join(n for n in BUILTIN if n != "resshift-tiny"))
    p.add_argument("--unet", required=True,
                   help="the diffusion network's .pth (e.g. resshift_realsrx4_s4_v3.pth, SinSR_v1.pth)")
    p.add_argument("--autoencoder", required=True, help="the VQGAN's .pth (autoencoder_vq_f4.pth)")
    p.add_argument("--out", required=True, help="model directory to write (config.json + model.safetensors)")
    p.add_argument("--preset", default=None, help="name recorded as the model's preset (default: the config's)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    out = convert(args.config, args.unet, args.autoencoder, args.out, args.preset)
    print(f"converted: {out} (load it with --model {out})")  # noqa: T201 (the command's result)
    return 0
