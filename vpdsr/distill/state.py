"""Training state on disk without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a directory written atomically (vpdsr.utils.atomic_directory):

    modules.safetensors    "<name>.<param>" for each trained module (denoiser, discriminator) and EMA
    optimizers.safetensors "<name>.<param index>.<key>" for each optimizer's per-parameter tensors
    rng.safetensors        torch's CPU (and CUDA) generator states (uint8 tensors)
    state.json             step, optimizer param groups and scalar state, scheduler states

accelerate's `save_state` pickles optimizer and RNG states, so it is not used.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from vpdsr.errors import CheckpointError
from vpdsr.utils import atomic_directory

STATE_NAME = "state.json"
TENSOR_FILES = ("modules.safetensors", "optimizers.safetensors", "rng.safetensors")


def save_training_state(directory: Path, step: int, modules: dict[str, torch.nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, object],
                        extra_tensors: dict[str, torch.Tensor] | None = None, extra: dict | None = None) -> Path:
    """Write the whole training state to `directory` atomically (replacing an older one)."""
    from safetensors.torch import save_file

    mod_tensors = {f"{n}.{k}": v.detach().cpu().contiguous()
                   for n, m in modules.items() for k, v in m.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        mod_tensors[k] = v.detach().cpu().contiguous()
    opt_tensors, opt_json = {}, {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars = {}
        for idx, st in sd["state"].items():
            for key, val in st.items():
                if torch.is_tensor(val):
                    opt_tensors[f"{name}.{idx}.{key}"] = val.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[key] = val
        opt_json[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"torch_cuda_{i}"] = s
    state = {
        "step": step,
        "optimizers": opt_json,
        "schedulers": {n: _jsonable(s.state_dict()) for n, s in schedulers.items()},
        "extra": extra or {},
    }
    with atomic_directory(Path(directory)) as tmp:
        save_file(mod_tensors, str(tmp / "modules.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizers.safetensors"))
        save_file(rng, str(tmp / "rng.safetensors"))
        (tmp / STATE_NAME).write_text(json.dumps(state, indent=1))
    return Path(directory)


def check_training_state(directory: Path) -> dict:
    """Read state.json and every tensor file's header (cheap: no tensor is loaded); returns state.json.

    `--resume` runs this on every checkpoint it will use before any training starts.

    Raises:
        CheckpointError: one line naming the file that is missing, corrupt or truncated.
    """
    from safetensors import safe_open

    directory = Path(directory)
    path = directory / STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a training checkpoint (no {STATE_NAME})")
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt training checkpoint (not valid JSON: {e}); "
                              "delete the checkpoint folder to start over") from None
    if not (isinstance(state, dict) and isinstance(state.get("step"), int)
            and all(isinstance(state.get(k), dict) for k in ("optimizers", "schedulers"))):
        raise CheckpointError(f"{path}: not a vpdsr training state (expected `step`, `optimizers`, `schedulers`)")
    for name in TENSOR_FILES:
        try:
            with safe_open(str(directory / name), "pt") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 - missing, truncated or not safetensors: all one answer
            raise CheckpointError(f"{directory / name}: corrupt or missing ({' '.join(str(e).split())[:200]}); "
                                  "delete the checkpoint folder to start over") from None
    return state


def load_training_state(directory: Path, modules: dict[str, torch.nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, object]) -> dict:
    """Restore what `save_training_state` wrote; returns state.json's dict plus `tensors` (the extra tensors).

    Raises:
        CheckpointError: a file is corrupt, or the tensors do not fit the modules and optimizers.
    """
    try:
        return _load_training_state(Path(directory), modules, optimizers, schedulers)
    except CheckpointError:
        raise
    except (KeyError, ValueError, RuntimeError, OSError) as e:  # torch's load_state_dict raises RuntimeError
        raise CheckpointError(f"{directory}: training checkpoint does not fit this run "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None


def _load_training_state(directory: Path, modules: dict[str, torch.nn.Module],
                         optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, object]) -> dict:
    from safetensors.torch import load_file

    state = check_training_state(directory)
    tensors = load_file(str(directory / "modules.safetensors"))
    for name, module in modules.items():
        prefix = name + "."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(sd, strict=True)
    opt_tensors = load_file(str(directory / "optimizers.safetensors"))
    for name, opt in optimizers.items():
        saved = state["optimizers"][name]
        per_param: dict[int, dict] = {}
        for key, val in opt_tensors.items():
            n, idx, k = key.split(".", 2)
            if n == name:
                per_param.setdefault(int(idx), {})[k] = val
        for idx, scalars in saved["scalars"].items():
            per_param.setdefault(int(idx), {}).update(scalars)
        opt.load_state_dict({"state": per_param, "param_groups": saved["param_groups"]})
    for name, sched in schedulers.items():
        sched.load_state_dict(state["schedulers"][name])
    rng = load_file(str(directory / "rng.safetensors"))
    torch.set_rng_state(rng["torch_cpu"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    state["tensors"] = {k: v for k, v in tensors.items() if not any(k.startswith(n + ".") for n in modules)}
    return state


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: None))
