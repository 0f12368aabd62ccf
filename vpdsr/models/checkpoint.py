"""Save/load a model as a directory: config.json + model.safetensors (diffusers style, never pickled)."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from vpdsr.errors import CheckpointError, ConfigError
from vpdsr.models.config import CONFIG_NAME, WEIGHTS_NAME
from vpdsr.models.families import SRModel, config_from_dict, family_of
from vpdsr.models.presets import get_preset, preset_names, preset_weights
from vpdsr.utils import _umask, atomic_directory, read_json

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


def save_pretrained(model: SRModel, directory: str | Path, extra_files: dict[str, str] | None = None) -> Path:
    """Write `directory` atomically: a killed save never leaves a directory that loads.

    Args:
        model: the model to save.
        directory: target folder (replaced if it exists).
        extra_files: optional {name: text} written beside the weights (e.g. a training summary).
    """
    from safetensors.torch import save_file

    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "autoencoder") and hasattr(cfg.autoencoder, "pretrained"):
        cfg.autoencoder.pretrained = None  # its weights are in our file now
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        save_config(cfg, tmp)
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "library": "vpdsr"})
        os.chmod(tmp / WEIGHTS_NAME, 0o666 & ~_umask())  # safetensors writes 0600; a model folder is shared
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return directory


def from_pretrained(name_or_path: str | Path, seed: int = 0, device: str | torch.device = "cpu") -> SRModel:
    """Load a model directory, or build a preset (shipped weights if the package has them, else seeded init).

    Example:
        >>> model = from_pretrained("tiny")            # preset
        >>> model = from_pretrained("runs/x/student")  # directory with config.json + model.safetensors
    """
    path = Path(name_or_path)
    if path.is_dir():
        model = load_directory(path)
    elif str(name_or_path) in preset_names():
        name = str(name_or_path)
        shipped, provider = SHIPPED / name, preset_weights(name)
        if provider is not None:
            model = load_directory(Path(provider()))
        elif (shipped / WEIGHTS_NAME).is_file():
            model = load_directory(shipped)
        else:
            model = build(get_preset(name), seed)
    elif path.exists():
        raise CheckpointError(f"{path}: expected a model directory (config.json + {WEIGHTS_NAME}), got a file")
    else:
        raise ConfigError(f"`--model` {name_or_path!r} is neither a directory nor a preset "
                          f"({', '.join(preset_names())})")
    return model.to(device).eval()


def build(cfg, seed: int = 0) -> SRModel:
    """A freshly initialised model of `cfg`'s family; the seed makes the init reproducible without
    touching global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return family_of(cfg).build(cfg)


def save_config(cfg, directory: Path) -> Path:
    """Write any family's config as `directory/config.json` (atomically)."""
    import json

    from vpdsr.utils import atomic_write_text

    return atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(cfg.to_dict(), indent=2) + "\n")


def load_config(directory: Path):
    """The config of a model directory, parsed by its family (`_class_name`); one-line CheckpointError."""
    path = Path(directory) / CONFIG_NAME
    data = read_json(path, CheckpointError, f"missing; a model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        return config_from_dict(data, source=str(path))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def load_directory(directory: Path) -> SRModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = load_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing; {CONFIG_NAME} is there but not its weights")
    try:
        model = family_of(cfg).build(cfg)
    except ConfigError as e:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {e}") from None
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    check_state_dict(model, state, weights)
    model.load_state_dict(state, strict=True)
    return model


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Raise a one-line CheckpointError naming the first mismatch between `state` and `model`."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: {len(missing)} tensor(s) missing for the config's architecture, "
                              f"e.g. {missing[0]!r}")
    if unexpected:
        raise CheckpointError(f"{source}: {len(unexpected)} tensor(s) not in the config's architecture, "
                              f"e.g. {unexpected[0]!r}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: tensor {k!r} has shape {tuple(state[k].shape)}, the config expects {tuple(v.shape)}"
            )
        if state[k].dtype != v.dtype:
            raise CheckpointError(f"{source}: tensor {k!r} is {state[k].dtype}, expected {v.dtype}")
