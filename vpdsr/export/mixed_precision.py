"""What `--int8-budget` and `--sensitivity` ask of an INT8 builder, and the part every backend shares.

`export()` makes one :class:`Int8Plan` (the budget, the validation tiles and their torch fp32
outputs, the model's MACs per module) when either flag is given; an INT8 builder that sees
`ctx.int8` calls :func:`choose_kept` with its quantizable nodes and a `run(kept) -> outputs`
function, and builds its artifact with the nodes it returns held in float (on top of the float
policy). ONNX Runtime and modelopt use the greedy search of `search.py`; OpenVINO uses NNCF's
`quantize_with_accuracy_control` with the same metric (`openvino_ir.py`) and only the
sensitivity table from here.

The validation tiles must not share a photo with the calibration set, and the calibration set none
with the held-out photos the export validates on: one-line InputErrors before anything is built.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vpdsr.errors import InputError
from vpdsr.export.budget import DEFAULT_VAL, VAL_COUNT, VAL_SEED, Budget, ValidationTiles, source_hashes, torch_outputs
from vpdsr.export.calibration import CalibrationSet, refuse_overlap
from vpdsr.export.float_policy import layer_groups, node_macs
from vpdsr.export.search import REFINE_LIMIT, Search
from vpdsr.export.sensitivity import write_sensitivity

log = logging.getLogger(__name__)
SENSITIVITY_MODES = ("groups", "nodes")
MAX_GROUPS = 24
LATENCY_RUNS = 10


@dataclass
class BudgetOptions:
    """The export's `--int8-budget` / `--sensitivity` / `--budget-*` settings (all enter the cache key).

    Attributes:
        budget: "psnr-vs-ref:40" etc., or None.
        sensitivity: None, "groups" (layer groups, `float_policy.layer_groups`) or "nodes" (every node).
        images, count, seed: the validation tiles (`budget.ValidationTiles`): source, crops, seed.
        max_groups: layer groups the search and the table use.
        refine: at most this many tries inside the kept groups (search.py, step 4).
    """

    budget: str | None = None
    sensitivity: str | None = None
    images: str = DEFAULT_VAL
    count: int = VAL_COUNT
    seed: int = VAL_SEED
    max_groups: int = MAX_GROUPS
    refine: int = REFINE_LIMIT

    def validate(self, tile: int, stages: str) -> BudgetOptions:
        if self.budget is not None:
            Budget.parse(self.budget).check_tile(tile)
        if self.sensitivity is not None and self.sensitivity not in SENSITIVITY_MODES:
            raise InputError(f"`--sensitivity` must be one of {', '.join(SENSITIVITY_MODES)}, got {self.sensitivity!r}")
        if self.active and stages != "fused":
            raise InputError("`--int8-budget` / `--sensitivity` measure the whole model: use --stages fused")
        if self.count < 1:
            raise InputError(f"`--budget-count` must be at least 1, got {self.count}")
        if self.max_groups < 1:
            raise InputError(f"`max_groups` must be at least 1, got {self.max_groups}")
        return self

    @property
    def active(self) -> bool:
        return self.budget is not None or self.sensitivity is not None


@dataclass
class Int8Plan:
    """Everything an INT8 builder needs to honour the flags (made once per export).

    Attributes:
        options: the flags.
        feeds: the validation tiles (feed dicts); `validation` their description for the manifest.
        refs: torch fp32 outputs on them (HxWx3).
        macs: MACs per module path (`float_policy.module_macs`).
    """

    options: BudgetOptions
    feeds: list[dict]
    validation: dict
    refs: list[np.ndarray]
    macs: dict[str, int]

    @property
    def budget(self) -> Budget | None:
        return Budget.parse(self.options.budget) if self.options.budget else None

    @property
    def metric(self) -> Budget:
        """The budget, or the metric the sensitivity table uses without one (PSNR vs torch fp32)."""
        return self.budget or Budget("psnr-vs-ref", 0.0)

    def describe(self) -> dict:
        """What enters the cache key and the entry: the flags and the validation tiles' description."""
        return {**asdict(self.options), "validation": self.validation}

    def save(self, folder: Path) -> Path:
        """Write the plan for a child process (`load`): plan.json + plan.npz in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"feed{i}:{k}": v for i, f in enumerate(self.feeds) for k, v in f.items()}
        arrays.update({f"ref{i}": r for i, r in enumerate(self.refs)})
        np.savez(folder / "plan.npz", **arrays)
        (folder / "plan.json").write_text(json.dumps({"options": asdict(self.options), "validation": self.validation,
                                                      "macs": self.macs, "n": len(self.feeds)}))
        return folder

    @classmethod
    def load(cls, folder: Path) -> Int8Plan:
        meta = json.loads((Path(folder) / "plan.json").read_text())
        arrays = np.load(Path(folder) / "plan.npz")
        feeds = [{k.split(":", 1)[1]: arrays[k] for k in arrays.files if k.startswith(f"feed{i}:")}
                 for i in range(meta["n"])]
        refs = [arrays[f"ref{i}"] for i in range(meta["n"])]
        return cls(BudgetOptions(**meta["options"]), feeds, meta["validation"], refs, meta["macs"])


def make_plan(model, opts: BudgetOptions, calib: CalibrationSet, tile: int,
              heldout: tuple[str, int | None]) -> Int8Plan:
    """The validation tiles, their torch fp32 outputs and the model's MACs; refuses overlapping photo sets.

    Args:
        heldout: (source, max_images) of the held-out photos the export validates on.
    """
    from vpdsr.export.float_policy import module_macs

    tiles = ValidationTiles(opts.images, opts.count, tile, model.latent_channels, opts.seed)
    held = source_hashes(*heldout)
    refuse_overlap({"calibration": calib.image_hashes(), "budget validation": tiles.image_hashes()})
    refuse_overlap({"calibration": calib.image_hashes(), "held-out validation": held})
    shared = set(tiles.image_hashes().values()) & set(held.values())
    if shared:
        log.warning("the budget validation photos include held-out photos: the final figures are then "
                    "measured on what the search tuned on")
    log.info(f"INT8 budget/sensitivity: {len(tiles)} validation tile(s) from {opts.images}, torch fp32 reference")
    feeds = tiles.feeds()
    return Int8Plan(opts, feeds, tiles.describe(), torch_outputs(model, feeds), module_macs(model, feeds[0]))


def choose_kept(plan: Int8Plan, target: str, candidates: list[str], run: Callable[[list[str]], list[np.ndarray]],
                folder: Path, search: bool = True) -> tuple[list[str], dict]:
    """Sensitivity table (if asked) and the greedy budget search (if a budget is set and `search`).

    Args:
        search: run the budget search (False: OpenVINO, whose budget NNCF's accuracy control handles).
        candidates: the quantizable nodes of the all-INT8 graph (policy nodes excluded), in graph order.
        run: builds the graph with these nodes held in float and returns its outputs on `plan.tiles`.
        folder: the artifact folder (the sensitivity files go there).

    Returns:
        (nodes to hold in float beyond the policy, entry options to merge).

    Raises:
        search.BudgetUnreachable: the budget cannot be met even with every candidate in float.
    """
    macs = node_macs(candidates, plan.macs)
    groups = layer_groups(candidates, 0 if plan.options.sensitivity == "nodes" else plan.options.max_groups, macs)
    searcher = Search(plan.metric, groups, run, plan.refs, label=target, node_macs=macs)
    options: dict = {}
    if plan.options.sensitivity:
        rows = searcher.sensitivity()
        options["sensitivity"] = write_sensitivity(
            folder, target, plan.metric, plan.budget is not None, rows, searcher.score(()).score,
            searcher.score(searcher.all_nodes).score, plan.validation)
    if plan.budget is None or not search:
        return [], options
    final = searcher.fastest_within_budget(plan.options.refine)
    options["accuracy_control"] = {"method": "sensitivity ranking + greedy revert (vpdsr.export.search)",
                                   **searcher.summary(final), "groups": len(groups),
                                   "validation": plan.validation}
    return options["accuracy_control"]["kept_float_added"], options
