"""The CLI's logging: a concise terminal, a full log file that also takes warnings and third-party noise."""
from __future__ import annotations

import io
import logging
import warnings

from vpdsr.logs import adopt, session, stdout_to_log


def test_terminal_is_concise_and_the_file_has_everything(tmp_path):
    terminal = io.StringIO()
    log_file = tmp_path / "run.log"
    self_printing = logging.getLogger("test-selfprinting")  # like NNCF: its own handler, no propagation
    own = io.StringIO()
    self_printing.addHandler(logging.StreamHandler(own))
    self_printing.propagate = False
    with session(log_file, stream=terminal):
        logging.getLogger("vpdsr.export").info("onnx: ok")
        logging.getLogger("vpdsr.export").debug("exporting fp32 ONNX graph 'model'")
        logging.warning("Axis 1 is out-of-range for weight 'w' with rank 1")  # ONNX Runtime's quantizer does this
        warnings.warn("the float32 number 1e-09 will be truncated to 1e-07", UserWarning, stacklevel=1)
        adopt("test-selfprinting")
        self_printing.warning("INFO:nncf:2 ignored nodes")
        with stdout_to_log("nncf"):
            print("Statistics collection 100% 8/8")
    assert terminal.getvalue() == "onnx: ok\n"
    text = log_file.read_text()
    for line in ("onnx: ok", "exporting fp32 ONNX graph", "Axis 1 is out-of-range", "will be truncated",
                 "2 ignored nodes", "Statistics collection"):
        assert line in text, line
    assert own.getvalue() == ""  # set aside for the session ...
    self_printing.warning("after")
    assert own.getvalue() == "after\n" and self_printing.propagate is False  # ... and given back
    assert not any(type(h).__module__ == "vpdsr.logs" for h in logging.getLogger().handlers)


def test_log_file_waits_for_its_folder(tmp_path):
    folder = tmp_path / "out"
    with session(folder / "x.log", stream=io.StringIO()):
        logging.getLogger("vpdsr").info("before the folder exists")
        assert not folder.exists()
        folder.mkdir()
        logging.getLogger("vpdsr").info("after")
    assert folder.joinpath("x.log").read_text().count("\n") == 2
    with session(tmp_path / "never" / "x.log", stream=io.StringIO()):
        logging.getLogger("vpdsr").info("a command that failed before making its folder")
    assert not (tmp_path / "never").exists()  # nothing is created for it


def test_buffered_file_is_written_at_the_end(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    with session(folder / "bench.log", buffered=True, stream=io.StringIO()):
        logging.getLogger("vpdsr.bench").info("bench: onnx: ok")
        assert not (folder / "bench.log").exists()
    assert "bench: onnx: ok" in (folder / "bench.log").read_text()


def test_without_a_log_file_other_warnings_stay_on_the_terminal():
    terminal = io.StringIO()
    with session(None, stream=terminal):
        logging.getLogger("some.library").warning("careful")
        logging.getLogger("some.library").info("chatter")
        logging.getLogger("vpdsr.upscale").info("photo.png -> out/photo_x4.png")
    assert terminal.getvalue() == "careful\nphoto.png -> out/photo_x4.png\n"


def test_distill_eval_keeps_pyiqa_off_the_terminal(tmp_path, capfd):
    from vpdsr.cli import main
    from vpdsr.metrics import perceptual

    perceptual._metric.cache_clear()  # an earlier test's PIQE would make pyiqa print nothing here
    assert main(["distill", "eval", "--model", "tiny", "--out", str(tmp_path / "ev")]) == 0
    err = capfd.readouterr().err
    assert "is created" not in err, err  # pyiqa's "Metric [PIQE] is created." lines
    assert "pyiqa: Metric [PIQE] is created." in (tmp_path / "ev" / "distill.log").read_text()
