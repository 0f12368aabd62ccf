"""Which backends run the MLPerf scenarios and how: decided with the benchmark's plan, before any work.

Bad settings are one-line errors (exit 2) here, before an image is upscaled: an unknown scenario or a
latency bound <= 0 (:class:`.config.ScenarioConfig` checks itself), `--scenario-backends` naming a
backend this run does not have or an `@untuned` row (those rows time the engine defaults from before the
CPU tuning; the scenarios run on the tuned row), a pool a backend cannot take (:func:`.lanes.plan_lanes`),
and a scenario gate without its scenario or without LoadGen. Where LoadGen is not installed and no gate
needs it, every scenario row is skipped with that reason and the rest of the benchmark runs as without
`--scenario`.

Example:
    >>> sp = plan_scenarios(ScenarioConfig(scenarios=("offline",)), specs)
    >>> sp.runs("onnx"), sp.lanes["onnx"].kind
    (True, 'sessions')
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vpdsr.bench.scenarios import loadgen
from vpdsr.bench.scenarios.config import OFFLINE, SERVER, ScenarioConfig
from vpdsr.bench.scenarios.lanes import LanePlan, plan_lanes
from vpdsr.errors import InputError, MissingDependencyError

UNTUNED_SUFFIX = "@untuned"


@dataclass(frozen=True)
class ScenarioPlan:
    """Attributes:
        config: the scenario settings; backends: the rows that run them; lanes: each one's pool;
        skipped: why no scenario runs here (LoadGen missing), else None; loadgen: LoadGen's version.
    """

    config: ScenarioConfig
    backends: frozenset[str] = frozenset()
    lanes: dict[str, LanePlan] = field(default_factory=dict)
    skipped: str | None = None
    loadgen: str | None = None

    def runs(self, name: str) -> bool:
        return self.config.enabled and name in self.backends

    def summary(self) -> dict | None:
        """The report's `scenarios` section (None without --scenario)."""
        if not self.config.enabled:
            return None
        return {"config": self.config.to_dict(), "loadgen": self.loadgen, "skipped": self.skipped,
                "backends": sorted(self.backends), "note": self.config.shorter_than_mlperf()}


def check_gates(cfg: ScenarioConfig, min_offline_ips: float | None, max_server_p99_ms: float | None) -> None:
    """A scenario gate needs its scenario (and a positive threshold)."""
    for flag, value, scenario in (("--min-offline-ips", min_offline_ips, OFFLINE),
                                  ("--max-server-p99-ms", max_server_p99_ms, SERVER)):
        if value is None:
            continue
        if not value > 0:
            raise InputError(f"`{flag}` must be > 0, got {value}")
        if scenario not in cfg.scenarios:
            raise InputError(f"`{flag}` gates the {scenario} scenario: add `--scenario {scenario}`")


def plan_scenarios(cfg: ScenarioConfig, specs, gated: bool = False) -> ScenarioPlan:
    """The scenario plan of a run whose rows are `specs` (:class:`vpdsr.bench.backends.BackendSpec`, reference first).

    Args:
        gated: a scenario gate is set (then LoadGen missing is an error, not a skip).

    Raises:
        InputError: a bad `--scenario-backends` name or a pool a backend cannot take.
        MissingDependencyError: a scenario gate is set and LoadGen is not installed.
    """
    if not cfg.enabled:
        return ScenarioPlan(cfg)
    missing = loadgen.missing_reason()
    if missing and gated:
        raise MissingDependencyError(f"the scenario gates need MLPerf LoadGen: {missing}")
    if cfg.backends is None:
        chosen = [s for s in specs if s.runs and not s.name.endswith(UNTUNED_SUFFIX)]
    else:
        chosen = []
        for name in cfg.backends:
            if name.endswith(UNTUNED_SUFFIX):
                raise InputError(f"`--scenario-backends`: {name} times the engine defaults from before the CPU tuning; "
                                 f"the scenarios run on the tuned row ({name.removesuffix(UNTUNED_SUFFIX)})")
            match = [s for s in specs if name in (s.name, s.target) and not s.name.endswith(UNTUNED_SUFFIX)]
            if not match:
                raise InputError(f"`--scenario-backends`: {name} is not a backend of this run (its backends: "
                                 f"{', '.join(s.name for s in specs)})")
            chosen += [s for s in match if s not in chosen]
    lanes = {s.name: plan_lanes(s, cfg.lanes) for s in chosen}
    return ScenarioPlan(cfg, frozenset(lanes), lanes, skipped=missing, loadgen=loadgen.version())
