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
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino", "tensorrt"),
                   help="runner: torch without --artifact (default), else the artifact's own backend by default")
    p.add_argument("--artifact", help="exported artifact folder (or export folder + --target) to run instead of --model")
    p.add_argument("--target", help="artifact name inside an export folder given as --artifact (e.g. openvino-int8)")
    p.add_argument("--device", help="cpu (default) or cuda[:N]; openvino: its device name (CPU, GPU)")
    p.add_argument("--precision", help="torch: fp32 (default), fp16, bf16; openvino: override the artifact's "
                                       "pinned execution precision (f32, bf16, f16)")
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

    infer, channels = _artifact_infer(args) if args.artifact or args.backend not in (None, "torch") \
        else _torch_infer(args.model, args.device or "cpu", args.precision or "fp32")

    def upscale(img: np.ndarray, cfg) -> np.ndarray:
        lr = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
        big = lr.shape[1] * lr.shape[2] > 512 * 512
        sr = upscale_tiled(infer, lr, NoiseField(args.seed, channels), cfg, progress=big)
        return sr.transpose(1, 2, 0)

    return upscale


def _torch_infer(model_spec: str, device: str, precision: str = "fp32"):
    from vpdsr.runtimes.torch_runner import TorchRunner

    runner = TorchRunner.from_pretrained(model_spec, device=device, precision=precision).activate()
    return runner.as_tile_fn(), runner.noise_channels


def _artifact_infer(args):
    if not args.artifact:
        raise InputError(f"`--backend {args.backend}` needs `--artifact PATH` (an exported artifact)")
    from vpdsr.runtimes import load

    options = {}
    if args.target:
        options["target"] = args.target
    if args.precision:
        options["precision"] = args.precision
    if args.device:
        options["device"] = args.device
    if args.backend == "torch":
        raise InputError("`--backend torch` runs `--model`, not an exported `--artifact`; drop one of them")
    runner = load(args.artifact, backend=args.backend, **options)
    runner.activate()
    return runner.as_tile_fn(), runner.noise_channels
