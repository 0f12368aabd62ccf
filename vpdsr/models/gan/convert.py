"""Real-ESRGAN weights -> vpdsr model directories: from ncnn files or from an official basicsr `.pth`.

`vpdsr convert realesrgan --ncnn realesrgan-x4plus.param --out models/x4plus`
`vpdsr convert realesrgan --pth RealESRGAN_x4plus.pth --out models/x4plus`

Both write config.json (`_class_name` "GANSR") + model.safetensors (float32; ncnn's fp16 weights are
widened exactly) + convert.json (the sources' sha256). A `.pth` is read with `weights_only=True`
(`params_ema` first, then `params`, as Real-ESRGAN's own inference does); its architecture and sizes
come from its key names and shapes.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from vpdsr.errors import CheckpointError, ConfigError
from vpdsr.models.foreign import check_keys, convert_record_text, read_state_dict, source_record
from vpdsr.models.gan.config import ACTIVATIONS, ARCHS, GANConfig
from vpdsr.models.gan.model import GANSR
from vpdsr.models.gan.ncnn_map import gan_from_ncnn

PTH_UNWRAP = ("params_ema", "params")


def config_from_state(state: dict[str, torch.Tensor], source: str | Path, arch: str | None = None,
                      act_type: str | None = None, scale: int | None = None) -> GANConfig:
    """Infer the GANConfig of a basicsr state dict from its key names and shapes.

    Args:
        state: the tensors (basicsr names).
        source: the file, for messages.
        arch: "rrdbnet" / "srvgg" to insist on one (default: recognised from the keys).
        act_type: srvgg without PReLU slopes: "relu" or "leakyrelu" (the keys cannot tell them apart).
        scale: rrdbnet: 1, 2 or 4 (default: from conv_first's input channels, assuming 3 in and 3 out);
            srvgg: must equal what the last conv makes.
    """
    found = "rrdbnet" if "conv_first.weight" in state else "srvgg" if "body.0.weight" in state else None
    if found is None:
        raise CheckpointError(f"{source}: neither RRDBNet (conv_first.weight) nor SRVGGNetCompact (body.0.weight) "
                              f"keys; first keys: {sorted(state)[:3]}")
    if arch and arch != found:
        raise CheckpointError(f"{source}: `--arch {arch}` asked for, but the keys are those of {found}")
    if found == "rrdbnet":
        first, last = state["conv_first.weight"], state.get("conv_last.weight")
        if last is None or first.ndim != 4 or "body.0.rdb1.conv1.weight" not in state:
            raise CheckpointError(f"{source}: RRDBNet keys incomplete (conv_last.weight, body.0.rdb1.conv1.weight)")
        out_ch = int(last.shape[0])
        if scale is None:
            ratio = int(first.shape[1]) // max(out_ch, 1)
            scale = {1: 4, 4: 2, 16: 1}.get(ratio)
            if scale is None or ratio * out_ch != first.shape[1]:
                raise CheckpointError(f"{source}: conv_first takes {first.shape[1]} channels for {out_ch} out: "
                                      "pass `--scale`")
        unshuffle = {1: 4, 2: 2}.get(scale, 1)
        blocks = {int(m.group(1)) for k in state if (m := re.fullmatch(r"body\.(\d+)\.rdb1\.conv1\.weight", k))}
        return GANConfig(arch="rrdbnet", scale=scale, num_in_ch=int(first.shape[1]) // unshuffle ** 2,
                         num_out_ch=out_ch, num_feat=int(first.shape[0]), num_block=max(blocks) + 1,
                         num_grow_ch=int(state["body.0.rdb1.conv1.weight"].shape[0]))
    convs = sorted(int(m.group(1)) for k, v in state.items()
                   if (m := re.fullmatch(r"body\.(\d+)\.weight", k)) and v.ndim == 4)
    if len(convs) < 2:
        raise CheckpointError(f"{source}: SRVGGNetCompact needs at least 2 convolutions, found {len(convs)}")
    first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    in_ch = int(first.shape[1])
    upscale = math.isqrt(int(last.shape[0]) // in_ch)
    if upscale * upscale * in_ch != last.shape[0]:
        raise CheckpointError(f"{source}: the last conv has {last.shape[0]} outputs, not {in_ch} x scale^2")
    if scale is not None and scale != upscale:
        raise CheckpointError(f"{source}: `--scale {scale}` asked for, but the last conv makes x{upscale}")
    has_prelu = "body.1.weight" in state and state["body.1.weight"].ndim == 1
    if has_prelu and act_type not in (None, "prelu"):
        raise CheckpointError(f"{source}: has PReLU slopes (body.1.weight) but `--act-type {act_type}` was given")
    if not has_prelu and act_type in (None, "prelu"):
        raise CheckpointError(f"{source}: no PReLU slopes (body.1.weight): pass `--act-type relu` or `leakyrelu`")
    return GANConfig(arch="srvgg", scale=upscale, num_in_ch=in_ch, num_out_ch=in_ch, num_feat=int(first.shape[0]),
                     num_conv=len(convs) - 2, act_type="prelu" if has_prelu else act_type)


def model_from_state(cfg: GANConfig, state: dict[str, torch.Tensor], source: str | Path) -> GANSR:
    """Build `cfg` and load `state` strictly (names and shapes checked, one line on a mismatch)."""
    from vpdsr.models.checkpoint import check_state_dict

    model = GANSR(cfg)
    check_keys(model.state_dict().keys(), state.keys(), source)
    state = {k: v.to(torch.float32) for k, v in state.items()}
    check_state_dict(model, state, Path(source))
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_ncnn(param: str | Path, bin_path: str | Path | None = None) -> GANSR:
    """The torch model of an ncnn Real-ESRGAN `.param` + `.bin`."""
    cfg, state = gan_from_ncnn(param, bin_path)
    return model_from_state(cfg, state, param)


def load_pth(path: str | Path, arch: str | None = None, act_type: str | None = None,
             scale: int | None = None) -> GANSR:
    """The torch model of a basicsr `.pth` (Real-ESRGAN's official release layout)."""
    state = read_state_dict(path, unwrap=PTH_UNWRAP)
    return model_from_state(config_from_state(state, path, arch, act_type, scale), state, path)


def write_model(model: GANSR, out: str | Path, converter: str, sources: dict, preset: str | None = None) -> Path:
    """Save `model` as a vpdsr model directory with convert.json beside it (atomically)."""
    from vpdsr.models.checkpoint import save_pretrained

    if preset:
        model.config.preset = preset
    record = convert_record_text(converter, sources, config=model.config.to_dict(),
                                 num_parameters=model.num_parameters())
    return save_pretrained(model, out, extra_files={"convert.json": record})


def convert_ncnn(param: str | Path, out: str | Path, bin_path: str | Path | None = None, arch: str | None = None,
                 preset: str | None = None) -> Path:
    bin_path = Path(bin_path) if bin_path else Path(param).with_suffix(".bin")
    model = load_ncnn(param, bin_path)
    if arch and model.config.arch != arch:
        raise CheckpointError(f"{param}: `--arch {arch}` asked for, but the file is {model.config.arch}")
    return write_model(model, out, "realesrgan-ncnn", source_record(param=param, bin=bin_path), preset)


def convert_pth(path: str | Path, out: str | Path, arch: str | None = None, act_type: str | None = None,
                scale: int | None = None) -> Path:
    model = load_pth(path, arch, act_type, scale)
    return write_model(model, out, "realesrgan-pth", source_record(pth=path))


def register_cli(kinds) -> None:
    """Adds `vpdsr convert realesrgan` to the `vpdsr convert` sub-parsers."""
    p = kinds.add_parser("realesrgan", help="Real-ESRGAN RRDBNet / SRVGGNetCompact from ncnn files or a basicsr .pth")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ncnn", metavar="PARAM", help="ncnn .param file (its .bin beside it, or --bin)")
    src.add_argument("--pth", metavar="FILE", help="basicsr .pth (params_ema / params), read with weights_only=True")
    p.add_argument("--bin", metavar="BIN", help="the ncnn .bin (default: PARAM with .bin)")
    p.add_argument("--out", required=True, help="model directory to write (replaced if it exists)")
    p.add_argument("--arch", choices=ARCHS, help="insist on an architecture (default: recognised from the file)")
    p.add_argument("--act-type", choices=ACTIVATIONS, help=".pth SRVGG without PReLU slopes: relu or leakyrelu")
    p.add_argument("--scale", type=int, help=".pth RRDBNet: 1, 2 or 4 (default: from conv_first's channels)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    if args.ncnn:
        if args.act_type or args.scale:
            raise ConfigError("`--act-type` / `--scale` apply to `--pth` only (an ncnn file says both)")
        out = convert_ncnn(args.ncnn, args.out, args.bin, args.arch)
        source = args.ncnn
    else:
        if args.bin:
            raise ConfigError("`--bin` goes with `--ncnn`, not `--pth`")
        out = convert_pth(args.pth, args.out, args.arch, args.act_type, args.scale)
        source = args.pth
    from vpdsr.models.checkpoint import load_config

    cfg = load_config(out)
    size = f"{cfg.num_block} blocks" if cfg.arch == "rrdbnet" else f"{cfg.num_conv} convs, {cfg.act_type}"
    print(f"{source} -> {out}: {cfg.arch} x{cfg.scale} ({cfg.num_feat} features, {size})")  # noqa: T201 (the command's result)
    return 0
