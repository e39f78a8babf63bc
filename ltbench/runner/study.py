"""A study = a grid of jobs in one folder: ``study.json`` plus one sub-folder per job.

``study.json`` holds the study's name, the code version that created and last updated it, the
grid (the merged preset and flags), and every job's full configuration by job name. Re-running
with more methods/ratios/seeds adds jobs to the same study; re-running with a *different*
configuration for an existing job is refused (its checkpoint and results would not match).

A job folder (``JobConfig.job_name``, e.g. ``reat__cifar10__r0.01__s0``) holds ``config.json``,
``lt_indices.json``, ``metrics.jsonl``, ``checkpoint.pt``, ``log.txt``, and ``result.json`` once the
job finished — or ``failed.json`` + ``error.txt`` when it failed. See :mod:`ltbench.runner.job`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ltbench.config import JobConfig
from ltbench.errors import LtbenchError
from ltbench.io import read_jsonl, write_json
from ltbench.registry import DATASETS, METHODS, MODELS, MODIFIERS, load_all
from ltbench.runner import job as J

STUDY_FILE = "study.json"
STUDY_LOCK = ".study.lock"
# Fields that may differ between runs of the same job without changing its results' meaning.
IGNORED_FIELDS = ("device",)

# Job states shown by `ltbench status`.
DONE, RUNNING, FAILED, PENDING = "done", "running", "failed", "pending"


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


def check_writable(out: Path) -> None:
    """Raise unless ``out`` exists as a writable folder or can be created (nothing is left behind)."""
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise LtbenchError(f"output folder {out} is not usable: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise LtbenchError(f"output folder {out} is not writable ({probe} does not allow writing)")


def _comparable(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in IGNORED_FIELDS}


@dataclass
class JobStatus:
    """One job's state in a study, with a one-line detail (progress, error, or accuracy)."""

    name: str
    state: str
    detail: str = ""


class Study:
    """A study folder. Construct with :meth:`open` (existing) or :meth:`prepare` (create/extend)."""

    def __init__(self, root: Path, data: dict):
        self.root = Path(root)
        self.data = data

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path) -> "Study":
        root = Path(root)
        path = root / STUDY_FILE
        if not path.is_file():
            raise LtbenchError(f"{root} is not a study folder (no {STUDY_FILE})")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LtbenchError(f"cannot read {path}: {exc}") from None
        return cls(root, data)

    @classmethod
    def check_compatible(cls, root: Path, jobs: list[JobConfig]) -> None:
        """Refuse a job whose name exists in the study with a different configuration."""
        existing = {}
        if (root / STUDY_FILE).is_file():
            existing = cls.open(root).data.get("jobs", {})
        for cfg in jobs:
            old = existing.get(cfg.job_name)
            cfg_file = root / cfg.job_name / J.CONFIG
            if old is None and cfg_file.is_file():
                try:
                    old = json.loads(cfg_file.read_text())
                except (OSError, ValueError):
                    old = None
            if old is None:
                continue
            new = cfg.to_dict()
            # Keys only one side knows (a field added or removed by a newer ltbench) are not compared.
            diff = sorted(k for k in set(_comparable(old)) & set(_comparable(new)) if old[k] != new[k])
            if diff:
                shown = ", ".join(f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in diff[:4])
                raise LtbenchError(f"job {cfg.job_name} in {root} was configured differently ({shown}); "
                                   f"use another --out, or delete {root / cfg.job_name} to start it afresh")

    @classmethod
    def prepare(cls, root: Path, spec: dict, jobs: list[JobConfig], command: Optional[list[str]] = None) -> "Study":
        """Create ``root/study.json`` or add ``jobs`` to it (under the study lock)."""
        from ltbench.env import code_version
        from ltbench.runner.job import now_iso

        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LtbenchError(f"cannot create output folder {root}: {exc.strerror or exc}") from None
        with study_lock(root):
            cls.check_compatible(root, jobs)
            if (root / STUDY_FILE).is_file():
                data = cls.open(root).data
            else:
                data = {"name": root.resolve().name, "created": now_iso(), "created_by": code_version(),
                        "jobs": {}}
            data["updated"] = now_iso()
            data["code_version"] = code_version()
            data["spec"] = spec
            if command is not None:
                data["command"] = command
            data.setdefault("jobs", {})
            for cfg in jobs:  # compatible (checked above): the latest form of each config is kept
                data["jobs"][cfg.job_name] = cfg.to_dict()
            write_json(root / STUDY_FILE, data)
        return cls(root, data)

    # --- queries ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.data.get("name", self.root.name)

    def job_names(self) -> list[str]:
        return list(self.data.get("jobs", {}))

    def job_config(self, name: str) -> JobConfig:
        return JobConfig.from_dict(self.data["jobs"][name])

    def job_dir(self, name: str) -> Path:
        return self.root / name

    def status(self, name: str) -> JobStatus:
        return job_status(self.job_dir(name), self.data.get("jobs", {}).get(name, {}).get("epochs"))

    def statuses(self) -> list[JobStatus]:
        return [self.status(n) for n in self.job_names()]


@contextlib.contextmanager
def study_lock(root: Path) -> Iterator[None]:
    """A blocking exclusive lock on the study (``.study.lock``) for read-modify-write of study.json."""
    fd = os.open(Path(root) / STUDY_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def job_status(job_dir: Path, epochs: Optional[int] = None) -> JobStatus:
    """done (result.json) / running (lock held) / failed (failed.json) / pending (anything else)."""
    name = job_dir.name
    if (job_dir / J.RESULT).is_file():
        detail = ""
        try:
            metrics = json.loads((job_dir / J.RESULT).read_text()).get("metrics", {})
            detail = "  ".join(f"{a} {100 * r['overall']:.1f}% tail {100 * r['tail']:.1f}%"
                               for a, r in metrics.items() if isinstance(r, dict) and "overall" in r)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return JobStatus(name, DONE, detail)
    finished_epochs = len(read_jsonl(job_dir / J.METRICS)) if (job_dir / J.METRICS).is_file() else 0
    of = f"/{epochs}" if epochs else ""
    if J.is_locked(job_dir):
        detail = ""
        try:
            detail = (job_dir / J.PROGRESS).read_text().strip()
        except OSError:
            detail = f"{finished_epochs}{of} epochs done"
        try:
            host = json.loads((job_dir / J.RUNNING).read_text())
            where = f"{host.get('host')} pid {host.get('pid')}"
            if host.get("slurm_job"):
                where += f" slurm {host['slurm_job']}"
            detail = f"{detail}  ({where})" if detail else where
        except (OSError, ValueError):
            pass
        return JobStatus(name, RUNNING, detail)
    if (job_dir / J.FAILED).is_file():
        try:
            rec = json.loads((job_dir / J.FAILED).read_text())
            detail = rec.get("error") or ""
            if rec.get("epoch"):
                detail += f" (epoch {rec['epoch']})"
        except (OSError, ValueError):
            detail = "(unreadable failed.json)"
        return JobStatus(name, FAILED, detail)
    if (job_dir / J.RUNNING).is_file():
        return JobStatus(name, PENDING, f"interrupted after {finished_epochs}{of} epochs; re-run to resume")
    if finished_epochs:
        return JobStatus(name, PENDING, f"{finished_epochs}{of} epochs done; re-run to resume")
    return JobStatus(name, PENDING, "")
