"""The Slurm executor: one Slurm array task per job, submitted with submitit.

``ltbench run --executor slurm --partition gpu --time 12:00:00 --gpus-per-job 1`` submits every
unfinished job of the grid as one job array (``submitit.AutoExecutor.map_array``). Each array task
runs :class:`SlurmTask`, which runs the job through :func:`ltbench.runner.job.execute_job` — the
same lock, log, checkpoint/resume and failure record as the local executor — with the
submitting process's Python (the venv) and environment (``sbatch`` exports it, so
``$LTBENCH_DATA`` and ``$LTBENCH_METHODS`` reach the job). A task that hits its time limit or
is preempted checkpoints through Slurm's signal and is requeued by submitit; the job resumes
from its last epoch checkpoint.

By default the runner then waits, polling ``squeue`` (no accounting database needed) and the
job folders, and shows the running tasks' progress; ``--no-wait`` returns right after
submitting (``ltbench status STUDY`` shows the jobs later). submitit's own logs are in
``STUDY/slurm/``.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

from ltbench.errors import LtbenchError
from ltbench.runner import job as J
from ltbench.runner.display import Display
from ltbench import study_folder as sf

INTERRUPTED = sf.Outcome.INTERRUPTED
POLL_S = 2.0


def parse_time(text: str) -> int:
    """Slurm's time formats (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) → whole minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise LtbenchError(f"--time {text!r}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = m.groups()
    a, b, c = int(a), int(b) if b else None, int(c) if c else None
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    if seconds <= 0:
        raise LtbenchError(f"--time {text!r} must be positive")
    return math.ceil(seconds / 60)


def check_slurm(partition: Optional[str]) -> None:
    """Raise unless ``sbatch``/``squeue`` exist and ``partition`` (if given) is known to Slurm."""
    for tool in ("sbatch", "squeue"):
        if shutil.which(tool) is None:
            raise LtbenchError(f"--executor slurm needs Slurm's `{tool}` on PATH; none found")
    if partition and shutil.which("sinfo"):
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return
        if out.returncode == 0:
            known = {p.strip() for p in out.stdout.split()}
            if known and partition not in known:
                raise LtbenchError(f"unknown Slurm partition {partition!r}; known: {', '.join(sorted(known))}")


class SlurmTask:
    """What one array task runs: one job of the study. Checkpointable for submitit (requeue)."""

    def __call__(self, study_dir: str, name: str, config: dict, retry_failed: bool, methods_dirs: list[str]) -> dict:
        import torch

        from ltbench.config import JobConfig
        from ltbench.plugins import load_all

        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and cpus.isdigit():
            torch.set_num_threads(int(cpus))
        load_all(methods_dirs)
        cfg = JobConfig.from_dict(config)
        return J.execute_job(Path(study_dir) / name, cfg, retry_failed=retry_failed)

    def checkpoint(self, *args, **kwargs):
        """On timeout/preemption: requeue the same task; it resumes from the job's checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def squeue_states(array_id: str) -> Optional[dict[str, str]]:
    """``{"<array>_<task>": STATE}`` of the array's tasks still known to Slurm; None if squeue failed."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-o", "%i|%T"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:  # the whole array has left the queue
            return {}
        return None
    states = {}
    for line in out.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid:
            states[jid] = state
    return states


def queued_in_slurm(job_dirs: list[Path]) -> dict[str, str]:
    """``{job name: "<task id> (<STATE>)"}`` for jobs whose last submitted Slurm task is still queued.

    One ``squeue`` call; empty when no job was submitted to Slurm or Slurm is not reachable.
    """
    import json

    submitted = {}
    for d in job_dirs:
        try:
            submitted[d.name] = json.loads((d / sf.SUBMITTED).read_text())["job_id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not submitted or shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    states = dict(line.strip().split("|", 1) for line in out.stdout.splitlines() if "|" in line)
    return {name: f"{jid} ({states[jid]})" for name, jid in submitted.items() if jid in states}


def _merged(states) -> Optional[dict[str, str]]:
    """One task → state table from several arrays' (None if any squeue call failed)."""
    out: dict[str, str] = {}
    for table in states:
        if table is None:
            return None
        out.update(table)
    return out


class SlurmExecutor:
    """Submits jobs as one Slurm array and (optionally) waits for them (see the module docstring)."""

    def __init__(self, partition: Optional[str], time_min: int, gpus_per_job: int = 0,
                 cpus_per_job: Optional[int] = None, mem: Optional[str] = None,
                 max_parallel: Optional[int] = None, extra: Optional[dict] = None, methods_dirs=(),
                 retry_failed: bool = False, wait: bool = True):
        self.partition = partition
        self.time_min = time_min
        self.gpus_per_job = gpus_per_job
        self.cpus_per_job = cpus_per_job
        self.mem = mem
        self.max_parallel = max_parallel
        self.extra = extra or {}
        self.methods_dirs = [str(Path(d).resolve()) for d in methods_dirs]
        self.retry_failed = retry_failed
        self.wait = wait
        self.submitted: list = []

    def parameters(self, study_name: str) -> dict:
        """submitit parameters for this study's array."""
        params = {"name": f"ltbench-{study_name}", "timeout_min": self.time_min}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.cpus_per_job:
            params["cpus_per_task"] = self.cpus_per_job
        if self.mem:
            params["slurm_mem"] = self.mem
        if self.max_parallel:
            params["slurm_array_parallelism"] = self.max_parallel
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        return params

    def submit(self, study, names: list[str], after: Optional[str] = None) -> list:
        """Submit ``names`` as one array; with ``after`` (an array id) its tasks start once every
        task of that array has ended (``--dependency=afterany``)."""
        import submitit

        folder = Path(study.root).resolve() / "slurm"
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = self.parameters(study.name)
        if after is not None:
            params["slurm_additional_parameters"] = {**params.get("slurm_additional_parameters", {}),
                                                     "dependency": f"afterany:{after}"}
        executor.update_parameters(**params)
        root = str(Path(study.root).resolve())
        n = len(names)
        try:
            jobs = executor.map_array(SlurmTask(), [root] * n, names, [study.data["jobs"][m] for m in names],
                                      [self.retry_failed] * n, [self.methods_dirs] * n)
        except Exception as exc:  # sbatch refused (bad partition, limits…): one line for the user
            msg = str(exc).strip().splitlines()
            raise LtbenchError(f"Slurm submission failed: {msg[-1] if msg else type(exc).__name__}") from None
        self.submitted += jobs
        from ltbench.io import write_json

        for job, name in zip(jobs, names):
            write_json(study.job_dir(name) / sf.SUBMITTED, {"job_id": job.job_id, "submitted": J.now_iso(),
                                                         "folder": str(folder)})
        return jobs

    def run(self, study, names: list[str], display: Display) -> dict[str, dict]:
        """Submit ``names``; unless ``wait`` is False, wait for every task and return outcomes.

        A job that starts from another job of this run (``init_from``) goes into a later array that
        Slurm starts when the earlier one has ended (:meth:`ltbench.study.study.Study.waves`)."""
        jobs, arrays, ordered = [], [], []
        for wave in study.waves(names):
            wave_jobs = self.submit(study, wave, after=arrays[-1] if arrays else None)
            if wave_jobs:
                arrays.append(wave_jobs[0].job_id.split("_")[0])
            jobs += wave_jobs
            ordered += wave
        names = ordered
        array_id = " ".join(arrays) or "?"
        display.write(f"submitted Slurm array{'s' if len(arrays) > 1 else ''} {array_id}: {len(jobs)} task(s)"
                      f"{' (each array after the one before it)' if len(arrays) > 1 else ''}; "
                      f"logs in {Path(study.root) / 'slurm'}")
        if not self.wait:
            display.write(f"not waiting (--no-wait): `ltbench status {study.root}` shows progress; "
                          f"`scancel {array_id}` cancels")
            return {}
        outcomes: dict[str, dict] = {}
        pending = {j.job_id: (j, name) for j, name in zip(jobs, names)}
        started: set[str] = set()
        try:
            while pending:
                states = _merged(squeue_states(a) for a in arrays)
                for jid, (job, name) in list(pending.items()):
                    label = f"slurm {jid}"
                    state = None if states is None else states.get(jid)
                    if state == "RUNNING" and jid not in started:
                        started.add(jid)
                        display.started(label, name)
                    if jid in started:
                        msg = read_progress(study.job_dir(name))
                        if msg:
                            display.progress(label, name, msg)
                    ended = job.paths.result_pickle.exists() or (states is not None and state is None)
                    if ended:
                        outcome = self._outcome(job, name, study)
                        outcomes[name] = outcome
                        del pending[jid]
                        display.ended(label, name, outcome)
                if pending:
                    time.sleep(POLL_S)
        except KeyboardInterrupt:
            display.write(f"stopped waiting; the Slurm tasks go on (`scancel {array_id}` cancels them, "
                          f"`ltbench status {study.root}` shows them)")
            raise
        return outcomes

    @staticmethod
    def _outcome(job, name: str, study) -> dict:
        """The task's outcome from submitit's result file, or else from the job folder."""
        for _ in range(10):  # the result pickle may trail the task leaving the queue by a moment
            if job.paths.result_pickle.exists():
                break
            time.sleep(0.3)
        if job.paths.result_pickle.exists():
            try:
                return job.result()
            except Exception as exc:  # UncompletedJobError (timed out, not requeued), …
                first = str(exc).strip().splitlines()
                reason = first[0] if first else type(exc).__name__
                if sf.read_result(study.job_dir(name)) is not None:
                    return {"job": name, "outcome": sf.Outcome.FINISHED}
                return {"job": name, "outcome": INTERRUPTED,
                        "error": f"Slurm task {job.job_id} ended without finishing: {reason[:200]} "
                                 f"(see {job.paths.stderr})"}
        job_dir = study.job_dir(name)
        if sf.read_result(job_dir) is not None:
            return {"job": name, "outcome": sf.Outcome.FINISHED}
        if (job_dir / sf.FAILED).exists():
            return {"job": name, "outcome": sf.Outcome.FAILED_NOW, **J.read_failure(job_dir)}
        return {"job": name, "outcome": INTERRUPTED,
                "error": f"Slurm task {job.job_id} left the queue without a result (cancelled, node failure "
                         f"or time limit; see {job.paths.stderr})"}


def read_progress(job_dir: Path):
    """A running job's latest progress: the numbers of ``progress.json`` when readable (the display
    estimates the study's ETA from them), else the line of ``progress.txt``, else None."""
    import json

    try:
        msg = json.loads((job_dir / sf.PROGRESS_JSON).read_text())
        if isinstance(msg, dict) and "text" in msg:
            return msg
    except (OSError, ValueError):
        pass
    try:
        return (job_dir / sf.PROGRESS).read_text().strip() or None
    except OSError:
        return None
