"""Distill stage: teacher training (ResShift) and VPD-SR one-step distillation."""
from vpdsr.distill.api import DistillResult, run_distill
from vpdsr.distill.config import DistillConfig, load_config

__all__ = ["DistillConfig", "DistillResult", "load_config", "run_distill"]
