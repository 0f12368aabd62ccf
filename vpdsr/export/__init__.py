"""Export: ONNX, fp16, INT8 (onnxruntime, modelopt, NNCF), OpenVINO IR, TensorRT engines + manifest.

Optional backends are imported inside the functions that use them, never here.
"""
from vpdsr.artifacts import ArtifactEntry, Manifest
from vpdsr.export.api import ExportOptions, export
from vpdsr.export.calibration import CalibrationSet
from vpdsr.export.targets import TARGETS, TargetSpec, parse_targets, register_target

__all__ = ["export", "ExportOptions", "CalibrationSet", "Manifest", "ArtifactEntry", "TARGETS", "TargetSpec",
           "parse_targets", "register_target"]
