"""A study = a grid of jobs in one folder: ``study.json`` plus one sub-folder per job.

``study.json`` holds the study's name, the code version that created and last updated it, the
grid (the merged preset and flags; the grids of earlier commands that differed in ``earlier_specs``),
and every job's full configuration by job name. Re-running with more methods/ratios/seeds adds jobs
to the same study; re-running with a *different* configuration for an existing job is refused (its
checkpoint and results would not match), and so is a job whose settings differ from those of another
seed of its method label, dataset and ratio (the summary would average them).

A job folder (``JobConfig.job_name``, e.g. ``reat__cifar10__r0.01__s0``) holds the files that
:mod:`ltbench.study_folder` names; :mod:`ltbench.runner.job` runs one.

:class:`Study` is the one study object: the runner creates and extends it, ``status`` reads each
job's state from it, and the report and :func:`ltbench.load_study` read every job's record
(:class:`JobRecord`: configuration, result, epoch records, error) through :meth:`Study.read`.

Every file is read as untrusted (README "Reliability"): a ``study.json`` that is not a JSON object
of job configurations is a one-line error for ``status`` and is moved aside and rewritten by
``run``; a damaged ``result.json`` leaves the job *pending* for the runner (it redoes the job) and
*failed* in the report, never *done*.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from ltbench.config import INCONSISTENT, JobConfig, differing_settings, folder_problem, job_settings
from ltbench.errors import CannotWrite, LtbenchError
from ltbench.io import quarantine, read_json_object, remove_stale_temps, write_json
from ltbench.study_folder import STUDY as STUDY_FILE, STUDY_LOCK, JobState
from ltbench import study_folder as sf

# Fields that may differ between runs of the same job without changing its results' meaning.
IGNORED_FIELDS = ("device",)

# Job states shown by `ltbench status`.
DONE, RUNNING, FAILED, PENDING = JobState.DONE, JobState.RUNNING, JobState.FAILED, JobState.PENDING


def _comparable(cfg: dict) -> dict:
    return {k: v for k, v in without_inert(cfg).items() if k not in IGNORED_FIELDS}


def has_epoch_schedules(cfg: dict) -> bool:
    """Whether the job's method or one of its modifiers has an epoch-valued hyper-parameter
    (:func:`ltbench.method.epoch_field`), the only thing ``scale_schedules`` changes. True when the
    method or a modifier is not registered here (a plugin not loaded): then nothing is assumed."""
    import dataclasses

    from ltbench.registry import METHODS, MODIFIERS

    try:
        owners = [METHODS.get(cfg.get("method"))] + [MODIFIERS.get(m) for m in (cfg.get("modifiers") or {})]
    except LtbenchError:
        return True
    configs = [getattr(o, "Config", None) for o in owners]
    return any(f.metadata.get("paper_epochs") is not None
               for c in configs if dataclasses.is_dataclass(c) for f in dataclasses.fields(c))


def without_inert(cfg: dict) -> dict:
    """A stored job configuration without the settings that cannot change what the job computes:
    where the best epoch would be selected (``select_on``, ``select_n_per_class``) when none is
    (no ``select_best``), and ``scale_schedules`` for a method with no epoch-valued
    hyper-parameter. Jobs that differ only there ran alike: they are the same job to ``--redo``'s
    guard and one variant to the tables. (For a while ltbench wrote every new job's configuration
    with ``scale_schedules`` false and ``select_on`` test, the meaning given to configurations older
    than those fields; such a job of a method without schedules is the same job as today's.)"""
    drop = set()
    if not cfg.get("select_best"):
        drop |= {"select_on", "select_n_per_class"}
    if not has_epoch_schedules(cfg):
        drop.add("scale_schedules")
    return {k: v for k, v in cfg.items() if k not in drop}


@dataclass
class JobStatus:
    """One job's state in a study, with a one-line detail (progress, error, or accuracy)."""

    name: str
    state: str
    detail: str = ""


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
                 jobs: Optional[list["JobRecord"]] = None):
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
    def jobs(self) -> list["JobRecord"]:
        if self._jobs is None:
            self._jobs = read_jobs(self.root, self.data, self.label)
        return self._jobs

    def by_status(self, status: str) -> list["JobRecord"]:
        return [j for j in self.jobs if j.status == status]

    @property
    def done(self) -> list["JobRecord"]:
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


def job_status(job_dir: Path, epochs: Optional[int] = None) -> JobStatus:
    """done (a readable result.json) / running (lock held) / failed (failed.json) / pending (anything else).

    Every file is read as untrusted: a damaged one is reported, never taken as valid and never a
    traceback. A ``result.json`` that does not read as a result makes the job *pending* (the next
    run moves it aside and redoes the job)."""
    name = job_dir.name
    damaged_result = False
    problem = folder_problem(job_dir)
    if problem:
        return JobStatus(name, FAILED, problem)
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
    if sf.is_locked(job_dir):
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


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --- reading a job folder ----------------------------------------------------------------------
def read_jobs(root: Path, data: dict, label: str) -> list["JobRecord"]:
    """A :class:`JobRecord` per job of the study folder ``root`` whose ``study.json`` is ``data``:
    the announced jobs in grid order (*pending* when they have no folder yet), then any other job
    folder found."""
    configs = data.get("jobs") if isinstance(data.get("jobs"), dict) else {}
    found = {p.name: read_job(p, label, configs.get(p.name)) for p in sorted(root.iterdir()) if sf.is_job_dir(p)}
    jobs = [found.pop(n) if n in found else JobRecord(name=n, path=None, status=PENDING, study=label,
                                                      config=dict(configs.get(n) or {}), detail="not started")
            for n in dict.fromkeys(expected_job_names(data))]
    jobs += list(found.values())
    keep_mixed_settings_apart(jobs)
    return jobs


def keep_mixed_settings_apart(jobs: list["JobRecord"]) -> None:
    """Jobs the tables would average (same method label, dataset and ratio) whose settings differ
    (epochs, lr, ε, model …: a folder extended by hand or by an older ltbench) are told apart: each
    gets the differing settings as its :attr:`JobRecord.variant`, shown in its method label
    (``pgd-at [epochs=2]``), so summary, paired differences and the report keep them apart and say
    which setting splits them."""
    groups: dict[tuple, list[JobRecord]] = {}
    for job in jobs:
        if job.settings_config and job.consistent:
            groups.setdefault((job.method, job.dataset, job.ratio), []).append(job)
    for group in groups.values():
        diff = differing_settings([without_inert(j.settings_config) for j in group])
        for job in group:
            settings = job_settings(job.settings_config)
            job.variant = ", ".join(f"{k}={json.dumps(settings.get(k), separators=(',', ':'))}" for k in diff)


@dataclass
class JobRecord:
    """One job of a study and what could be read from its folder: configuration, result, epoch
    records, error; its state as ``ltbench status`` gives it (an unreadable ``result.json`` is *failed* here)."""

    name: str
    path: Optional[Path]
    status: JobState
    config: dict = field(default_factory=dict)
    result: Optional[dict] = None
    metrics: list = field(default_factory=list)
    error: Optional[str] = None
    study: str = ""
    detail: str = ""  # progress of a running job, how far an interrupted one got
    split_counts: Optional[list] = None  # class counts from lt_indices.json (read for unfinished jobs)
    consistent: bool = True  # False: the folder's name is not the job its configuration describes
    variant: str = ""  # settings that set it apart from other seeds of its label (keep_mixed_settings_apart)

    @property
    def settings_config(self) -> dict:
        """The configuration the job ran with: its result's, else its own."""
        config = (self.result or {}).get("config")
        return config if isinstance(config, dict) and config else self.config

    def _field(self, key: str, default=None):
        for source in ((self.result or {}).get("config") or {}, self.config):
            if key in source and source[key] is not None:
                return source[key]
        parts = sf.parse_job_name(self.name)
        if parts is not None and key in parts._fields:
            return getattr(parts, key)
        return default

    @property
    def method(self) -> str:
        """The method as the study names it: its label (``reat+no-tail``) or its registered name, and
        the settings that set it apart from other seeds of that label, if any (``pgd-at [epochs=2]``)."""
        name = str(self._field("label") or self._field("method", "?"))
        return f"{name} [{self.variant}]" if self.variant else name

    @property
    def dataset(self) -> str:
        return str(self._field("dataset", "?"))

    @property
    def ratio(self) -> float:
        try:
            return float(self._field("ratio", math.nan))
        except (TypeError, ValueError):
            return math.nan

    @property
    def seed(self) -> int:
        try:
            return int(self._field("seed", -1))
        except (TypeError, ValueError):
            return -1

    @property
    def epochs(self) -> Optional[int]:
        value = self._field("epochs")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def train_counts(self) -> list[int]:
        """Training images per class: from ``result.json``, else from the saved split."""
        counts = ((self.result or {}).get("dataset") or {}).get("train_counts") or self.split_counts
        return [int(c) for c in counts or []]

    @property
    def class_names(self) -> list[str]:
        return [str(n) for n in ((self.result or {}).get("dataset") or {}).get("class_names") or []]

    @property
    def warnings(self) -> list[str]:
        """Gradient-masking (and other) warnings recorded in ``result.json``, as strings."""
        out = []
        for w in (self.result or {}).get("warnings") or []:
            if isinstance(w, dict):
                w = w.get("message") or json.dumps(w, sort_keys=True)
            out.append(str(w))
        return out


def read_error(job_dir: Path) -> Optional[str]:
    """The text of a failed job's error record(s) (``failed.json`` and/or ``error.txt``), or None.

    ``failed.json`` may hold any JSON object; its one-line ``error`` comes first, then the other
    fields as ``key: value`` lines, then the ``traceback``. ``error.txt`` is added unless it only
    repeats that traceback (the runner writes both).
    """
    parts: list[str] = []
    shown_traceback = ""
    failed, error_txt = (job_dir / n for n in sf.ERROR_FILES)
    if failed.is_file():
        try:
            text = failed.read_text(errors="replace")
        except OSError as exc:
            text = f"{failed.name}: unreadable ({exc})"
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            rest = dict(data)
            lines = [str(rest.pop(k)) for k in ("error", "message") if rest.get(k)]
            tb = rest.pop("traceback", None)
            lines += [f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in rest.items() if v is not None]
            if tb:
                shown_traceback = tb if isinstance(tb, str) else json.dumps(tb, indent=2)
                lines += ["", shown_traceback.rstrip("\n")]
            text = "\n".join(lines)
        parts.append(text.rstrip("\n") or f"({failed.name} is empty)")
    if error_txt.is_file():
        try:
            text = error_txt.read_text(errors="replace")
        except OSError as exc:
            text = f"{error_txt.name}: unreadable ({exc})"
        if not shown_traceback or text.strip() != shown_traceback.strip():
            parts.append(text.rstrip("\n") or f"({error_txt.name} is empty)")
    return "\n\n".join(parts) if parts else None


def read_job(job_dir: Path, study: str = "", config: Optional[dict] = None) -> JobRecord:
    """Read one job folder (``config``: its configuration from ``study.json``, used when the folder
    has no ``config.json`` yet). A ``result.json`` that cannot be parsed makes the job *failed*."""
    job = JobRecord(name=job_dir.name, path=job_dir, status=JobState.RUNNING, study=study,
              config=dict(config) if isinstance(config, dict) else {})
    loaded = sf.read_config(job_dir)  # None when missing or damaged: the study.json copy stays
    if loaded is not None:
        job.config = loaded
    job.metrics.extend(sf.read_metrics(job_dir))  # a torn last line, a damaged file: skipped
    problem = folder_problem(job_dir)
    if problem:
        job.status, job.error, job.consistent = JobState.FAILED, problem, False
        return job
    if (job_dir / sf.RESULT).is_file():
        try:
            job.result, job.status = sf.load_result(job_dir), JobState.DONE
            return job
        except ValueError as exc:
            job.status, job.error = JobState.FAILED, f"{sf.RESULT} is unreadable: {exc}"
    job.split_counts = sf.read_split_counts(job_dir)
    error = read_error(job_dir)
    if error is not None and not sf.is_locked(job_dir):
        job.status = JobState.FAILED
        job.error = error if job.error is None else f"{job.error}\n\n{error}"
        return job
    if job.status != JobState.FAILED:
        job.status, job.detail = _runner_status(job_dir, job.epochs)
    return job


def _runner_status(job_dir: Path, epochs: Optional[int]) -> tuple[str, str]:
    """running / pending and the detail line for an unfinished job, as ``ltbench status`` says."""
    st = job_status(job_dir, epochs)
    return (st.state if st.state in (RUNNING, PENDING) else PENDING), st.detail or "not started"


def expected_job_names(spec: dict) -> list[str]:
    """Job folder names a ``study.json`` announces, in grid order (empty if it does not say).

    Understands a ``jobs`` list (names, or dicts with ``name``/``job_name``, or job configs) and a
    grid (``methods``, ``datasets``, ``ratios``, ``seeds`` at the top level or under
    ``grid``/``spec``).
    """
    def name_of(cfg: dict) -> Optional[str]:
        for key in ("name", "job_name", "job"):
            if isinstance(cfg.get(key), str):
                return cfg[key]
        cfg = cfg.get("config", cfg)
        try:
            return sf.job_name(cfg.get('label') or cfg['method'], cfg['dataset'], cfg['ratio'], cfg['seed'])
        except (KeyError, TypeError, ValueError):
            return None

    if not isinstance(spec, dict):
        return []
    jobs = spec.get("jobs")
    if isinstance(jobs, dict):
        jobs = list(jobs)
    if isinstance(jobs, list):
        names = [j if isinstance(j, str) else name_of(j) if isinstance(j, dict) else None for j in jobs]
        return [n for n in names if n]
    for grid in (spec, spec.get("grid"), spec.get("spec")):
        if isinstance(grid, dict) and all(isinstance(grid.get(k), list) for k in ("methods", "datasets", "ratios", "seeds")):
            try:
                return [sf.job_name(m, d, r, s) for m in grid["methods"] for d in grid["datasets"]
                        for r in grid["ratios"] for s in grid["seeds"]]
            except (TypeError, ValueError):
                return []
    return []
