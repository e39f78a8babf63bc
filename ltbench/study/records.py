"""The read side of a study folder: every job as a :class:`JobRecord` (configuration, result,
epoch records, error), what the report and :func:`ltbench.load_study` see through
:meth:`ltbench.study.study.Study.read`.

A ``result.json`` that cannot be parsed makes its job *failed* here (never *done*); jobs of one
method label, dataset and ratio whose settings differ are told apart (:func:`keep_mixed_settings_apart`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ltbench.config import differing_settings, folder_problem, job_settings
from ltbench.study_folder import JobState
from ltbench import study_folder as sf
from ltbench.study.inert import without_inert
from ltbench.study.job_state import PENDING, RUNNING, job_status


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
