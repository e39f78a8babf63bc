"""One job's state, read from its folder and its lock: done, running, failed or pending.

:func:`job_status` is the one reader ``ltbench status``, ``ltbench run`` (which jobs to skip) and the
report (how far an unfinished job got) share. A job is *running* while a process holds its lock
(:func:`ltbench.study_folder.is_locked`); every file is read as untrusted (README "Reliability").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ltbench.config import folder_problem
from ltbench.io import read_json_object
from ltbench.study_folder import JobState
from ltbench import study_folder as sf

# Job states shown by `ltbench status`.
DONE, RUNNING, FAILED, PENDING = JobState.DONE, JobState.RUNNING, JobState.FAILED, JobState.PENDING
@dataclass
class JobStatus:
    """One job's state in a study, with a one-line detail (progress, error, or accuracy)."""

    name: str
    state: str
    detail: str = ""


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


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
