"""Scenario settings and plan: every bad setting is one line (exit 2) before any work; each engine's pool."""
import pytest

from vpdsr.bench.backends import BackendSpec, torch_spec
from vpdsr.bench.scenarios.config import SCENARIOS, ScenarioConfig, parse_scenarios
from vpdsr.bench.scenarios.lanes import BATCHED, SERIAL, SESSIONS, STREAMS, plan_lanes
from vpdsr.bench.scenarios.plan import check_gates, plan_scenarios
from vpdsr.errors import InputError


def specs():
    return [torch_spec("torch-fp32", "tiny", "cpu"),
            BackendSpec("onnx", "onnx", "onnxruntime", "fp32"),
            BackendSpec("onnx@untuned", "onnx", "onnxruntime", "fp32", extra={"untuned": True}),
            BackendSpec("openvino-int8", "openvino-int8", "openvino", "int8", device="CPU"),
            BackendSpec("tensorrt-fp16", "tensorrt-fp16", "tensorrt", "fp16", device="cuda", status="skipped",
                        reason="no GPU")]


@pytest.mark.parametrize("kwargs, message", [
    ({"scenarios": ("offline", "sever")}, "unknown scenario 'sever'"),
    ({"scenarios": ("offline", "offline")}, "names a scenario twice"),
    ({"scenarios": ("server",), "latency_bound_ms": 0.0}, "`--latency-bound-ms` must be > 0"),
    ({"scenarios": ("server",), "latency_bound_ms": -5.0}, "`--latency-bound-ms` must be > 0"),
    ({"min_duration_s": 0.0}, "`--scenario-min-duration-s` must be > 0"),
    ({"min_duration_s": 10.0, "max_duration_s": 5.0}, "must be >= `--scenario-min-duration-s`"),
    ({"server_runs": 0}, "`--server-runs` must be an integer >= 1"),
    ({"lanes": 0}, "`--scenario-lanes` must be an integer >= 1 or auto"),
    ({"multi_stream_samples": 1.5}, "`--multi-stream-samples` must be an integer >= 1"),
])
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(InputError, match=message) as e:
        ScenarioConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_scenario_names_in_their_order():
    assert parse_scenarios("server,single-stream") == ("server", "single-stream")
    assert ScenarioConfig(scenarios=parse_scenarios("server,single-stream")).scenarios == ("single-stream", "server")
    assert parse_scenarios("all") == SCENARIOS and parse_scenarios(None) == ()
    with pytest.raises(InputError, match="empty"):
        parse_scenarios(" , ")


def test_gates_need_their_scenario():
    check_gates(ScenarioConfig(scenarios=("offline", "server")), 2.0, 100.0)
    with pytest.raises(InputError, match="add `--scenario offline`"):
        check_gates(ScenarioConfig(scenarios=("server",)), 2.0, None)
    with pytest.raises(InputError, match="add `--scenario server`"):
        check_gates(ScenarioConfig(), None, 100.0)
    with pytest.raises(InputError, match="`--min-offline-ips` must be > 0"):
        check_gates(ScenarioConfig(scenarios=("offline",)), 0.0, None)


def test_each_engine_gets_its_own_pool():
    torch_row, onnx, _, ov, trt = specs()
    assert plan_lanes(torch_row, "auto").kind == BATCHED
    sessions = plan_lanes(onnx, "auto", cpus=2)
    assert (sessions.kind, sessions.lanes, sessions.threads) == (SESSIONS, 2, 1)
    assert plan_lanes(onnx, 1, cpus=2).threads == 2  # one session: every CPU
    assert plan_lanes(ov, "auto").kind == STREAMS and plan_lanes(ov, "auto").lanes is None  # OpenVINO decides
    assert plan_lanes(ov, 3).lanes == 3
    assert plan_lanes(trt, "auto").kind == SERIAL


def test_cuda_graphs_take_one_batch_at_a_time():
    graphs = BackendSpec("torch-fp16-graphs", "torch-fp16-graphs", "torch", "fp16", device="cuda",
                         extra={"cuda_graphs": True})
    assert plan_lanes(graphs, "auto").kind == BATCHED  # the batcher's one dispatcher thread replays the graphs
    with pytest.raises(InputError, match="CUDA graphs"):
        plan_lanes(graphs, 4)


def test_plan_picks_the_rows_that_run():
    pytest.importorskip("mlperf_loadgen")
    sp = plan_scenarios(ScenarioConfig(scenarios=("offline",)), specs())
    assert sp.backends == {"torch-fp32", "onnx", "openvino-int8"}  # not @untuned, not a skipped row
    assert sp.runs("onnx") and not sp.runs("onnx@untuned") and sp.loadgen
    assert plan_scenarios(ScenarioConfig(), specs()).backends == frozenset()  # no --scenario: nothing
    named = plan_scenarios(ScenarioConfig(scenarios=("offline",), backends=("onnx",)), specs())
    assert named.backends == {"onnx"}
    with pytest.raises(InputError, match="not a backend of this run"):
        plan_scenarios(ScenarioConfig(scenarios=("offline",), backends=("onxx",)), specs())
    with pytest.raises(InputError, match="the scenarios run on the tuned row"):
        plan_scenarios(ScenarioConfig(scenarios=("offline",), backends=("onnx@untuned",)), specs())


def test_without_loadgen_scenarios_are_skipped_unless_a_gate_needs_them(monkeypatch):
    from vpdsr.bench.scenarios import loadgen
    from vpdsr.errors import MissingDependencyError

    monkeypatch.setattr(loadgen, "missing_reason", lambda: "MLPerf LoadGen is not installed: pip install x")
    sp = plan_scenarios(ScenarioConfig(scenarios=("offline",)), specs())
    assert sp.skipped.startswith("MLPerf LoadGen is not installed")
    with pytest.raises(MissingDependencyError, match="scenario gates need MLPerf LoadGen"):
        plan_scenarios(ScenarioConfig(scenarios=("offline",)), specs(), gated=True)
