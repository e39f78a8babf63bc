"""Checks made before a study writes anything: every name is registered, every parameter has its
type, every attack name parses, every dataset loads, and the output folder is writable with paths the
file system allows. Each failure is one clear :class:`~ltbench.errors.LtbenchError`.

:meth:`ltbench.config.JobConfig.validate` checks the values a job's configuration can check by
itself (ratios, counts, learning rate, budget, step); this module checks what depends on a
registered entry:

* **model parameters** against the model factory's signature (an unknown key, or a value of the
  wrong type, is an error; integer parameters such as ``width`` must be ≥ 1), then by building
  the model on PyTorch's ``meta`` device, which allocates nothing but runs every shape check;
* **method and modifier parameters** against their ``Config`` (:func:`ltbench.method.parse_overrides`:
  overridden float values must be finite, and a ``Config`` may define ``validate(self)``, e.g.
  ``cb-at``'s β in [0, 1));
* attack names, datasets (their files load), ``--init-from`` sources and the output folder.
"""
from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any

from ltbench.errors import CannotWrite, LtbenchError
from ltbench.plugins import load_all
from ltbench.registry import DATASETS, METHODS, MODELS, MODIFIERS


def check_names(jobs: list, methods_dirs=()) -> None:
    """Fail early, before anything is written, on any unknown method, dataset, model or attack."""
    from ltbench.method import parse_overrides

    load_all(list(methods_dirs))
    for job in jobs:
        METHODS.get(job.method)
        DATASETS.get(job.dataset)
        MODELS.get(job.model)
    for job in jobs:  # method and modifier parameters are type-checked against each Config
        parse_overrides(job.method, METHODS.get(job.method).Config, job.method_params)
        for name, params in job.modifiers.items():
            parse_overrides(name, MODIFIERS.get(name).Config, params)
    check_jobs(jobs)  # model parameters: against the factory, then built on the meta device
    _check_attacks(jobs)


def _check_attacks(jobs: list) -> None:
    """Unknown evaluation attack names fail now, not after hours of training."""
    from ltbench.attacks.factory import parse_attack_name

    for name in sorted({a for job in jobs for a in (*job.eval_attacks, *filter(None, [job.select_best]))}):
        parse_attack_name(name)  # raises LtbenchError for an unknown attack name


def check_data(datasets: list[str]) -> None:
    """Load each dataset once, so a missing or malformed one is one clear error before anything runs.

    (The loaders say which file to put where; the data is dropped again right after.)
    """
    from ltbench.data import get_dataset, load_raw

    for name in dict.fromkeys(datasets):
        raw = load_raw(get_dataset(name))
        del raw


def check_writable(out: Path, job_names: tuple = ()) -> None:
    """Raise unless ``out`` exists as a writable folder or can be created (nothing is left behind),
    and the paths of ``out`` and of its job folders are short enough for the file system."""
    name_max, path_max = _limits(out)
    for part in Path(out).parts:
        if len(os.fsencode(part)) > name_max:
            raise LtbenchError(f"output folder name {part[:40]!r}… is {len(os.fsencode(part))} bytes long; "
                               f"the file system allows {name_max}")
    longest = max((len(os.fsencode(n)) for n in job_names), default=0)
    total = len(os.fsencode(os.path.abspath(out))) + 1 + longest + 32  # + the longest file name in a job
    if total > path_max:
        raise LtbenchError(f"output folder path {str(out)[:40]!r}… is too long: its job files would exceed "
                           f"the file system's {path_max}-byte path limit")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise LtbenchError(f"output folder {out} is not usable: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CannotWrite(f"output folder {out} is not writable ({probe} does not allow writing)")


def _limits(path: Path) -> tuple[int, int]:
    """(longest file name, longest path) in bytes on the file system holding ``path``."""
    probe = Path(os.path.abspath(path))
    while not _exists(probe) and probe.parent != probe:
        probe = probe.parent
    try:
        return os.pathconf(probe, "PC_NAME_MAX"), os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system
        return False


def check_init_sources(out: Path, jobs: list) -> None:
    """Every ``init_from`` of a job still to run names a finished job of the same dataset and model
    whose weights load, or a job of this grid (which runs first): else one line saying which, before
    any folder is written. A job already done is not checked (its source may be gone by now)."""
    from ltbench.engine.train import load_job_weights
    from ltbench.study_folder import read_result

    in_grid = {(Path(out) / job.job_name).resolve() for job in jobs}
    for job in jobs:
        if job.init_from and Path(job.init_from).resolve() not in in_grid \
                and read_result(Path(out) / job.job_name) is None:
            load_job_weights(Path(job.init_from), job)


# The arguments every model factory takes from the dataset, not from ``model.KEY=VALUE``.
MODEL_FIXED_ARGS = ("num_classes", "in_channels", "mean", "std")


def check_model_params(model: str, params: dict, dataset: str) -> None:
    """Raise LtbenchError unless ``model`` can be built with ``params`` for ``dataset``."""
    import torch

    from ltbench.models import build_model
    from ltbench.registry import DATASETS, MODELS

    factory = MODELS.get(model)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        accepted = {n: p for n, p in sig.parameters.items() if n not in MODEL_FIXED_ARGS
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        open_ended = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        for key, value in params.items():
            if key not in accepted:
                if open_ended:
                    continue
                known = ", ".join(accepted) or "(none)"
                raise LtbenchError(f"model {model!r} has no parameter {key!r}; its parameters: {known}")
            _check_model_value(f"model.{key}", value, accepted[key].default)
    info = DATASETS.get(dataset)
    try:
        with torch.device("meta"):
            build_model(model, info.num_classes, info.image_shape[0], info.mean, info.std, **params)
    except LtbenchError:
        raise
    except NotImplementedError:  # an operation the meta device lacks: the signature check above must do
        return
    except Exception as exc:  # the factory's own check (e.g. a WideResNet depth that is not 6n + 4)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise LtbenchError(f"model {model!r} cannot be built with {shown or 'its defaults'}: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")) from None


def _check_model_value(name: str, value: Any, default: Any) -> None:
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise LtbenchError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LtbenchError(f"{name} must be a positive integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LtbenchError(f"{name} must be a finite number, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise LtbenchError(f"{name} must be a string, got {value!r}")


def check_jobs(jobs: list) -> None:
    """Model parameters (once per distinct model, parameters and dataset) of every job."""
    seen = set()
    for job in jobs:
        key = (job.model, repr(sorted(job.model_params.items())), job.dataset)
        if key not in seen:
            seen.add(key)
            check_model_params(job.model, job.model_params, job.dataset)
