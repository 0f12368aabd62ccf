"""What a benchmark is asked to do: one frozen config, from the command line to the report.

:class:`BenchConfig` holds the user's choices as given (`tile="auto"`, `threads="auto"`, backend names
as typed). :func:`vpdsr.bench.plan.make_plan` reads it once and decides everything else (the images,
the backends and their tilings, the thread count, the gate policy); nothing changes it afterwards, so
the config a report echoes is the one the user passed.

Example:
    >>> cfg = BenchConfig(model="tiny", images="samples:holdout", artifacts="runs/demo/artifacts")
    >>> cfg.tile  # each backend chooses its tiling, see vpdsr.runtimes.autotile
    'auto'
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vpdsr.bench.baselines import DEFAULT_GAN
from vpdsr.bench.gates import GateConfig
from vpdsr.bench.latency import LatencyConfig
from vpdsr.bench.scenarios.config import ScenarioConfig


@dataclass(frozen=True)
class BenchConfig:
    """Everything `vpdsr bench` takes (see its --help).

    Attributes:
        model: model directory or preset of the torch backends (and of the FLOP count).
        images: LR images: a folder, a file, or ``samples[:subset]``.
        artifacts: a `vpdsr export` folder (manifest.json), or None for torch backends only.
        hr: folder of HR images named like the LR ones (adds fidelity to HR and the plane).
        backends: backend names as typed (None: the reference and every manifest entry).
        reference: the backend every other one is compared with.
        device: torch device of the torch backends and of `<entry>@cuda`.
        torch_compile, cuda_graphs: torch.compile mode / CUDA graphs of the non-reference torch backends.
        seed: noise seed, the same for every backend.
        tile, overlap, batch: LR tile side (or "auto": each backend chooses), overlap, tiles per call.
        max_images: use only the first N images.
        latency: warm-up, timed runs, budget, threads ("auto": a probe decides).
        gates: thresholds, the parsed baseline report and the backend-status policy.
        clip_weights, lpips_weights: where the learned metrics' weights are (None: searched).
        baseline_path: the file `gates.baseline` was read from (echoed in the report).
        gan_baseline: a noise-free SR network's row (None or "none": no row), see bench/baselines.py.
        teacher: the teacher's row: a diffusion model's T-step samples, any other model's (a GAN's) one call.
        teacher_artifacts: the teacher's export folder: its engines are timed in the same run, as the
            backends are, into `teacher:<backend>` baseline rows (outside the gates).
        roofline: machine peaks and FLOPs per row.
        scenarios: the MLPerf scenarios each row also runs through LoadGen (vpdsr.bench.scenarios).
    """

    model: str
    images: str
    artifacts: str | None = None
    hr: str | None = None
    backends: tuple[str, ...] | None = None
    reference: str = "torch-fp32"
    device: str = "cpu"
    torch_compile: str | None = None
    cuda_graphs: bool = False
    seed: int = 0
    tile: int | str | None = "auto"
    overlap: int = 8
    batch: int = 4
    max_images: int | None = None
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    clip_weights: str | None = None
    lpips_weights: str | None = None
    baseline_path: str | None = None
    gan_baseline: str | None = DEFAULT_GAN
    teacher: str | None = None
    teacher_artifacts: str | None = None
    roofline: bool = True
    scenarios: ScenarioConfig = field(default_factory=ScenarioConfig)

    def __post_init__(self) -> None:
        if self.backends is not None and not isinstance(self.backends, tuple):  # a list from a caller: frozen too
            object.__setattr__(self, "backends", tuple(self.backends))
