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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import torch
from torch import nn

from ltbench.errors import LtbenchError
from ltbench.report.aggregate import GROUPS


# ------------------------------------------------------------------------------------------------
# Studies


@dataclass
class StudyResults:
    """A study folder read into tidy tables (accuracies are fractions in [0, 1]).

    * ``jobs`` — one row per finished job × attack: overall, head, medium, tail, worst, n;
    * ``per_class`` — one row per finished job × attack × class;
    * ``summary`` — per method × dataset × ratio × attack: ``<group>_mean`` / ``<group>_std`` over seeds;
    * ``curves`` — one row per job × epoch (loss, adversarial train accuracy, lr, time);
    * ``paired`` — per-seed differences with the baselines pgd-at / at-bsl, summarised;
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


def load_model(job_dir: str | Path, device: str = "cpu", best: bool = True) -> LoadedModel:
    """The trained model of a job folder, in eval mode on ``device``.

    With ``best`` (default) and a job trained with ``--select-best``, the selected epoch's weights
    (``best.pt``); with ``best`` and a method that evaluates its own weights (CFA's FAWA average,
    ``eval_weights.pt``), those; otherwise the last checkpoint's.
    """
    from ltbench import study_folder as sf
    from ltbench.engine.eval_cli import load_job_model, locate
    from ltbench.env import resolve_device

    job_dir = Path(job_dir)
    best_file = job_dir / sf.BEST
    job_dir, ckpt = locate(job_dir)
    epoch = None
    selection = (sf.read_result(job_dir) or {}).get("selection")
    own_file = job_dir / sf.EVAL_WEIGHTS
    weights = (best_file if best and best_file.is_file() else own_file if best and own_file.is_file() else ckpt)
    dev = resolve_device(device)
    cfg, info, raw, counts, model = load_job_model(job_dir, weights, dev)
    if weights == best_file and selection:
        epoch = selection.get("epoch")
    else:
        from ltbench.engine.checkpoint import load_checkpoint

        state = load_checkpoint(ckpt, map_location="cpu")
        epoch = int(state["epoch"]) if isinstance(state, dict) and "epoch" in state else None
    return LoadedModel(model, cfg, info, counts, raw.class_names, epoch, weights)


def model_from_factory(factory: str, weights: Optional[str | Path] = None, **kwargs) -> nn.Module:
    """``package.module:function`` called with ``kwargs``, then ``weights`` (a state dict saved with
    ``torch.save``, read with ``weights_only=True``) loaded into it."""
    import importlib

    mod_name, sep, fn_name = factory.partition(":")
    if not sep or not mod_name or not fn_name:
        raise LtbenchError(f"model factory must be 'package.module:function', got {factory!r}")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise LtbenchError(f"cannot import model factory {factory!r}: {exc}") from None
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise LtbenchError(f"model factory {factory!r} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
            raise LtbenchError(f"cannot load {weights} as a weights-only state dict: {exc}") from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise LtbenchError(f"{weights} does not fit the model from {factory}: "
                               f"{str(exc).splitlines()[0]}") from None
    return model.eval()


# ------------------------------------------------------------------------------------------------
# Evaluation of any model


@dataclass
class Evaluation:
    """What :func:`evaluate` measured: ``table`` (one row per attack: n, overall, head, medium,
    tail, worst, per-class std), ``per_class`` (one row per attack × class) and ``raw`` (the
    ``result.json`` evaluation part: metrics, checks, warnings, settings)."""

    table: pd.DataFrame
    per_class: pd.DataFrame
    raw: dict

    @property
    def warnings(self) -> list:
        return list(self.raw.get("warnings") or [])


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
    count, head = the first ⌊C/3⌋); by default the class index order (class 0 = head), the order
    of the long-tailed splits of this field.
    """
    from ltbench.data import get_dataset, load_raw
    from ltbench.engine.evaluate import balanced_subset, run_evaluation
    from ltbench.env import resolve_device
    from ltbench.plugins import load_all

    if not isinstance(model, nn.Module):
        raise LtbenchError(f"evaluate needs a torch.nn.Module, got {type(model).__name__}")
    load_all()
    info = get_dataset(dataset)
    eps = info.eps if eps is None else float(eps)
    step = info.step if step is None else float(step)
    for name, value in (("eps", eps), ("step", step)):
        if not (value >= 0 and value != float("inf")):
            raise LtbenchError(f"{name} must be a finite number ≥ 0, got {value}")
    C = info.num_classes
    counts = list(range(C, 0, -1)) if class_counts is None else [int(c) for c in class_counts]
    if len(counts) != C:
        raise LtbenchError(f"class_counts has {len(counts)} entries; {dataset} has {C} classes")
    raw = load_raw(info, data_root)
    x, y = raw.x_test, raw.y_test
    if n_per_class is not None:
        if int(n_per_class) < 1:
            raise LtbenchError(f"n_per_class must be at least 1, got {n_per_class}")
        idx = balanced_subset(y, int(n_per_class), seed)
        x, y = x[idx], y[idx]
    dev = resolve_device(device)
    was_training = model.training
    model = model.to(dev)
    try:
        out = run_evaluation(model, x, y, counts, list(attacks), eps=eps, step=step, device=dev,
                             batch_size=batch_size, seed=seed, aa_n_per_class=aa_n_per_class, state_dir=None,
                             checks=checks, progress=progress)
    finally:
        model.train(was_training)
    out["evaluation"].update({"dataset": dataset, "n_per_class": n_per_class, "class_counts": counts})
    rows, per_class = [], []
    for attack, rec in out["metrics"].items():
        rows.append({"attack": attack, "n": rec["n"], **{g: rec[g] for g in GROUPS},
                     "per_class_std": rec.get("per_class_std")})
        for c, acc in enumerate(rec["per_class"]):
            per_class.append({"attack": attack, "class_index": c, "class_name": raw.class_names[c],
                              "train_count": counts[c], "accuracy": acc})
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
    ``retry_failed=True``); lists become repeated values, ``True`` a bare flag.
    """
    from ltbench.cli import main

    argv = ["run"]
    if preset is not None:
        argv += ["--preset", str(preset)]
    for key, values in (("methods", methods), ("datasets", datasets), ("ratios", ratios), ("seeds", seeds)):
        if values is not None:
            argv += [f"--{key}", *[str(v) for v in values]]
    if out is not None:
        argv += ["--out", str(out)]
    if quiet:
        argv.append("--quiet")
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif key == "set":
            for item in ([value] if isinstance(value, str) else value):
                argv += [flag, str(item)]
        elif isinstance(value, (list, tuple)):
            argv += [flag, *[str(v) for v in value]]
        else:
            argv += [flag, str(value)]
    return main(argv)
