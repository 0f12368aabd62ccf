"""Benchmarks: latency and quality drift per backend, regression gates, reports.

Example:
    >>> from vpdsr.bench import BenchConfig, run_bench, write_report
    >>> result = run_bench(BenchConfig(model="tiny", artifacts="artifacts", images="samples:holdout"))
    >>> write_report("bench-report", result)  # report.json, report.md, report.html
"""
from vpdsr.bench.config import BenchConfig
from vpdsr.bench.gates import Gate, GateConfig, evaluate, read_baseline
from vpdsr.bench.harness import BenchResult, run_bench
from vpdsr.bench.latency import LatencyConfig, LatencyStats, PeakMemory, measure, summarize
from vpdsr.bench.report import markdown, write_report

__all__ = [
    "BenchConfig", "BenchResult", "Gate", "GateConfig", "LatencyConfig", "LatencyStats", "PeakMemory",
    "evaluate", "markdown", "measure", "read_baseline", "run_bench", "summarize", "write_report",
]
