"""The Python API: studies, trained models and per-class evaluation from a notebook or a script.

Everything here is what the command line does, callable from Python::

    import ltbench

    study = ltbench.load_study("results/fmnist-lt")      # tidy pandas tables
    study.summary                                          # mean ± std over seeds per method × attack
    loaded = ltbench.load_model("results/fmnist-lt/reat__fmnist__r0.01__s0")
    ev = ltbench.evaluate(loaded.model, "fmnist", attacks=["clean", "pgd20"], n_per_class=100,
                          class_counts=loaded.class_counts)
    ev.table                                               # one row per attack: overall, head, …, worst
    ltbench.run(methods=["pgd-at", "reat"], seeds=[0, 1], epochs=10, out="results/mine")

:func:`evaluate` accepts **any** ``nn.Module`` that maps images in [0, 1] (N×C×H×W float) to logits,
trained anywhere; it runs the same attacks, gradient-masking checks and AutoAttack as ``ltbench
eval`` and a job's own evaluation (:func:`ltbench.engine.evaluate.run_evaluation`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
from torch import nn

from ltbench.models.factory import model_from_factory  # noqa: F401 (part of the API)
from ltbench.groups import GROUPS


# ------------------------------------------------------------------------------------------------
# Studies


@dataclass
class StudyResults:
    """A study folder read into tidy tables (accuracies are fractions in [0, 1]).

    * ``jobs`` — one row per finished job × attack: overall, head, medium, tail, worst, n;
    * ``per_class`` — one row per finished job × attack × class;
    * ``summary`` — per method × dataset × ratio × attack: ``<group>_mean`` / ``<group>_std`` over seeds;
    * ``curves`` — one row per job × epoch (loss, adversarial train accuracy, lr, time);
    * ``paired`` — per-seed differences with the baselines pgd-at / at-bsl (and, for an ablation or a
      modifier, its base label), summarised: mean, std, the 95 % Student t interval (``ci_low`` /
      ``ci_high``, n − 1 degrees of freedom), ``resolved`` (the interval excludes 0), ``seeds_needed``,
      seeds ahead / behind / tied (all as fractions; ``diffs_pp`` lists the per-seed values in percentage points, as its name says);
    * ``cost`` — mean epoch time and its per-seed ratio to pgd-at;
    * ``status`` — one row per job of the grid: done / running / failed / pending.
    """

    path: Path
    name: str
    jobs: pd.DataFrame
    per_class: pd.DataFrame
    summary: pd.DataFrame
    curves: pd.DataFrame
    paired: pd.DataFrame
    cost: pd.DataFrame
    status: pd.DataFrame
    methods: list = field(default_factory=list)


def load_study(path: str | Path) -> StudyResults:
    """Read the study folder ``path`` (finished, running and failed jobs alike) into tables."""
    from ltbench.report.aggregate import build_tables
    from ltbench.report.aggregate import load_study as _load

    st = _load(path)
    t = build_tables([st])
    status = pd.DataFrame([{"job": j.name, "method": j.method, "dataset": j.dataset, "ratio": j.ratio,
                            "seed": j.seed, "status": str(j.status)} for j in st.jobs],
                          columns=["job", "method", "dataset", "ratio", "seed", "status"])
    return StudyResults(Path(path), st.label, t.jobs, t.per_class, t.summary, t.curves, t.paired, t.cost,
                        status, list(t.methods))


# ------------------------------------------------------------------------------------------------
# Models


@dataclass
class LoadedModel:
    """A trained job's model (eval mode) with what is needed to evaluate it like the job did."""

    model: nn.Module
    config: Any            # ltbench.config.JobConfig
    dataset: Any           # ltbench.data.DatasetInfo
    class_counts: list     # the long-tailed training counts (define head / medium / tail)
    class_names: list
    epoch: Optional[int]   # the epoch whose weights these are (the selected one with --select-best)
    weights: Path


def load_model(job_dir: str | Path, device: str = "cpu", best: bool = True,
               methods_dir: str | Path | Sequence[str | Path] = ()) -> LoadedModel:
    """The trained model of a job folder, in eval mode on ``device``.

    With ``best`` (default) and a job trained with ``--select-best``, the selected epoch's weights
    (``best.pt``); with ``best`` and a method that evaluates its own weights (CFA's FAWA average,
    ``eval_weights.pt``), those; otherwise the last checkpoint's. ``methods_dir``: the folder(s) of
    a plugin method's file, as ``--methods-dir`` (``$LTBENCH_METHODS`` is read too).
    """
    from ltbench import study_folder as sf
    from ltbench.engine.eval_cli import load_job_model, locate
    from ltbench.env import resolve_device

    job_dir = Path(job_dir)
    best_file = job_dir / sf.BEST
    job_dir, measured = locate(job_dir)  # a folder: the weights its own evaluation used
    ckpt = job_dir / sf.CHECKPOINT
    epoch = None
    selection = (sf.read_result(job_dir) or {}).get("selection")
    weights = measured if best else ckpt
    dev = resolve_device(device)
    dirs = [methods_dir] if isinstance(methods_dir, (str, Path)) else list(methods_dir)
    cfg, info, raw, counts, model = load_job_model(job_dir, weights, dev, dirs)
    if weights == best_file and selection:
        epoch = selection.get("epoch")
    else:
        from ltbench.engine.checkpoint import load_checkpoint

        state = load_checkpoint(ckpt, map_location="cpu")
        epoch = int(state["epoch"]) if isinstance(state, dict) and "epoch" in state else None
    return LoadedModel(model, cfg, info, counts, raw.class_names, epoch, weights)


# ------------------------------------------------------------------------------------------------
# Evaluation of any model


@dataclass
class Evaluation:
    """What :func:`evaluate` measured: ``table`` (one row per attack: n, overall, head, medium,
    tail, worst, per-class std; head / medium / tail NaN without groups), ``per_class`` (one row per
    attack × class) and ``raw`` (the ``result.json`` evaluation part: metrics with ``per_class`` by
    class name, checks, warnings, settings); ``groups`` says where head / medium / tail come from."""

    table: pd.DataFrame
    per_class: pd.DataFrame
    raw: dict

    @property
    def warnings(self) -> list:
        return list(self.raw.get("warnings") or [])

    @property
    def groups(self) -> str:
        return self.raw["evaluation"]["groups"]["text"]


def evaluate(model: nn.Module, dataset: str = "fmnist", attacks: Sequence[str] = ("clean", "pgd20", "cw20"), *,
             eps: Optional[float] = None, step: Optional[float] = None, n_per_class: Optional[int] = None,
             aa_n_per_class: Optional[int] = None, class_counts: Optional[Sequence[int]] = None,
             device: str = "auto", seed: int = 0, batch_size: Optional[int] = None, checks: bool = True,
             data_root: Optional[str | Path] = None, progress=None) -> Evaluation:
    """Per-class, head / medium / tail and worst-class accuracy of ``model`` on ``dataset``'s test set.

    ``model`` maps images in [0, 1] to logits (normalisation inside it). ``eps`` / ``step`` default
    to the dataset's (Fashion-MNIST 0.1 / 0.01, CIFAR 8/255 / 2/255). ``n_per_class`` evaluates every
    attack on a fixed, balanced, seeded subset of the test set; ``aa_n_per_class`` only AutoAttack.
    ``class_counts`` are the training counts that define head / medium / tail (classes sorted by
    count, head = the first ⌊C/3⌋); without them the dataset's own training counts if they are
    long-tailed, else there are no groups (head / medium / tail NaN); ``Evaluation.groups`` says which.
    """
    from ltbench.engine.evaluate import evaluate_model

    out, class_names = evaluate_model(model, dataset, attacks, eps=eps, step=step, n_per_class=n_per_class,
                                      aa_n_per_class=aa_n_per_class, class_counts=class_counts, device=device,
                                      seed=seed, batch_size=batch_size, checks=checks, data_root=data_root,
                                      progress=progress)
    counts = out["evaluation"]["class_counts"]
    rows, per_class = [], []
    for attack, rec in out["metrics"].items():
        rows.append({"attack": attack, "n": rec["n"], **{g: float("nan") if rec[g] is None else rec[g]
                                                         for g in GROUPS}, "per_class_std": rec.get("per_class_std")})
        for c, acc in enumerate(rec["per_class"].values()):
            per_class.append({"attack": attack, "class_index": c, "class_name": class_names[c],
                              "train_count": counts[c] if counts else None, "accuracy": acc})
    return Evaluation(pd.DataFrame(rows), pd.DataFrame(per_class), out)


# ------------------------------------------------------------------------------------------------
# Running a study


def run(preset: Optional[str] = None, *, methods: Optional[Sequence[str]] = None,
        datasets: Optional[Sequence[str]] = None, ratios: Optional[Sequence[float]] = None,
        seeds: Optional[Sequence[int]] = None, out: Optional[str | Path] = None, quiet: bool = True,
        **options) -> int:
    """``ltbench run`` from Python, with the command line's semantics (skip finished jobs, resume
    the others, exit status as the return value: 0 all done, 1 a job failed, 2 bad input).

    ``options`` are the command line's long options with ``_`` for ``-`` (``epochs=10``,
    ``batch_size=64``, ``workers=2``, ``set=["reat.tail_weight=0.5"]``, ``attacks=["clean", "pgd20"]``,
    ``retry_failed=True``); a list gives several values, ``True`` sets a flag. An unknown keyword is a
    ``TypeError`` and a value of the wrong type or outside an option's choices a ``TypeError`` /
    ``ValueError`` naming the argument, raised before anything runs (never argparse's usage and exit).
    The arguments become the options :func:`ltbench.study.run.run_study` takes, as ``ltbench run``'s
    would, and that one call runs the study.
    """
    from ltbench.cli import run_command
    from ltbench.study.grid import study_spec
    from ltbench.study.run import run_study

    flags = run_flags()
    given = {"preset": None if preset is None else str(preset), "out": None if out is None else str(out),
             "quiet": bool(quiet)}
    grid = {"methods": methods, "datasets": datasets, "ratios": ratios, "seeds": seeds}
    for key, value in [*grid.items(), *options.items()]:
        action = flags.get("--" + key.replace("_", "-"))
        if action is None:
            raise TypeError(f"run() got an unexpected keyword argument {key!r} (no option "
                            f"--{key.replace('_', '-')} in `ltbench run`)")
        if value is not None:
            given[action.dest] = option_value(key, value, action)
    args = argparse.Namespace(**{**{a.dest: a.default for a in flags.values()}, **given})
    return run_command("run", lambda: run_study(study_spec(args), args))


def option_value(key: str, value, action: argparse.Action):
    """``value`` for the option ``action``, as argparse would store it from the command line:
    checked (:func:`flag_values`) and converted to the option's type; a flag's constant."""
    if action.nargs == 0:  # a bare flag
        if not isinstance(value, bool):
            raise TypeError(f"run(): {key} is a flag: give True or False, got {value!r}")
        return action.const if value else action.default
    items = [action.type(v) if action.type is not None else v for v in flag_values(key, value, action)]
    many = action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction)
    return items if many else items[0]


def run_flags() -> dict[str, argparse.Action]:
    """``ltbench run``'s options: flag → its argparse action (its type, number of values, choices)."""
    from ltbench.study.cli import add_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return {flag: action for action in parser._actions for flag in action.option_strings}


def flag_values(key: str, value, action: argparse.Action) -> list[str]:
    """``value`` for the option ``action`` as command-line strings, checked as argparse would check
    them, but raising ``TypeError`` / ``ValueError`` naming ``key`` instead of exiting."""
    many = action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction)
    if isinstance(value, (list, tuple)):
        if not many:
            raise TypeError(f"run(): {key} takes one value, got a {type(value).__name__}: {value!r}")
        if not value:
            raise ValueError(f"run(): {key} is empty")
        values = list(value)
    else:
        values = [value]
    for v in values:
        if isinstance(v, (dict, set, list, tuple)) or (isinstance(v, bool) and action.type in (int, float)):
            raise TypeError(f"run(): {key} must be {_kind(action)}, got {v!r}")
        if action.type is not None:
            try:
                action.type(str(v))
            except ValueError:
                raise TypeError(f"run(): {key} must be {_kind(action)}, got {v!r}") from None
        if action.choices is not None and str(v) not in action.choices:
            raise ValueError(f"run(): {key} must be one of {', '.join(map(repr, action.choices))}, got {v!r}")
    return [str(v) for v in values]


def _kind(action: argparse.Action) -> str:
    name = {int: "an integer", float: "a number"}.get(action.type, "a string")
    return f"{name} or a list of them" if action.nargs in ("+", "*") else name
