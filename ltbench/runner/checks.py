"""Checks made before a study writes anything: every name is registered, every parameter has its
type, every attack name parses, every dataset loads, and the output folder is writable with paths the
file system allows. Each failure is one clear :class:`~ltbench.errors.LtbenchError`."""
from __future__ import annotations

import os
from pathlib import Path

from ltbench.errors import CannotWrite, LtbenchError
from ltbench.plugins import load_all
from ltbench.registry import DATASETS, METHODS, MODELS, MODIFIERS
from ltbench.validation import check_jobs


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
