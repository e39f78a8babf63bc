"""A study's grid: preset, config file and options merged into one spec, expanded into validated jobs.

* :func:`study_spec` — ``--preset``, ``--config`` and the options (an ``argparse.Namespace`` or any
  object with the same attributes) → one plain dict, the spec ``study.json`` records;
* :func:`build_jobs` — the spec → every job's :class:`~ltbench.config.JobConfig`, validated
  (:mod:`ltbench.study.checks`): methods × datasets × ratios × seeds, ``all`` expanded, ablations
  and modifiers parsed (:func:`ltbench.modifier.parse_spec`), ``--set`` parameters checked;
* :func:`parse_sets` — ``--set OWNER.KEY=VALUE`` (also used by ``ltbench bench``);
* :func:`job_init_from` — ``--init-from`` filled in for one job.
"""
from __future__ import annotations

from pathlib import Path

from ltbench.config import JobConfig, coerce_value
from ltbench.errors import LtbenchError


FIELDS = ("model", "epochs", "batch_size", "lr", "weight_decay", "eps", "step", "train_attack_steps", "augment",
          "compile", "select_best", "select_from", "clip_start", "profile", "split_seed", "device", "val_n_per_class",
          "val_attack_steps", "init_from", "scale_schedules", "select_on", "train_per_class", "test_per_class")  # JobConfig fields a flag of the same name sets


GRID_KEYS = ("methods", "datasets", "ratios", "seeds")


def parse_sets(items: list[str]) -> tuple[dict, dict]:
    """``method.key=value`` → method params per method; ``model.key=value`` → model params."""
    method_params: dict[str, dict] = {}
    model_params: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        owner, dot, name = key.partition(".")
        if not sep or not owner or not dot or not name:
            raise LtbenchError(f"--set expects METHOD.KEY=VALUE or model.KEY=VALUE, got {item!r}")
        if owner == "model":
            model_params[name] = coerce_value(value)
        else:
            method_params.setdefault(owner, {})[name] = value
    return method_params, model_params


def study_spec(args) -> dict:
    """Merge preset and flags into one plain dict describing the study."""
    from ltbench.presets import load_spec

    spec = load_spec(args.preset) if args.preset else {}
    if getattr(args, "config", None):
        spec.update(load_spec(args.config))
    for key in GRID_KEYS:
        if getattr(args, key, None) is not None:
            spec[key] = getattr(args, key)
    for field in FIELDS:
        if getattr(args, field, None) is not None:
            spec[field] = getattr(args, field)
            for fields in spec.get("per_method", {}).values():  # a flag beats the preset's per-method value too
                fields.pop(field, None)
    if getattr(args, "attacks", None):
        spec["eval_attacks"] = args.attacks
    method_params, model_params = parse_sets(getattr(args, "set", []) or [])
    spec.setdefault("method_params", {})
    if getattr(args, "methods", None) is not None and ALL_METHODS not in spec["methods"]:
        # --methods replaced the preset's: its parameters for methods and modifiers no longer run go too.
        used = _owners(spec["methods"])
        spec["method_params"] = {k: v for k, v in spec["method_params"].items() if k in used}
    for m, params in method_params.items():
        spec["method_params"].setdefault(m, {}).update(params)
    spec.setdefault("model_params", {}).update(model_params)
    if "methods" not in spec:  # the registry's first baseline (PGD-AT), not a name written here
        from ltbench.method_roles import cost_baseline

        baseline = cost_baseline()
        if baseline is None:
            raise LtbenchError("no --methods given and no registered baseline to run by default")
        spec["methods"] = [baseline]
    spec.setdefault("datasets", ["fmnist"])
    spec.setdefault("ratios", [0.01])
    spec.setdefault("seeds", [0])
    for key in GRID_KEYS:
        if not isinstance(spec[key], list) or not spec[key]:
            raise LtbenchError(f"{key} must be a non-empty list, got {spec[key]!r}")
    if getattr(args, "out", None):
        spec["out"] = args.out
    spec.setdefault("out", f"results/{study_name(args)}")
    return spec


def study_name(args) -> str:
    """The default study folder's name: the config file's or preset's name, else ``study``."""
    source = getattr(args, "config", None) or getattr(args, "preset", None)
    return Path(source).stem if source else "study"


ALL_METHODS = "all"


def _owners(methods: list[str]) -> set[str]:
    """What ``--set OWNER.KEY=VALUE`` may name for these ``--methods`` arguments: each argument as
    written, its method's name and its modifiers' names."""
    from ltbench.modifier import parse_spec

    parsed = [parse_spec(m) for m in methods]
    return set(methods) | {p.name for p in parsed} | {k for p in parsed for k in p.modifiers}


def expand_methods(methods: list[str], methods_dirs=()) -> list[str]:
    """``all`` → every registered method, in registration order (a method added later joins a
    preset that says ``all``); other entries kept; duplicates dropped, first place kept."""
    from ltbench.plugins import load_all
    from ltbench.registry import METHODS

    out: list[str] = []
    for m in methods:
        if str(m).strip() == ALL_METHODS:
            load_all(list(methods_dirs))
            out.extend(METHODS.names())
        else:
            out.append(m)
    return list(dict.fromkeys(out))


def build_jobs(spec: dict, methods_dirs=()) -> list[JobConfig]:
    """Every job of the grid, validated (unknown names and bad values raise LtbenchError)."""
    from ltbench.modifier import parse_spec
    from ltbench.study.checks import check_names

    base_fields = {k: v for k, v in spec.items() if k not in (*GRID_KEYS, "out", "method_params", "per_method", "methods_dir")}
    per_method = spec.get("per_method", {})  # a preset's settings for some methods: name or full spec → fields
    spec = {**spec, "methods": expand_methods(spec["methods"], methods_dirs)}
    parsed = {m: parse_spec(m) for m in spec["methods"]}
    unknown = set(spec["method_params"]) - _owners(spec["methods"])
    if unknown:
        raise LtbenchError(f"--set names method(s) or modifier(s) not in this study: {', '.join(sorted(unknown))}")
    jobs = []
    for m in spec["methods"]:
        # "reat --no-tail" is the reat method with tail=false, labelled "reat+no-tail" in the study;
        # "reat +awp" is reat wrapped by the awp modifier, labelled "reat+awp".
        p = parsed[m]
        name, flags, label = p.name, p.overrides, p.label
        modifiers = {k: {**v, **spec["method_params"].get(k, {})} for k, v in p.modifiers.items()}
        fields = {**base_fields, **per_method.get(name, {}), **per_method.get(m, {})}
        for d in spec["datasets"]:
            for r in spec["ratios"]:
                for s in spec["seeds"]:
                    try:
                        ratio, seed = float(r), int(s)
                    except (TypeError, ValueError):
                        raise LtbenchError(f"bad ratio {r!r} or seed {s!r}") from None
                    params = {**flags, **spec["method_params"].get(name, {}), **spec["method_params"].get(m, {})}
                    init = {"init_from": job_init_from(fields["init_from"], d, ratio, seed, spec.get("out", ""))} if fields.get("init_from") else {}
                    cfg = JobConfig.from_dict({**fields, **init, "method": name, "label": label, "dataset": d,
                                               "ratio": ratio, "seed": seed, "method_params": params,
                                               "modifiers": modifiers}, stored=False)
                    jobs.append(cfg.validate())
    names = [j.job_name for j in jobs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LtbenchError(f"the grid names the same job twice: {', '.join(dupes)}")
    check_names(jobs, methods_dirs)
    return jobs


def job_init_from(template: str, dataset: str, ratio: float, seed: int, out: str = "") -> str:
    """``--init-from`` for one job: ``{dataset}``, ``{ratio}``, ``{seed}`` and ``{out}`` (the study
    folder, so that a preset's fine-tuning jobs follow ``--out``) filled in (one source job per
    seed: ``results/s/trades__{dataset}__r{ratio:g}__s{seed}``). Kept as written: a relative
    path is relative to the folder ``ltbench run`` is started in, so a study committed with a
    relative path (the ``fmnist-lt`` preset's FRL jobs) has the same ``config.json`` in every clone."""
    try:
        path = str(template).format(dataset=dataset, ratio=ratio, seed=seed, out=out)
    except (KeyError, IndexError, ValueError) as exc:
        raise LtbenchError(f"init_from {template!r}: only {{dataset}}, {{ratio}}, {{seed}} and {{out}} may be filled in "
                           f"({type(exc).__name__}: {exc})") from None
    return path
