"""`vpdsr upscale IMAGE... --model DIR_OR_PRESET --out DIR`: tiled x4 super-resolution."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from vpdsr.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("upscale", help="x4 super-resolve images (tiled, any size)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", default="tiny", help="model directory or preset name (default: tiny)")
    p.add_argument("--out", required=True, help="output folder; each result is <name>_x4.png")
    p.add_argument("--backend", default="torch", help="torch (default) or an exported artifact's backend")
    p.add_argument("--artifact", help="exported artifact (folder or manifest entry) to run instead of --model")
    p.add_argument("--device", default="cpu", help="torch device for --backend torch (cpu, cuda)")
    p.add_argument("--tile", type=int, default=128, help="tile size in LR pixels; 0 = whole image (default 128)")
    p.add_argument("--overlap", type=int, default=16, help="tile overlap in LR pixels (default 16)")
    p.add_argument("--batch", type=int, default=4, help="tiles per inference call (default 4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vpdsr.data.io import list_images, read_image, write_image
    from vpdsr.runtimes.tiling import TileConfig

    files = [f for spec in args.images for f in list_images(spec)]
    cfg = TileConfig(tile=args.tile or None, overlap=args.overlap if args.tile else 0, batch=args.batch)
    upscaler = make_upscaler(args)
    out = Path(args.out)
    for path in tqdm(files, desc="upscale", unit="img", disable=len(files) < 2):
        img = read_image(path)
        sr = upscaler(img, cfg)
        target = out / f"{Path(path).stem}_x4.png"
        write_image(target, sr, bit_depth=args.bit_depth)
        print(f"{path} ({img.shape[1]}x{img.shape[0]}) -> {target} ({sr.shape[1]}x{sr.shape[0]})")
    return 0


def make_upscaler(args):
    """Returns `fn(img HWC float32, TileConfig) -> sr HWC float32` for the chosen backend."""
    from vpdsr.runtimes.noise import NoiseField
    from vpdsr.runtimes.tiling import upscale_tiled

    infer, channels = _torch_infer(args.model, args.device) if args.backend == "torch" and not args.artifact \
        else _artifact_infer(args)

    def upscale(img: np.ndarray, cfg) -> np.ndarray:
        lr = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
        big = lr.shape[1] * lr.shape[2] > 512 * 512
        sr = upscale_tiled(infer, lr, NoiseField(args.seed, channels), cfg, progress=big)
        return sr.transpose(1, 2, 0)

    return upscale


def _torch_infer(model_spec: str, device: str):
    import torch

    from vpdsr.models import from_pretrained

    model = from_pretrained(model_spec, device=device)

    @torch.inference_mode()
    def infer(lr: np.ndarray, noise: np.ndarray) -> np.ndarray:
        sr = model(torch.from_numpy(lr).to(device), torch.from_numpy(noise).to(device))
        return sr.float().cpu().numpy()

    return infer, model.latent_channels


def _artifact_infer(args):
    if not args.artifact:
        raise InputError(f"`--backend {args.backend}` needs `--artifact PATH` (an exported artifact)")
    try:
        from vpdsr.runtimes import load
    except ImportError:
        raise InputError("exported artifacts are not supported by this version (no vpdsr.runtimes.load)") from None
    runner = load(args.artifact, backend=args.backend)
    runner.activate()
    return runner.as_tile_fn(), runner.noise_channels
