"""Logging of the CLI: a concise terminal and a full log file in the run's output folder.

The library logs under `vpdsr.*` (stdlib `logging`) and configures nothing. A CLI command opens a
:func:`session`, which for its duration attaches two handlers to the root logger:
- the terminal (stderr): vpdsr's own INFO+ records only, one line each, written around tqdm
  bars: stage headers and one summary line per target or backend;
- the log file: everything, DEBUG+ from vpdsr and INFO+ from everyone else, including Python
  warnings (`logging.captureWarnings`) and the third-party loggers that print by themselves
  (ONNX Runtime's quantizer logs on the root logger; NNCF and torch keep their own stdout/stderr
  handlers, which are set aside for the session, see :func:`adopt`).

The file is written only once its folder exists (a command that fails on bad input before it
creates its output folder leaves nothing behind); `buffered=True` holds every line until the end,
for a folder that is replaced as a whole while the command runs (the bench report).

Example:
    >>> with session(Path("runs/x/pipeline.log")):  # doctest: +SKIP
    ...     logging.getLogger("vpdsr.export").info("onnx: ok")
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Third-party loggers that do not propagate to the root (their own stream handlers).
SELF_PRINTING = ("nncf", "torch")

_active: list[_Session] = []


def _is_ours(record: logging.LogRecord) -> bool:
    return record.name == "vpdsr" or record.name.startswith("vpdsr.")


class TerminalHandler(logging.Handler):
    """vpdsr's INFO+ records as plain lines on a stream, through `tqdm.write` so bars stay intact.

    `others=True` (no log file to take them): other loggers' warnings and errors are shown too.
    """

    def __init__(self, stream=None, others: bool = False):
        super().__init__(logging.INFO)
        self.stream = stream if stream is not None else sys.stderr
        self.addFilter(lambda r: _is_ours(r) or (others and r.levelno >= logging.WARNING))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise into the program
            self.handleError(record)


class LogFileHandler(logging.Handler):
    """Appends to `path` once its folder exists; until then (or, `buffered`, until close) holds the lines."""

    def __init__(self, path: Path, buffered: bool = False):
        super().__init__(logging.DEBUG)
        self.path = Path(path)
        self.buffered = buffered
        self.setFormatter(logging.Formatter(FILE_FORMAT))
        self._lines: list[str] = []
        self._file = None

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the session
        self._file.writelines(line + "\n" for line in self._lines)
        self._lines.clear()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self._file is None and not self.buffered and self.path.parent.is_dir():
                self._open()
            if self._file is None:
                self._lines.append(line)
            else:
                self._file.write(line + "\n")
                self._file.flush()
        except Exception:  # logging must never raise into the program
            self.handleError(record)

    def close(self) -> None:
        try:
            if self._file is None and self._lines and self.path.parent.is_dir():
                self._open()
            if self._file is not None:
                self._file.close()
                self._file = None
        finally:
            super().close()


class _Session:
    def __init__(self, handlers: list[logging.Handler]):
        self.handlers = handlers
        self.adopted: dict[str, tuple[list, bool]] = {}

    def adopt(self, name: str) -> None:
        logger = logging.getLogger(name)
        if name not in self.adopted:
            self.adopted[name] = (list(logger.handlers), logger.propagate)
            for h in list(logger.handlers):
                logger.removeHandler(h)
            logger.propagate = True

    def restore(self) -> None:
        for name, (handlers, propagate) in self.adopted.items():
            logger = logging.getLogger(name)
            for h in handlers:
                logger.addHandler(h)
            logger.propagate = propagate


def adopt(name: str) -> None:
    """Route a self-printing third-party logger (e.g. NNCF's) through the session's handlers.

    Call it right after importing that package; outside a session it does nothing.
    """
    if _active:
        _active[-1].adopt(name)


@contextlib.contextmanager
def stdout_to_log(name: str, level: int = logging.INFO) -> Iterator[None]:
    """Inside a session, Python-level writes to stdout/stderr (e.g. rich progress bars) become log lines."""
    if not _active:
        yield
        return
    logger = logging.getLogger(name)
    buffer = _LineWriter(logger, level)
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield
    buffer.flush()


class _LineWriter(io.TextIOBase):
    def __init__(self, logger: logging.Logger, level: int):
        self.logger, self.level, self._part = logger, level, ""

    def write(self, text: str) -> int:
        lines = (self._part + text).split("\n")
        self._part = lines.pop()
        for line in lines:
            if line.strip():
                self.logger.log(self.level, line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self._part.strip():
            self.logger.log(self.level, self._part.rstrip())
        self._part = ""


@contextlib.contextmanager
def session(log_file: Path | None = None, buffered: bool = False, stream=None) -> Iterator[None]:
    """Terminal (+ log file) handlers on the root logger for the duration of one CLI command.

    Args:
        log_file: the full log; None for a terminal only (then warnings and third-party output are
            left where they go by default).
        buffered: hold the file's lines until the end (see the module docstring).
        stream: the terminal stream (default: sys.stderr at call time).
    """
    root, ours = logging.getLogger(), logging.getLogger("vpdsr")
    handlers: list[logging.Handler] = [TerminalHandler(stream, others=log_file is None)]
    if log_file is not None:
        handlers.append(LogFileHandler(log_file, buffered))
    saved = (root.level, ours.level)
    root.setLevel(logging.INFO)  # third parties' INFO+ (their DEBUG would swamp the file)
    ours.setLevel(logging.DEBUG)
    for h in handlers:
        root.addHandler(h)
    state = _Session(handlers)
    capture = log_file is not None  # without a file, warnings and third-party output stay on the terminal
    if capture:
        _active.append(state)
        logging.captureWarnings(True)
        for name in SELF_PRINTING:
            if name in sys.modules:
                state.adopt(name)
    try:
        yield
    finally:
        if capture:
            logging.captureWarnings(False)
            _active.remove(state)
        state.restore()
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
