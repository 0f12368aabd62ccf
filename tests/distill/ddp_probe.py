"""`vpdsr` exactly as the CLI runs, plus an observer: after optimizer steps 1, 2 and every 10th, each
process writes the parameters it holds to $VPDSR_PROBE_DIR/rank<R>-step<N>.safetensors (through torch's
global optimizer step hook, a public torch API), so a test can compare what the ranks hold.

Usage: accelerate launch --num_processes 2 --cpu tests/distill/ddp_probe.py distill teacher ...
"""
import os
import sys

from safetensors.torch import save_file
from torch.optim.optimizer import register_optimizer_step_post_hook

_steps: dict[int, int] = {}


def _dump(optimizer, args, kwargs) -> None:
    n = _steps[id(optimizer)] = _steps.get(id(optimizer), 0) + 1
    if n in (1, 2) or n % 10 == 0:
        tensors = {f"{g}.{k}": p.detach().cpu().contiguous()
                   for g, group in enumerate(optimizer.param_groups) for k, p in enumerate(group["params"])}
        rank = os.environ.get("RANK", "0")
        save_file(tensors, os.path.join(os.environ["VPDSR_PROBE_DIR"], f"rank{rank}-step{n}.safetensors"))


register_optimizer_step_post_hook(_dump)

if __name__ == "__main__":
    from vpdsr.cli import main

    sys.exit(main(sys.argv[1:]))
