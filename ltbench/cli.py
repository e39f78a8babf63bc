"""``ltbench`` command line: one sub-command per module, dispatched from a table.

Each sub-command module defines ``add_arguments(parser)`` and ``main(args) -> int``. A
:class:`~ltbench.errors.LtbenchError` is printed as one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ltbench.errors import LtbenchError

COMMANDS = {
    "run": ("ltbench.runner.cli", "train and evaluate a grid of methods × datasets × ratios × seeds"),
    "list": ("ltbench.cli_list", "list registered methods, datasets, models or presets"),
}
# Sub-commands added by later modules register here if importable.
OPTIONAL_COMMANDS = {
    "eval": ("ltbench.engine.eval_cli", "evaluate a saved checkpoint under attacks"),
    "status": ("ltbench.runner.status", "show which jobs of a study are done, running, failed or pending"),
    "report": ("ltbench.report.cli", "aggregate a study into tables, plots and an HTML report"),
    "bench": ("ltbench.bench", "measure training speed ratios on this device"),
}


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
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from ltbench import __version__

        print(f"ltbench {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].main(args) or 0)
    except LtbenchError as exc:
        print(f"ltbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
