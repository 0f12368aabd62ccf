"""The perception-distortion plane: dominance with tolerances, the Pareto front, sentences and the SVG."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from vpdsr.bench.plane import PlanePoint, dominates, pareto, perception_distortion_plane, plane_figure
from vpdsr.errors import InputError


def _points():
    return [
        PlanePoint("bicubic", 28.68, 84.0, "bicubic"),
        PlanePoint("teacher", 29.63, 80.0, "teacher"),
        PlanePoint("torch-fp32", 29.82, 76.3, "backend"),
        PlanePoint("openvino-int8", 29.81, 76.1, "backend"),  # within tolerance of torch-fp32 on both axes
        PlanePoint("tiny-perceptual", 29.10, 55.0, "backend"),
        PlanePoint("realesrgan", 27.90, 40.9, "gan"),
        PlanePoint("hr", math.inf, 30.0, "hr"),
    ]


def test_dominance_needs_a_gain_beyond_the_tolerance():
    a, b = PlanePoint("a", 29.0, 70.0), PlanePoint("b", 28.98, 70.2)
    assert not dominates(a, b, "piqe")  # 0.02 dB and 0.2 PIQE: noise
    assert dominates(a, b, "piqe", psnr_tol=0.01)
    assert dominates(a, PlanePoint("c", 28.0, 70.0), "piqe")
    assert not dominates(a, PlanePoint("d", 28.0, 60.0), "piqe")  # d has better perception: a trade-off


def test_clipiqa_is_higher_is_better():
    a, b = PlanePoint("a", 29.0, 0.60), PlanePoint("b", 28.0, 0.50)
    assert dominates(a, b, "clipiqa")
    assert not dominates(b, a, "clipiqa")
    assert not dominates(a, b, "piqe")  # read as PIQE, a's 0.60 is worse than b's 0.50


def test_front_and_dominated_points():
    front, dominated = pareto(_points(), "piqe")
    assert front == ["torch-fp32", "openvino-int8", "tiny-perceptual", "realesrgan"]
    assert sorted(dominated) == ["bicubic", "teacher"]
    assert set(dominated["bicubic"]) == {"teacher", "torch-fp32", "openvino-int8", "tiny-perceptual"}
    assert "hr" not in front and "hr" not in dominated


def test_sentences_name_the_closest_dominating_point():
    plane = perception_distortion_plane(_points(), "piqe")
    by_loser = {s.split(" dominates ")[1].split(":")[0]: s for s in plane.sentences}
    assert set(by_loser) == {"bicubic", "teacher"}
    assert by_loser["bicubic"].startswith("tiny-perceptual dominates bicubic: "
                                          "PSNR 29.10 vs 28.68 dB, PIQE 55.0 vs 84.0")
    assert "(also: " in by_loser["bicubic"]
    assert by_loser["teacher"].startswith("torch-fp32 dominates teacher") or by_loser["teacher"].startswith(
        "openvino-int8 dominates teacher")


def test_svg_has_one_marker_group_per_point_and_the_labels():
    plane = perception_distortion_plane(_points(), "piqe", title="held-out photos")
    root = ET.fromstring(plane.svg)
    assert root.tag.endswith("svg")
    text = plane.svg
    for name in ("bicubic", "tiny-perceptual", "realesrgan", "hr", "Pareto front", "held-out photos"):
        assert name in text


@pytest.mark.parametrize("metric, inverted", [("piqe", True), ("clipiqa", False)])
def test_better_perception_is_drawn_higher_up(metric, inverted):
    pts = [PlanePoint("low", 28.0, 0.2, "bicubic"), PlanePoint("high", 29.0, 0.8, "backend")]
    ax = plane_figure(pts, metric).axes[0]
    assert bool(ax.yaxis_inverted()) is inverted
    offsets = [tuple(c.get_offsets()[0]) for c in ax.collections]
    assert offsets == [(28.0, 0.2), (29.0, 0.8)]
    assert ax.get_xlabel().startswith("PSNR vs HR")


def test_bad_points_are_one_line_input_errors():
    with pytest.raises(InputError, match="at least one point"):
        perception_distortion_plane([], "piqe")
    with pytest.raises(InputError, match="unique names"):
        pareto([PlanePoint("a", 1, 2), PlanePoint("a", 2, 3)])
    with pytest.raises(InputError, match="`kind`"):
        pareto([PlanePoint("a", 1, 2, "server")])
    with pytest.raises(InputError, match="must be one of piqe, clipiqa"):
        pareto([PlanePoint("a", 1, 2)], "niqe")
    with pytest.raises(InputError, match="must be numbers"):
        pareto([PlanePoint("a", 1, float("nan"))])
    with pytest.raises(InputError, match="only allowed for kind `hr`"):
        pareto([PlanePoint("a", math.inf, 2)])


def test_a_hundredth_of_a_db_decides_nothing():
    """Within the PSNR tolerance two points tie, whichever side the difference falls: 0.01 dB above or below the
    other point gives the same verdict (it used to decide it)."""
    a = PlanePoint("a", 29.00, 70.0)
    assert dominates(a, PlanePoint("b", 28.99, 71.0), "piqe")
    assert dominates(a, PlanePoint("c", 29.01, 71.0), "piqe")  # 0.01 dB better, 1.0 PIQE worse: a still wins
    assert not dominates(PlanePoint("f", 29.0, 70.0), PlanePoint("g", 29.04, 70.4), "piqe")  # within both
    assert not dominates(a, PlanePoint("h", 29.06, 71.0), "piqe")  # 0.06 dB is beyond the tolerance: a trade-off


def test_the_report_section_says_which_tolerances_decided():
    from vpdsr.bench.plane_report import markdown_lines, plane_section

    def row(name, psnr, piqe, kind=None):
        out = {"name": name, "status": "ok", "quality": {"psnr_vs_hr": psnr, "piqe": piqe, "clipiqa": None}}
        return {**out, "kind": kind} if kind else out

    section = plane_section([row("onnx", 28.26, 76.3), row("ort-int8", 28.27, 77.3)], [row("bicubic", 27.2, 81.0,
                                                                                           "bicubic")])
    assert section["tolerance"] == {"psnr_db": 0.05, "piqe": 0.5}
    assert section["dominated"]["ort-int8"] == ["onnx"]  # 0.01 dB less, 1.0 PIQE better: onnx dominates
    text = "\n".join(markdown_lines(section))
    assert "tolerances: 0.05 dB PSNR, 0.5 PIQE" in text
