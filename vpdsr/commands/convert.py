"""`vpdsr convert SOURCE ...`: foreign checkpoints -> vpdsr model directories (config.json + safetensors).

Each source kind lives with its model family and adds its own sub-parser through `register_cli(sub)`:
- `resshift`: ResShift v1/v2/v3 and SinSR `.pth` (Swin-UNet + VQGAN-f4);
- `realesrgan`: Real-ESRGAN / SRVGGNet from ncnn files or an official `.pth`.
A kind whose module is not part of this version is simply absent.
"""
from __future__ import annotations

import importlib

CONVERTERS = {
    "resshift": "vpdsr.models.resshift.convert",
    "realesrgan": "vpdsr.models.gan.convert",
}


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert foreign checkpoints (ResShift/SinSR, Real-ESRGAN) into vpdsr models")
    kinds = p.add_subparsers(dest="source", metavar="SOURCE")
    for module in CONVERTERS.values():
        try:
            importlib.import_module(module).register_cli(kinds)
        except ModuleNotFoundError as e:
            if e.name and (e.name == module or module.startswith(e.name + ".")):
                continue  # that converter is not part of this version
            raise
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
