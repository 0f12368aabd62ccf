"""StagedRunner: encoder -> denoiser -> decoder runners chained into one `lr, noise -> sr` Runner.

A split artifact has one graph per stage (ARCHITECTURE.md): `encoder` (lr -> y), `denoiser`
(y, noise -> x0, one student step) and `decoder` (x0 -> sr). The stages may use different
backends or precisions (e.g. an fp16 denoiser with an fp32 decoder). Tensors are handed on by
position, so the intermediate names may be anything; only `lr`, `noise` and one output per
stage are required. `stage_times` holds each stage's time of the last call (the benchmark's
per-stage latency); `last_inference_time()` is the whole chain's.
"""
from __future__ import annotations

import numpy as np

from vpdsr.artifacts import STAGES
from vpdsr.errors import ArtifactError
from vpdsr.runtimes.base import Runner


class StagedRunner(Runner):
    """Chains three stage runners.

    Example:
        >>> with StagedRunner(enc, den, dec) as r:
        ...     sr = r.infer({"lr": lr, "noise": noise})["sr"]
        ...     r.stage_times  # {"encoder": s, "denoiser": s, "decoder": s}
    """

    backend = "staged"

    def __init__(self, encoder: Runner, denoiser: Runner, decoder: Runner, name: str | None = None):
        super().__init__(name or f"staged-{denoiser.backend}", device=denoiser.device, precision=denoiser.precision)
        self.stages = {"encoder": encoder, "denoiser": denoiser, "decoder": decoder}
        self.stage_times: dict[str, float] = {}

    def activate_impl(self) -> None:
        activated = []
        try:
            for runner in self.stages.values():
                activated.append(runner.activate())
            self._check_wiring()
        except BaseException:
            for runner in activated:
                runner.deactivate()
            raise

    def deactivate_impl(self) -> None:
        for runner in self.stages.values():
            runner.deactivate()

    def _check_wiring(self) -> None:
        enc, den, dec = (self.stages[s].get_input_metadata() for s in STAGES)
        if list(enc) != ["lr"]:
            raise ArtifactError(f"{self.name}: the encoder must take one input `lr`, it takes {list(enc)}")
        if "noise" not in den or len(den) != 2:
            raise ArtifactError(f"{self.name}: the denoiser must take the latent and `noise`, it takes {list(den)}")
        if len(dec) != 1:
            raise ArtifactError(f"{self.name}: the decoder must take one input, it takes {list(dec)}")
        self._den_latent = next(n for n in den if n != "noise")
        self._dec_input = next(iter(dec))

    def input_metadata_impl(self) -> dict[str, tuple[str, tuple]]:
        return {"lr": self.stages["encoder"].get_input_metadata()["lr"],
                "noise": self.stages["denoiser"].get_input_metadata()["noise"]}

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        enc, den, dec = (self.stages[s] for s in STAGES)
        y = _single(enc.infer({"lr": feed["lr"]}), "encoder")
        x0 = _single(den.infer({self._den_latent: y, "noise": feed["noise"]}), "denoiser")
        sr = _single(dec.infer({self._dec_input: x0}), "decoder")
        self.stage_times = {s: self.stages[s].last_inference_time() for s in STAGES}
        return {"sr": sr}


def _single(outputs: dict[str, np.ndarray], stage: str) -> np.ndarray:
    if len(outputs) != 1:
        raise ArtifactError(f"the {stage} stage has {len(outputs)} outputs ({list(outputs)}), expected one")
    return next(iter(outputs.values()))
