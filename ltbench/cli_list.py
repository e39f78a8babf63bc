"""``ltbench list methods|datasets|models|presets``: names with one line of description."""
from __future__ import annotations

from ltbench.registry import DATASETS, METHODS, MODELS, MODIFIERS, PLUGIN_ERRORS, load_all

KINDS = ("methods", "datasets", "models", "presets")


def add_arguments(p):
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--methods-dir", action="append", default=[], metavar="DIR",
                   help="also load methods from the .py files in DIR")


def main(args) -> int:
    load_all(args.methods_dir)
    if args.kind == "presets":
        from ltbench.presets import list_presets

        rows = list_presets()
    else:
        reg = {"methods": METHODS, "datasets": DATASETS, "models": MODELS}[args.kind]
        rows = [(name, reg.describe(name)) for name in reg.names()]
    width = max((len(n) for n, _ in rows), default=0)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    if args.kind == "methods" and MODIFIERS.names():
        print("\nmodifiers (on any method: --methods 'reat +robustlt' 'at-bsl +awp'):")
        mods = [(f"+{n}", MODIFIERS.describe(n)) for n in MODIFIERS.names()]
        for name, desc in mods:
            print(f"{name:<{width}}  {desc}")
    if args.kind == "methods":
        for label, err in PLUGIN_ERRORS.items():
            print(f"(failed to load {label}: {err})")
    return 0
