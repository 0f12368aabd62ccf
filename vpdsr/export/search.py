"""Per-layer sensitivity and the greedy search for the fastest INT8 configuration within a budget.

Backend-free: a backend supplies `run(kept) -> outputs`, which builds the INT8 graph with the
quantizable nodes `kept` held in float (on top of the float policy), runs it on the validation
tiles and returns its outputs; a :class:`Search` scores them against the torch fp32 references
with the budget's metric and remembers every configuration it has scored.

The search (ONNX Runtime and modelopt; OpenVINO uses NNCF's own accuracy control):
1. all-INT8 (the policy only). Within the budget: done, nothing added.
2. Ranking: each layer group kept in float alone, scored; gain = its score - all-INT8's.
3. Greedy revert: add groups in descending gain (ties: the cheaper first), re-scoring after each
   (effects are not additive), until the budget holds. With every group in float and still outside
   the budget: :class:`BudgetUnreachable`.
4. Prune: try to quantize each kept group again, the most expensive (MACs) first; keep it
   quantized if the budget still holds. Then descend: the same for the sub-modules of each group
   still kept, down to single nodes (at most `refine_limit` tries), so what stays in float is what
   the budget needs, at the granularity the tries allow.

Sensitivity (`--sensitivity`): for every group both "this group alone in float" (gain) and "only this
group INT8" (loss against everything-in-float), written as a table and a plot (`sensitivity.py`).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vpdsr.export.budget import Budget
from vpdsr.export.float_policy import LayerGroup, split_group
from vpdsr.export.validation import ValidationFailed

log = logging.getLogger(__name__)
REFINE_LIMIT = 32


class BudgetUnreachable(ValidationFailed):
    """Even with every quantizable layer in float the budget does not hold (the message says the figure)."""


@dataclass
class Scored:
    kept: frozenset
    score: float
    values: list[float]


@dataclass
class Search:
    """Scores INT8 configurations (`kept`: nodes held in float beyond the policy) and remembers each one.

    Attributes:
        budget: the metric and its value (the metric also scores without a budget, for `--sensitivity`).
        groups: the layer groups (`float_policy.layer_groups`) of the quantizable nodes.
        run: builds the configuration and returns its outputs (HxWx3) on the validation tiles.
        refs: torch fp32 outputs on the same tiles.
        label: the target's name, for the log.
        node_macs: MACs per node (ordering the refinement: the most expensive parts are tried first).
    """

    budget: Budget
    groups: list[LayerGroup]
    run: Callable[[list[str]], list[np.ndarray]]
    refs: list[np.ndarray]
    label: str = "int8"
    node_macs: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)
    _scorer: Callable | None = None
    _order: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._scorer = self.budget.scorer(self.refs)
        self._order = {n: i for i, n in enumerate(n for g in self.groups for n in g.nodes)}
        self.started = time.perf_counter()

    @property
    def evaluations(self) -> int:
        return len(self._cache)

    @property
    def all_nodes(self) -> list[str]:
        return [n for g in self.groups for n in g.nodes]

    def score(self, kept) -> Scored:
        key = frozenset(kept)
        if key not in self._cache:
            values = [float(v) for v in self._scorer(self.run(sorted(key, key=self._order.get)))]
            self._cache[key] = Scored(key, self.budget.aggregate(values), values)
            log.debug(f"{self.label}: {len(key)} node(s) in float -> {self.budget.metric} "
                      f"{self._cache[key].score:.4g} (evaluation {len(self._cache)})")
        return self._cache[key]

    # -- sensitivity ------------------------------------------------------------------------------
    def sensitivity(self, both: bool = True) -> list[dict]:
        """One row per group: gain kept alone in float, and (both) loss quantized alone; sorted by loss."""
        base, full = self.score(()), self.score(self.all_nodes) if both else None
        total = sum(g.macs for g in self.groups) or 1
        rows = []
        for i, g in enumerate(self.groups):
            log.info(f"{self.label}: sensitivity {i + 1}/{len(self.groups)}: {g.name}")
            row = {"group": g.name, "nodes": len(g.nodes), "macs": g.macs, "macs_share": round(g.macs / total, 4),
                   "float_alone": _r(self.score(g.nodes).score),
                   "gain_float_alone": _r(self.budget.better(self.score(g.nodes).score, base.score))}
            if both:
                alone = self.score([n for n in self.all_nodes if n not in set(g.nodes)]).score
                row["int8_alone"] = _r(alone)
                row["loss_int8_alone"] = _r(self.budget.better(full.score, alone))
            row["node_names"] = list(g.nodes)
            rows.append(row)
        key = "loss_int8_alone" if both else "gain_float_alone"
        rows.sort(key=lambda r: -_finite(r[key]))
        return rows

    # -- budget search ----------------------------------------------------------------------------
    def fastest_within_budget(self, refine_limit: int = REFINE_LIMIT) -> Scored:
        """The configuration the module docstring's steps 1-4 find; raises BudgetUnreachable."""
        base = self.score(())
        if self.budget.holds(base.score):
            log.info(f"{self.label}: all-INT8 {self.budget.metric} {base.score:.4g} meets {self.budget}: nothing added")
            return base
        log.info(f"{self.label}: all-INT8 {self.budget.metric} {base.score:.4g} misses {self.budget}: "
                 f"ranking {len(self.groups)} layer groups")
        gains = {g.name: self.budget.better(self.score(g.nodes).score, base.score) for g in self.groups}
        ranked = sorted(self.groups, key=lambda g: (-_finite(gains[g.name]), g.macs))
        kept: list[LayerGroup] = []
        current = base
        for g in ranked:
            kept.append(g)
            current = self.score(_nodes(kept))
            log.info(f"{self.label}: + {g.name} in float -> {current.score:.4g}")
            if self.budget.holds(current.score):
                break
        else:
            raise BudgetUnreachable(f"budget {self.budget} unreachable: with every quantizable layer in float "
                                    f"{self.budget.metric} is {current.score:.4g} (all-INT8 {base.score:.4g})")
        for g in sorted(kept, key=lambda g: -g.macs):  # prune: the most expensive first
            trial = self.score(_nodes([k for k in kept if k is not g]))
            if self.budget.holds(trial.score):
                kept.remove(g)
                current = trial
                log.info(f"{self.label}: - {g.name} quantized again -> {trial.score:.4g}")
        return self._refine(kept, current, refine_limit)

    def _refine(self, kept: list[LayerGroup], current: Scored, limit: int) -> Scored:
        """Descend into the kept groups: quantize sub-modules (then single nodes) again while the budget holds."""
        nodes = set(_nodes(kept))
        queue = sorted(kept, key=lambda g: -g.macs)
        tries = 0
        while queue and tries < limit:
            for part in sorted(self._parts(queue.pop(0)), key=lambda g: -g.macs):
                if tries >= limit:
                    break
                tries += 1
                trial = self.score(nodes - set(part.nodes))
                if self.budget.holds(trial.score):
                    nodes -= set(part.nodes)
                    current = trial
                elif len(part.nodes) > 1:
                    queue.append(part)
        if tries:
            log.info(f"{self.label}: refined inside the kept groups ({tries} tries): {len(nodes)} node(s) in float "
                     f"-> {current.score:.4g}")
        return current

    def _parts(self, group: LayerGroup) -> list[LayerGroup]:
        """Sub-modules of a group (`float_policy.split_group`), or its single nodes when it has none."""
        parts = split_group(group)
        if len(parts) <= 1:
            parts = [LayerGroup(n, [n]) for n in group.nodes] if len(group.nodes) > 1 else []
        for p in parts:
            p.macs = sum(self.node_macs.get(n, 0) for n in p.nodes)
        return parts

    def _group_of(self, node: str) -> LayerGroup:
        return next(g for g in self.groups if node in g.nodes)

    def summary(self, final: Scored, kept_groups: Sequence[str] | None = None) -> dict:
        """The manifest's `accuracy_control` figures for `final` (all-INT8 and fp32-everything if scored)."""
        base = self.score(())
        groups = kept_groups if kept_groups is not None else \
            [g.name for g in self.groups if set(g.nodes) & final.kept]
        return {"budget": str(self.budget), "holds": self.budget.holds(final.score),
                "metric_all_int8": _r(base.score), "metric_final": _r(final.score),
                "metric_final_per_tile": [_r(v) for v in final.values],
                "kept_float_added": sorted(final.kept, key=self._order.get), "kept_float_groups": list(groups),
                "evaluations": self.evaluations, "seconds": round(time.perf_counter() - self.started, 1)}


def _nodes(groups: Sequence[LayerGroup]) -> list[str]:
    return [n for g in groups for n in g.nodes]


def _finite(v) -> float:
    return v if v is not None and math.isfinite(v) else -math.inf


def _r(v: float) -> float:
    return round(float(v), 4)


def side_by_side_ms(infers: dict[str, Callable[[], object]], rounds: int = 12, warmup: int = 2) -> dict[str, float]:
    """Median wall time (ms) of each `infer()`, the calls interleaved round by round.

    Interleaving spreads a shared machine's load changes over every configuration alike, so the
    ratios hold even when the absolute figures drift.
    """
    for fn in infers.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in infers}
    for _ in range(rounds):
        for label, fn in infers.items():
            t = time.perf_counter()
            fn()
            times[label].append((time.perf_counter() - t) * 1e3)
    return {k: round(float(np.median(v)), 3) for k, v in times.items()}
