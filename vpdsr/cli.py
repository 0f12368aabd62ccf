"""`vpdsr` entry point: sub-commands, one-line user errors, exit codes.

Exit codes: 0 success; 1 a benchmark gate failed; 2 bad input (a user error); 130 interrupted.
Each sub-command lives in its own module, imported only when the CLI starts; a sub-command whose
optional dependency is missing still lets the rest of the CLI work (Polygraphy's tool registry).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from vpdsr import __version__
from vpdsr.errors import MissingDependencyError, VpdsrError

# name -> module with `register(subparsers)`; each adds its parser and sets `func(args) -> int`.
COMMANDS = {
    "upscale": "vpdsr.commands.upscale",
    "info": "vpdsr.commands.info",
    "distill": "vpdsr.commands.distill",
    "export": "vpdsr.commands.export",
    "bench": "vpdsr.commands.bench",
    "pipeline": "vpdsr.commands.pipeline",
    "convert": "vpdsr.commands.convert",
    "score": "vpdsr.commands.score",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpdsr", description="One-step diffusion super-resolution toolkit")
    parser.add_argument("--version", action="version", version=f"vpdsr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as e:
            if e.name and (e.name == module or module.startswith(e.name + ".")):
                continue  # that stage is not part of this version yet
            _register_missing(sub, name, e)
    return parser


def _register_missing(sub, name: str, err: ModuleNotFoundError) -> None:
    p = sub.add_parser(name, help=f"(unavailable: needs {err.name})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def fail(_args) -> int:
        raise MissingDependencyError(f"`vpdsr {name}` needs the package {err.name!r}: pip install 'vpdsr[all]'")

    p.set_defaults(func=fail)


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command: its messages go to stderr (concise) and, for the long ones, to a log file
    in its output folder (`log_file` in the sub-command's defaults: (path, buffered))."""
    from vpdsr.logs import session

    os.environ.setdefault("TQDM_MININTERVAL", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    log_file, buffered = args.log_file(args) if getattr(args, "log_file", None) else (None, False)
    try:
        with session(log_file, buffered):
            return int(args.func(args) or 0)
    except VpdsrError as e:
        msg = " ".join(str(e).split())  # one line, always
        print(f"vpdsr {args.command}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("vpdsr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
