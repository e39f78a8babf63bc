"""``ltbench list methods|datasets|models|attacks|presets``: names with one line of description.

``-v`` adds what can be set: each method's ``Config`` parameters with their types and defaults
(``--set METHOD.KEY=VALUE``) and its ablation flags (``'reat --no-tail'``), each modifier's
parameters (``--set awp.gamma=…``), each model's keyword options (``--set model.KEY=VALUE``), each
dataset's classes, image shape and default ε / PGD step, each preset's grid. Lines are wrapped to
:data:`COLUMNS` columns. Attacks are listed by their name grammar (``pgdK``: K steps).
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap

from ltbench.plugins import PLUGIN_ERRORS, load_all
from ltbench.registry import ATTACKS, DATASETS, METHODS, MODELS, MODIFIERS

KINDS = ("methods", "datasets", "models", "attacks", "presets")
COLUMNS = 100
MODEL_FIXED = {"num_classes", "in_channels", "mean", "std"}  # given by the dataset, not settable


def add_arguments(p):
    p.add_argument("kind", choices=KINDS)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show each entry's parameters and their defaults")
    p.add_argument("--methods-dir", action="append", default=[], metavar="DIR",
                   help="also load methods from the .py files in DIR")


def _type_name(tp) -> str:
    return tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))


def method_params(name: str, registry=METHODS) -> list[tuple[str, str, object]]:
    """(parameter, type, default) of a method's (or, with ``registry=MODIFIERS``, a modifier's)
    Config dataclass."""
    cfg = getattr(registry.get(name), "Config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return []
    defaults = cfg()
    return [(f.name, _type_name(f.type), getattr(defaults, f.name)) for f in dataclasses.fields(cfg)]


def model_params(name: str) -> list[tuple[str, str, object]]:
    """(option, type, default) of a model builder's keyword options."""
    sig = inspect.signature(MODELS.get(name))
    return [(p.name, _type_name(p.annotation) if p.annotation is not inspect.Parameter.empty else "",
             p.default) for p in sig.parameters.values()
            if p.name not in MODEL_FIXED and p.default is not inspect.Parameter.empty]


def _budget(x: float) -> str:
    """``0.1``, or ``8/255`` for a multiple of 1/255."""
    k = round(x * 255)
    return f"{k}/255" if k and abs(x * 255 - k) < 1e-6 and x < 1 and round(x, 3) != x else f"{x:g}"


def details(kind: str, name: str) -> list[str]:
    """The ``-v`` lines under one entry."""
    if kind in ("methods", "modifiers"):
        params = method_params(name, METHODS if kind == "methods" else MODIFIERS)
        lines = [f"--set {name}.{k}=…  ({t}, default {v!r})" for k, t, v in params] or ["(no parameters)"]
        flags = [f"--no-{k.replace('_', '-')}" if v else f"--{k.replace('_', '-')}"
                 for k, _, v in params if isinstance(v, bool)]
        if kind == "methods" and flags:
            lines.append("ablations: " + " ".join(f"'{name} {f}'" for f in flags)
                         + f" (any parameter: '{name} --KEY=VALUE')")
        elif kind == "modifiers" and params:
            k, _, v = params[0]
            lines.append(f"inline: 'pgd-at +{name} --{k.replace('_', '-')}={v}'")
        return lines
    if kind == "models":
        params = model_params(name)
        return [f"--set model.{k}=…  ({t}, default {v!r})".replace("(, ", "(") for k, t, v in params] \
            or ["(no options)"]
    if kind == "attacks":
        cls = ATTACKS.get(name)
        steps = "K = steps (step 2.5·ε/K when K·step < ε); " if cls.takes_steps else ""
        return [steps + ("@EPS sets its own budget" if cls.takes_budget else "no budget")]
    if kind == "datasets":
        info = DATASETS.get(name)
        return [f"{info.num_classes} classes, images {'×'.join(map(str, info.image_shape))}, "
                f"default ε {_budget(info.eps)}, PGD step {_budget(info.step)}"]
    from ltbench.presets import load_preset

    spec = load_preset(name)
    return [f"{k} = {spec[k]!r}" for k in ("methods", "datasets", "ratios", "seeds", "model", "epochs",
                                             "eval_attacks", "out") if k in spec]


def wrapped(first: str, rest_indent: int) -> str:
    """``first`` wrapped to :data:`COLUMNS` columns, continuation lines indented by ``rest_indent``;
    a quoted argument (``'reat --no-tail'``) is never split."""
    text = re.sub(r"'[^']*'", lambda m: m.group(0).replace(" ", "\0"), first)
    return textwrap.fill(text, COLUMNS, subsequent_indent=" " * rest_indent, break_long_words=False,
                         break_on_hyphens=False).replace("\0", " ")


def main(args) -> int:
    load_all(args.methods_dir)
    if args.kind == "presets":
        from ltbench.presets import list_presets

        rows = list_presets()
    elif args.kind == "attacks":
        import ltbench.attacks  # noqa: F401 (registers every attack)

        rows = [(name, ATTACKS.describe(name)) for name in ATTACKS.names()]
    else:
        reg = {"methods": METHODS, "datasets": DATASETS, "models": MODELS}[args.kind]
        rows = [(name, reg.describe(name)) for name in reg.names()]
    mods = [(f"+{n}", MODIFIERS.describe(n)) for n in MODIFIERS.names()] if args.kind == "methods" else []
    shown = {name: ATTACKS.get(name).grammar() if args.kind == "attacks" else name for name, _ in rows + mods}
    width = max((len(shown[n]) for n, _ in rows + mods), default=0)

    def show(kind: str, name: str, desc: str, key: str) -> None:
        print(wrapped(f"{shown[name]:<{width}}  {desc}", width + 2))
        if args.verbose:
            for line in details(kind, key):
                print(wrapped(f"{'':<{width}}    {line}", width + 6))

    for name, desc in rows:
        show(args.kind, name, desc, name)
    if mods:
        print("\nmodifiers (on any method: --methods 'reat +robustlt' 'at-bsl +awp'):")
        for name, desc in mods:
            show("modifiers", name, desc, name[1:])
    if args.kind == "methods":
        for label, err in PLUGIN_ERRORS.items():
            print(f"(failed to load {label}: {err})")
    return 0
