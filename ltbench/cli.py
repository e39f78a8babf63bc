"""``ltbench`` command line: one sub-command per module, dispatched from a table.

Each sub-command module defines ``add_arguments(parser)`` and ``main(args) -> int``. A
:class:`~ltbench.errors.LtbenchError` is printed as one line on stderr with exit status 2 (1 for a
folder that cannot be written: :class:`~ltbench.errors.CannotWrite`, or an ``OSError`` of
:data:`ENVIRONMENT_ERRNOS`). A reader that stops early (``ltbench status --json | head``) ends the command quietly (exit status 141, as
a shell reports SIGPIPE), without a traceback. ``--help`` shows each option's default.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from ltbench.errors import CannotWrite, LtbenchError, Terminated

# OSErrors that say the file system refuses a write or a removal (a read-only or undeletable study
# folder, a full disk): one line naming the path, exit status 1, never a traceback.
ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EBUSY}

COMMANDS = {
    "run": ("ltbench.study.cli", "train and evaluate a grid of methods × datasets × ratios × seeds"),
    "list": ("ltbench.cli_list", "list registered methods, datasets, models, attacks or presets"),
}
# Sub-commands added by later modules register here if importable.
OPTIONAL_COMMANDS = {
    "eval": ("ltbench.engine.eval_cli", "evaluate a saved checkpoint under attacks"),
    "status": ("ltbench.study.status", "show which jobs of a study are done, running, failed or pending"),
    "report": ("ltbench.report.cli", "aggregate a study into tables, plots and an HTML report"),
    "bench": ("ltbench.bench", "measure training speed ratios on this device"),
}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help when it has a real default and the help text
    does not state one already (``None`` / ``False`` / empty defaults mean "not given")."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, argparse.SUPPRESS) or default == []
                or not action.option_strings):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="ltbench", description="Adversarial training on long-tailed data: "
                                     "a benchmark harness.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in {**COMMANDS, **OPTIONAL_COMMANDS}.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if name in COMMANDS or exc.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=DefaultsHelpFormatter)
        module.add_arguments(p)
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from ltbench.version import __version__

        print(f"ltbench {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    return run_command(args.command, lambda: modules[args.command].main(args))


def run_command(command: str, call) -> int:
    """``call()``'s exit status, with the command line's handling of what it raises: a
    :class:`~ltbench.errors.LtbenchError` is one line on stderr and its exit status, Ctrl-C 130,
    SIGTERM 143, a closed pipe 141, a refused write (:data:`ENVIRONMENT_ERRNOS`) one line and 1.
    :func:`ltbench.run` returns through it too."""
    try:
        code = int(call() or 0)
        sys.stdout.flush()  # a reader gone by now is a closed pipe too, not an error at exit
        return code
    except LtbenchError as exc:
        print(f"ltbench {command}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as exc:
        if exc.filename is None or exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"ltbench {command}: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return CannotWrite.exit_status


def _closed_pipe() -> int:
    """The reader of our output went away: point stdout at /dev/null so that the interpreter's
    final flush raises nothing, and exit as a process killed by SIGPIPE would (141)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":
    sys.exit(main())
