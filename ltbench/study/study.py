"""A study = a grid of jobs in one folder: ``study.json`` plus one sub-folder per job.

``study.json`` holds the study's name, the code version that created and last updated it, the
grid (the merged preset and flags; the grids of earlier commands that differed in ``earlier_specs``),
and every job's full configuration by job name. Re-running with more methods/ratios/seeds adds jobs
to the same study; re-running with a *different* configuration for an existing job is refused (its
checkpoint and results would not match), and so is a job whose settings differ from those of another
seed of its method label, dataset and ratio (the summary would average them).

A job folder (``JobConfig.job_name``, e.g. ``reat__cifar10__r0.01__s0``) holds the files that
:mod:`ltbench.study_folder` names; :mod:`ltbench.runner.job` runs one.

:class:`Study` is the one study object: :func:`ltbench.study.run.run_study` creates and extends it,
``status`` reads each job's state from it (:mod:`ltbench.study.job_state`), and the report and
:func:`ltbench.load_study` read every job's record (:class:`~ltbench.study.records.JobRecord`:
configuration, result, epoch records, error; :mod:`ltbench.study.records`) through :meth:`Study.read`.

Every file is read as untrusted (README "Reliability"): a ``study.json`` that is not a JSON object
of job configurations is a one-line error for ``status`` and is moved aside and rewritten by
``run``; a damaged ``result.json`` leaves the job *pending* for the runner (it redoes the job) and
*failed* in the report, never *done*.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Iterator, Optional

from ltbench.config import INCONSISTENT, JobConfig, differing_settings, folder_problem, job_settings
from ltbench.errors import CannotWrite, LtbenchError
from ltbench.io import quarantine, remove_stale_temps, write_json
from ltbench.study_folder import STUDY as STUDY_FILE, STUDY_LOCK
from ltbench import study_folder as sf
from ltbench.study.job_state import DONE, FAILED, PENDING, RUNNING, JobStatus, job_status
from ltbench.study.inert import without_inert
from ltbench.study.records import JobRecord, read_jobs

# Fields that may differ between runs of the same job without changing its results' meaning.
IGNORED_FIELDS = ("device",)

def _comparable(cfg: dict) -> dict:
    return {k: v for k, v in without_inert(cfg).items() if k not in IGNORED_FIELDS}


class Study:
    """A study folder: ``study.json`` (:attr:`data`) and its job folders.

    * :meth:`open` — an existing study, for ``status`` and the runner (``study.json`` required);
    * :meth:`prepare` — create it or add jobs to it (under the study lock), for ``run``;
    * :meth:`read` — what the report and :func:`ltbench.load_study` see: also a folder without a
      ``study.json`` (or with a damaged one), read once, with a :class:`JobRecord` per job.

    :attr:`jobs` is the list of :class:`JobRecord` in grid order (announced jobs first, then any other
    job folder found), read from disk on first use and kept; :meth:`status` reads one job's state now.
    """

    def __init__(self, root: str | Path, data: dict, label: Optional[str] = None,
                 jobs: Optional[list[JobRecord]] = None):
        self.root = Path(root)
        self.data = data
        self.label = label or self.root.resolve().name
        self._jobs = jobs

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path) -> "Study":
        root = Path(root)
        path = root / STUDY_FILE
        if not path.is_file():
            raise LtbenchError(f"{root} is not a study folder (no {STUDY_FILE})")
        return cls(root, read_study_file(path))

    @classmethod
    def read(cls, root: str | Path, label: Optional[str] = None) -> "Study":
        """Read a study folder as it is now: ``study.json`` if present (a damaged one becomes
        ``{"error": …}``), every job folder, and the announced jobs that have no folder yet
        (*pending*). Raises :class:`LtbenchError` if ``root`` is not a study."""
        root = Path(root)
        if not root.is_dir():
            raise LtbenchError(f"study folder {root} does not exist" if not root.exists()
                               else f"{root} is not a folder (expected a study folder)")
        label = label or root.resolve().name
        data: dict = {}
        if (root / STUDY_FILE).is_file():
            try:
                loaded = sf.read_any(root / STUDY_FILE)
                data = loaded if isinstance(loaded, dict) else {"study": loaded}
            except (OSError, ValueError) as exc:
                data = {"error": f"{STUDY_FILE} is unreadable: {exc}"}
        jobs = read_jobs(root, data, label)
        if not jobs and not (root / STUDY_FILE).is_file():
            raise LtbenchError(f"{root} is not a study folder: no {STUDY_FILE} and no job folders "
                               f"(named like reat__cifar10__r0.01__s0) in it")
        return cls(root, data, label, jobs)

    @classmethod
    def check_compatible(cls, root: Path, jobs: list[JobConfig], afresh: frozenset = frozenset()) -> None:
        """Refuse a job whose name exists in the study with a different configuration, unless it is
        one of ``afresh`` (``--redo``: started afresh, its new configuration replaces the old)."""
        existing = {}
        if (root / STUDY_FILE).is_file():
            try:
                existing = cls.open(root).data.get("jobs", {})
            except LtbenchError:  # damaged: `prepare` moves it aside; the job folders' config.json remain
                existing = {}
        for cfg in jobs:
            if cfg.job_name in afresh:
                continue
            old = existing.get(cfg.job_name)
            if old is None and (root / cfg.job_name / sf.CONFIG).is_file():
                old = sf.read_config(root / cfg.job_name)  # None when damaged: the job rewrites it
            if old is None:
                continue
            new = cfg.to_dict()
            # Keys only one side knows (a field added or removed by a newer ltbench) are not compared.
            diff = sorted(k for k in set(_comparable(old)) & set(_comparable(new)) if old[k] != new[k])
            if diff:
                shown = ", ".join(f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in diff[:4])
                raise LtbenchError(f"job {cfg.job_name} in {root} was configured differently ({shown}); "
                                   f"use another --out, or start it afresh with --redo {cfg.job_name}")
        check_same_settings(root, existing, jobs)
        if root.is_dir():
            for job_dir in sorted(p for p in root.iterdir() if sf.is_job_dir(p)):
                problem = folder_problem(job_dir)
                if problem:
                    raise LtbenchError(f"{job_dir} is {problem}; rename it back or move it out of the study")

    @classmethod
    def prepare(cls, root: Path, spec: dict, jobs: list[JobConfig], command: Optional[list[str]] = None,
                afresh: frozenset = frozenset()) -> "Study":
        """Create ``root/study.json`` or add ``jobs`` to it (under the study lock); the jobs in
        ``afresh`` (``--redo``) may change their configuration."""
        from ltbench.env import code_version
        from ltbench.runner.job import now_iso

        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CannotWrite(f"cannot create output folder {root}: {exc.strerror or exc}") from None
        with study_lock(root):
            remove_stale_temps(root, STUDY_FILE)  # of a study.json write that was killed
            cls.check_compatible(root, jobs, afresh)
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
            if data.get("spec") not in (None, spec) and data["spec"] not in data.get("earlier_specs", []):
                data.setdefault("earlier_specs", []).append(data["spec"])  # an earlier command's grid: kept
            data["spec"] = spec
            if command is not None:
                data["command"] = command
            data.setdefault("jobs", {})
            for cfg in jobs:  # compatible (checked above): the latest form of each config is kept
                data["jobs"][cfg.job_name] = cfg.to_dict()
            try:
                write_json(root / STUDY_FILE, data)
            except OSError as exc:  # e.g. a full disk; the old study.json is left as it was
                raise CannotWrite(f"cannot write {root / STUDY_FILE}: {exc.strerror or exc}") from None
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
        """The state of every job ``study.json`` announces, then the job folders it does not announce
        that are inconsistent (a job folder renamed or copied by hand: see :func:`folder_problem`)."""
        names = self.job_names()
        others = [job_status(p) for p in sorted(self.root.iterdir()) if p.name not in set(names) and sf.is_job_dir(p)]
        return [self.status(n) for n in names] + [s for s in others if s.detail.startswith(INCONSISTENT)]

    def prerequisites(self, names: list[str]) -> dict[str, str]:
        """Job → the job among ``names`` it starts from (its ``init_from`` names that job's folder):
        FRL fine-tunes its seed's PGD-AT job, so it may start only once that job is done."""
        folders = {self.job_dir(n).resolve(): n for n in names}
        out = {}
        for name in names:
            source = self.data["jobs"][name].get("init_from")
            first = folders.get(Path(source).resolve()) if source else None
            if first is not None and first != name:
                out[name] = first
        return out

    def waves(self, names: list[str]) -> list[list[str]]:
        """``names`` in waves: each job after the wave of the job it starts from (order kept within a wave)."""
        before = self.prerequisites(names)
        depth: dict[str, int] = {}

        def level(name: str, seen: tuple = ()) -> int:
            if name not in depth:
                first = before.get(name)
                if first is not None and first in seen:
                    raise LtbenchError(f"jobs {name} and {first} each start from the other (init_from)")
                depth[name] = 0 if first is None else level(first, seen + (name,)) + 1
            return depth[name]

        for name in names:
            level(name)
        return [[n for n in names if depth[n] == k] for k in range(max(depth.values(), default=-1) + 1)]

    # --- the jobs as read (results, curves, errors) ------------------------------------------
    @property
    def jobs(self) -> list[JobRecord]:
        if self._jobs is None:
            self._jobs = read_jobs(self.root, self.data, self.label)
        return self._jobs

    def by_status(self, status: str) -> list[JobRecord]:
        return [j for j in self.jobs if j.status == status]

    @property
    def done(self) -> list[JobRecord]:
        return self.by_status(DONE)

    def counts(self) -> dict[str, int]:
        return {s.value: len(self.by_status(s)) for s in (DONE, FAILED, RUNNING, PENDING)}


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


def check_same_settings(root: Path, existing: dict, jobs: list[JobConfig]) -> None:
    """Refuse a job whose settings differ from those of another job of its method label, dataset and
    ratio (another seed, in ``existing``, the study's job configurations, or in ``jobs``): the summary
    would average them. One line naming the differing fields."""
    configs = {**existing, **{cfg.job_name: cfg.to_dict() for cfg in jobs}}
    groups: dict[tuple, list[str]] = {}
    for name, cfg in configs.items():
        groups.setdefault((cfg.get("label") or cfg.get("method"), cfg.get("dataset"), cfg.get("ratio")), []).append(name)
    for cfg in jobs:
        group = groups[(cfg.label or cfg.method, cfg.dataset, cfg.ratio)]
        for other in group:
            diff = differing_settings([without_inert(configs[other]), without_inert(configs[cfg.job_name])])
            if diff:
                old, new = job_settings(configs[other]), job_settings(configs[cfg.job_name])
                shown = ", ".join(f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in diff[:4])
                raise LtbenchError(f"job {cfg.job_name} would be averaged with {other} in {root}, but their "
                                   f"settings differ ({shown}); use another --out")
