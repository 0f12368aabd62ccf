"""`vpdsr upscale IMAGE... --model DIR_OR_PRESET --out DIR`: tiled super-resolution (the model's scale).

Each result is `OUT/<stem>_x<scale>.png`. Checked before the model is loaded: `--out` is a folder
(or can be made), and no two inputs share a file stem (they would write the same output).
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from vpdsr.commands.bench import int_or_auto
from vpdsr.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("upscale", help="super-resolve images with a model or artifact (tiled, any size)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", default="tiny", help="model directory or preset name (default: tiny)")
    p.add_argument("--out", required=True, help="output folder; each result is <name>_x<scale>.png (e.g. _x4)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino", "tensorrt"),
                   help="runner: torch without --artifact (default), else the artifact's own backend by default")
    p.add_argument("--artifact",
                   help="exported artifact folder (or export folder + --target) to run instead of --model")
    p.add_argument("--target", help="artifact name inside an export folder given as --artifact (e.g. openvino-int8)")
    p.add_argument("--device", help="cpu (default) or cuda[:N]; openvino: its device name (CPU, GPU)")
    p.add_argument("--precision", help="torch: fp32 (default), fp16, bf16; openvino: override the artifact's "
                                       "pinned execution precision (f32, bf16, f16)")
    p.add_argument("--tile", type=int_or_auto, help="tile size in LR pixels; 0 = whole image; auto (the default): "
                                                  "the whole image where a dynamic engine allows it, else the fewest "
                                                  "tiles (a static artifact's own size), chosen by measurement")
    p.add_argument("--overlap", type=int, default=16, help="tile overlap in LR pixels (default 16)")
    p.add_argument("--batch", type=int, default=4, help="tiles per inference call (default 4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vpdsr.commands.checks import distinct_outputs, output_folder
    from vpdsr.data.io import list_images, read_image, write_image
    from vpdsr.runtimes.autotile import AutoTileConfig
    from vpdsr.runtimes.tiling import TileConfig
    from vpdsr.runtimes.upscale import Upscaler

    out = output_folder(args.out)
    files = list(dict.fromkeys(f for spec in args.images for f in list_images(spec)))  # a file named twice runs once
    # before the model loads (the scale is the runner's): one stem, one output, whatever the scale
    distinct_outputs((f, out / f"{f.stem}_x<scale>.png") for f in files)
    if args.tile in (None, "auto"):
        cfg = AutoTileConfig(overlap=args.overlap, max_batch=args.batch)
    else:
        tile = args.tile or None
        cfg = TileConfig(tile=tile, overlap=args.overlap if tile else 0, batch=args.batch)
    runner = make_runner(args).activate()
    try:
        # `--tile N` given: a static artifact of another tile size is a one-line error, not a silent change
        upscaler = Upscaler(runner, cfg, args.seed, explicit_tile=args.tile not in (None, "auto"))
        scale = int(getattr(runner, "scale", 4))  # the model's (x2/x3 GAN presets), as the runner reports it
        targets = [out / f"{Path(path).stem}_x{scale}.png" for path in files]
        distinct_outputs(zip(files, targets))  # also refuses an output name that exists as a folder
        for path, target in tqdm(list(zip(files, targets)), desc="upscale", unit="img", disable=len(files) < 2):
            img = read_image(path)
            sr = upscaler(img, progress=img.shape[0] * img.shape[1] > 512 * 512)
            write_image(target, sr, bit_depth=args.bit_depth)
            print(f"{path} ({img.shape[1]}x{img.shape[0]}) -> {target} ({sr.shape[1]}x{sr.shape[0]})")
    finally:
        runner.deactivate()
    return 0


def make_runner(args):
    """The (inactive) runner of the chosen backend: torch over `--model`, or an exported `--artifact`."""
    if not args.artifact and args.backend in (None, "torch"):
        from vpdsr.runtimes.torch_runner import TorchRunner

        return TorchRunner.from_pretrained(args.model, device=args.device or "cpu", precision=args.precision or "fp32")
    if not args.artifact:
        raise InputError(f"`--backend {args.backend}` needs `--artifact PATH` (an exported artifact)")
    if args.backend == "torch":
        raise InputError("`--backend torch` runs `--model`, not an exported `--artifact`; drop one of them")
    from vpdsr.runtimes import load

    options = {k: v for k, v in (("target", args.target), ("precision", args.precision), ("device", args.device)) if v}
    return load(args.artifact, backend=args.backend, **options)
