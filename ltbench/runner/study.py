"""A study = a grid of jobs in one folder (``study.json`` + one sub-folder per job)."""
from __future__ import annotations

import os
from pathlib import Path

from ltbench.errors import LtbenchError
from ltbench.registry import DATASETS, METHODS, MODELS, load_all


def check_names(jobs: list, methods_dirs=()) -> None:
    """Fail early, before anything is written, on any unknown method, dataset or model."""
    from ltbench.method import parse_overrides

    load_all(list(methods_dirs))
    for job in jobs:
        METHODS.get(job.method)
        DATASETS.get(job.dataset)
        MODELS.get(job.model)
    for job in jobs:  # method parameters are type-checked against each method's Config
        parse_overrides(job.method, METHODS.get(job.method).Config, job.method_params)


def check_writable(out: Path) -> None:
    """Raise unless ``out`` exists as a writable folder or can be created (nothing is left behind)."""
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise LtbenchError(f"output folder {out} is not usable: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise LtbenchError(f"output folder {out} is not writable ({probe} does not allow writing)")
