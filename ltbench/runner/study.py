"""A study = a grid of jobs in one folder: ``study.json`` plus one sub-folder per job.

``study.json`` holds the study's name, the code version that created and last updated it, the
grid (the merged preset and flags), and every job's full configuration by job name. Re-running
with more methods/ratios/seeds adds jobs to the same study; re-running with a *different*
configuration for an existing job is refused (its checkpoint and results would not match).

A job folder (``JobConfig.job_name``, e.g. ``reat__cifar10__r0.01__s0``) holds the files that
:mod:`ltbench.study_folder` names; :mod:`ltbench.runner.job` runs one.

Every file is read as untrusted (README "Reliability"): a ``study.json`` that is not a JSON object
of job configurations is a one-line error for ``status`` and is moved aside and rewritten by
``run``; a damaged ``result.json`` leaves the job *pending*, never *done*.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ltbench.config import JobConfig
from ltbench.errors import LtbenchError
from ltbench.io import quarantine, read_json_object, remove_stale_temps, write_json
from ltbench.plugins import load_all
from ltbench.registry import DATASETS, METHODS, MODELS, MODIFIERS
from ltbench.runner import job as J
from ltbench.study_folder import STUDY as STUDY_FILE, STUDY_LOCK, JobState
from ltbench.validation import check_jobs
from ltbench import study_folder as sf

# Fields that may differ between runs of the same job without changing its results' meaning.
IGNORED_FIELDS = ("device",)

# Job states shown by `ltbench status`.
DONE, RUNNING, FAILED, PENDING = JobState.DONE, JobState.RUNNING, JobState.FAILED, JobState.PENDING


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
        raise LtbenchError(f"output folder {out} is not writable ({probe} does not allow writing)")


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
        return cls(root, read_study_file(path))

    @classmethod
    def check_compatible(cls, root: Path, jobs: list[JobConfig]) -> None:
        """Refuse a job whose name exists in the study with a different configuration."""
        existing = {}
        if (root / STUDY_FILE).is_file():
            try:
                existing = cls.open(root).data.get("jobs", {})
            except LtbenchError:  # damaged: `prepare` moves it aside; the job folders' config.json remain
                existing = {}
        for cfg in jobs:
            old = existing.get(cfg.job_name)
            cfg_file = root / cfg.job_name / sf.CONFIG
            if old is None and cfg_file.is_file():
                old = read_json_object(cfg_file)  # None when damaged: the job rewrites it
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
            remove_stale_temps(root, STUDY_FILE)  # of a study.json write that was killed
            cls.check_compatible(root, jobs)
            data = None
            if (root / STUDY_FILE).is_file():
                try:
                    data = cls.open(root).data
                except LtbenchError as exc:
                    kept = quarantine(root / STUDY_FILE)
                    print(f"warning: {exc}; moved it to {kept.name} and wrote a new one", file=sys.stderr)
            if data is None:
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
            try:
                write_json(root / STUDY_FILE, data)
            except OSError as exc:  # e.g. a full disk; the old study.json is left as it was
                raise LtbenchError(f"cannot write {root / STUDY_FILE}: {exc.strerror or exc}") from None
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


def read_study_file(path: Path) -> dict:
    """``study.json`` as a dict, checked: an object whose ``jobs`` (if any) maps names to objects.
    Anything else is a one-line LtbenchError naming the file."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise LtbenchError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSON or Unicode decoding
        raise LtbenchError(f"{path} is damaged (not JSON: {str(exc).splitlines()[0][:80]})") from None
    if not isinstance(data, dict):
        raise LtbenchError(f"{path} is damaged (a JSON {type(data).__name__}, not an object)")
    jobs = data.get("jobs", {})
    if not isinstance(jobs, dict) or not all(isinstance(v, dict) for v in jobs.values()):
        raise LtbenchError(f"{path} is damaged ('jobs' is not a table of job configurations)")
    return data


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
    """done (a readable result.json) / running (lock held) / failed (failed.json) / pending (anything else).

    Every file is read as untrusted: a damaged one is reported, never taken as valid and never a
    traceback. A ``result.json`` that does not read as a result makes the job *pending* (the next
    run moves it aside and redoes the job)."""
    name = job_dir.name
    damaged_result = False
    if (job_dir / sf.RESULT).is_file():
        result = sf.read_result(job_dir)
        if result is not None:
            detail = "  ".join(f"{a} {100 * r['overall']:.1f}% tail {100 * r['tail']:.1f}%"
                               for a, r in result["metrics"].items()
                               if isinstance(r, dict) and _is_num(r.get("overall")) and _is_num(r.get("tail")))
            return JobStatus(name, DONE, detail)
        damaged_result = True
    finished_epochs = sf.epochs_done(job_dir)
    of = f"/{epochs}" if epochs else ""
    if J.is_locked(job_dir):
        detail = f"{finished_epochs}{of} epochs done"
        try:
            detail = (job_dir / sf.PROGRESS).read_text(errors="replace").strip()[:200]
        except OSError:
            pass
        host = read_json_object(job_dir / sf.RUNNING)
        if host is not None:
            where = f"{host.get('host')} pid {host.get('pid')}"
            if host.get("slurm_job"):
                where += f" slurm {host['slurm_job']}"
            detail = f"{detail}  ({where})" if detail else where
        return JobStatus(name, RUNNING, detail)
    if (job_dir / sf.FAILED).is_file():
        rec = read_json_object(job_dir / sf.FAILED)
        if rec is None:
            detail = "(unreadable failed.json)"
        else:
            detail = str(rec.get("error") or "")
            if rec.get("epoch"):
                detail += f" (epoch {rec['epoch']})"
        return JobStatus(name, FAILED, detail)
    if damaged_result:
        return JobStatus(name, PENDING, f"{sf.RESULT} is damaged; re-run to redo the job (it is kept aside)")
    if (job_dir / sf.RUNNING).is_file():
        return JobStatus(name, PENDING, f"interrupted after {finished_epochs}{of} epochs; re-run to resume")
    if finished_epochs:
        return JobStatus(name, PENDING, f"{finished_epochs}{of} epochs done; re-run to resume")
    return JobStatus(name, PENDING, "")


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
