"""Running one job of a study, safely: lock, log file, progress file, failure record.

:func:`execute_job` is what every executor calls, in whatever process runs the job (a local
worker, a Slurm array task). It

* takes the job's lock (``.lock`` in the job folder, ``fcntl.flock``), so two runners started
  on the same study never run the same job; the kernel drops the lock when the process dies,
  which is also how ``ltbench status`` tells a running job from a killed one;
* skips a job that is already done (a ``result.json`` that reads as a result; a damaged one is
  moved aside as ``result.json.corrupt-TIME`` and the job runs again), or that failed before
  (``failed.json``) unless ``retry_failed``; deletes temporary files a killed write left behind;
* appends the job's output (stdout, stderr, warnings, one line per epoch) to ``log.txt``;
* writes ``running.json`` (host, process id, start) and, every few seconds, ``progress.txt`` and
  ``progress.json`` (the same progress as numbers);
* runs :func:`ltbench.engine.train.run_job`, which resumes from the last checkpoint;
* on an exception, writes ``failed.json`` (error, type, phase, epoch, host, traceback) and ``error.txt``
  (the traceback) and returns — the caller goes on with the next job. When even those cannot be
  written (a full disk), the outcome still says why, and the process goes on.

Every file here is written atomically (temporary file + rename), except ``log.txt``, which is
append-only and only ever read by people.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

from ltbench.io import quarantine, read_json_object, remove_stale_temps, write_json, write_text
from ltbench.study_folder import (ERROR, FAILED, LOG, PROGRESS, PROGRESS_JSON, RESULT, RUNNING, JobLock, Outcome,
                                  epochs_done, is_locked, read_result)  # noqa: F401 (JobLock, is_locked: moved to study_folder)

PROGRESS_INTERVAL_S = 2.0


def now_iso() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def redirect_output(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path`` (appending)."""
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(path, "a", buffering=1)
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):  # a full disk must not keep fds 1 and 2 on the log
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        with contextlib.suppress(OSError):
            log.close()


class ProgressTracker:
    """Forwards progress messages, logs each new phase and every epoch's summary to ``log.txt``,
    and writes ``progress.txt`` (+ ``progress.json``).

    ``progress.txt`` (one line, atomic, at most every :data:`PROGRESS_INTERVAL_S`) is what
    ``ltbench status`` and the Slurm executor show for a running job; ``progress.json`` holds the
    same message's numbers (see :mod:`ltbench.progress`) for ``ltbench status --json``.
    """

    def __init__(self, job_dir: Path, forward: Optional[Callable[[object], None]] = None):
        self.job_dir = job_dir
        self.forward = forward
        self.last_phase = ""
        self.last_write = 0.0

    def __call__(self, msg) -> None:
        from ltbench import progress as P

        phase = P.phase(msg)
        if isinstance(msg, dict) and msg.get("kind") == "epoch":
            print(f"{now_iso()} {msg['text']}", flush=True)  # loss, accuracy, lr, time of the epoch
        elif phase != self.last_phase:
            self.last_phase = phase
            print(f"{now_iso()} {phase}", flush=True)
        now = time.monotonic()
        if now - self.last_write >= PROGRESS_INTERVAL_S:
            self.last_write = now
            write_text(self.job_dir / PROGRESS, P.text(msg) + "\n")
            if isinstance(msg, dict):
                write_json(self.job_dir / PROGRESS_JSON, msg)
            else:
                (self.job_dir / PROGRESS_JSON).unlink(missing_ok=True)
        if self.forward is not None:
            self.forward(msg)


def _slurm_id() -> Optional[str]:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def failure_record(exc: BaseException, job_dir: Path, epochs: int) -> dict:
    """What ``failed.json`` holds: one-line error, exception type, phase, epoch, traceback.

    ``epoch`` (1-based) is the exception's own (``TrainingDiverged``) or the first epoch without
    a log line; ``phase`` is ``training`` or ``evaluation`` (all epochs were done).
    """
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    done = epochs_done(job_dir)
    epoch = getattr(exc, "epoch", None) or (done + 1 if done < epochs else None)
    return {
        "error": f"{type(exc).__name__}: {exc}".strip(),
        "type": type(exc).__name__,
        "phase": "training" if epoch is not None else "evaluation",
        "epoch": epoch,
        "time": now_iso(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job": _slurm_id(),
        "traceback": tb,
    }


def execute_job(job_dir: Path, cfg, progress: Optional[Callable[[str], None]] = None,
                retry_failed: bool = False) -> dict:
    """Run one job under its lock; never raises for a failure of the job itself.

    Returns ``{"job", "outcome", "error"?, "epoch"?}`` with ``outcome`` one of
    :data:`Outcome.FINISHED`, :data:`Outcome.ALREADY_DONE`, :data:`Outcome.FAILED_NOW`, :data:`Outcome.FAILED_BEFORE`,
    :data:`Outcome.BUSY`. ``KeyboardInterrupt``/``SystemExit`` propagate, leaving the job resumable.
    """
    job_dir = Path(job_dir)
    name = job_dir.name
    lock = JobLock(job_dir)
    if not lock.acquire():
        return {"job": name, "outcome": Outcome.BUSY}
    try:
        try:
            return _execute_locked(job_dir, cfg, progress, retry_failed)
        except Exception as exc:  # outside the job itself, e.g. a full disk writing running.json
            return {"job": name, "outcome": Outcome.FAILED_NOW, "error": f"{type(exc).__name__}: {exc}".strip(),
                    "epoch": None}
    finally:
        for transient in (RUNNING, PROGRESS, PROGRESS_JSON):
            with contextlib.suppress(OSError):
                (job_dir / transient).unlink(missing_ok=True)
        lock.release()


def _execute_locked(job_dir: Path, cfg, progress, retry_failed: bool) -> dict:
    from ltbench.engine.train import run_job

    name = job_dir.name
    remove_stale_temps(job_dir)  # left by a write that was killed; we hold the lock, no one else writes
    if (job_dir / RESULT).exists():
        if read_result(job_dir) is not None:
            return {"job": name, "outcome": Outcome.ALREADY_DONE}
        kept = quarantine(job_dir / RESULT)  # damaged: kept aside, the job runs again
        _log(job_dir, f"{now_iso()} {RESULT} is damaged: moved to {kept.name}; running the job again")
    if (job_dir / FAILED).exists():
        if not retry_failed:
            return {"job": name, "outcome": Outcome.FAILED_BEFORE, **read_failure(job_dir)}
        for stale in (FAILED, ERROR):
            (job_dir / stale).unlink(missing_ok=True)
    write_json(job_dir / RUNNING, {"host": socket.gethostname(), "pid": os.getpid(),
                                   "started": now_iso(), "slurm_job": _slurm_id()})
    from ltbench.runner.tensorboard import logger_for

    board = logger_for(name, progress)  # None unless `ltbench run --tensorboard`
    tracker = ProgressTracker(job_dir, board or progress)
    try:
        with redirect_output(job_dir / LOG):
            print(f"{now_iso()} start {name} on {socket.gethostname()} pid {os.getpid()}"
                  + (f" slurm {_slurm_id()}" if _slurm_id() else ""), flush=True)
            try:
                result = run_job(cfg, job_dir, tracker)
            except Exception as exc:  # the job failed; the runner goes on with the others
                return _record_failure(exc, job_dir, int(cfg.epochs))
            summary = _summary(result)
            with contextlib.suppress(OSError):
                print(f"{now_iso()} finished {name}: {summary}", flush=True)
    finally:
        if board is not None:
            board.close()
    return {"job": name, "outcome": Outcome.FINISHED}


def _record_failure(exc: BaseException, job_dir: Path, epochs: int) -> dict:
    """Write ``error.txt`` and ``failed.json``; when the disk refuses them, the outcome says so."""
    record = failure_record(exc, job_dir, epochs)
    outcome = {"job": job_dir.name, "outcome": Outcome.FAILED_NOW, "error": record["error"], "epoch": record["epoch"]}
    try:
        print(record["traceback"], end="", flush=True)
        print(f"{now_iso()} FAILED: {record['error']}", flush=True)
    except OSError:
        pass
    try:
        write_text(job_dir / ERROR, record["traceback"])
        write_json(job_dir / FAILED, record)
    except OSError as write_exc:
        outcome["error"] += f" (and the failure record could not be written: {write_exc})"
    return outcome


def _log(job_dir: Path, line: str) -> None:
    """Append one line to the job's log (best effort: the log is for people)."""
    try:
        with open(job_dir / LOG, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def read_failure(job_dir: Path) -> dict:
    """``{"error", "epoch"}`` from a job's ``failed.json`` (for one-line reports)."""
    record = read_json_object(Path(job_dir) / FAILED)
    if record is None:
        return {"error": "(unreadable failed.json)"}
    return {"error": record.get("error"), "epoch": record.get("epoch")}


def _summary(result: dict) -> str:
    parts = []
    for attack, rec in result.get("metrics", {}).items():
        if isinstance(rec, dict) and "overall" in rec:
            parts.append(f"{attack} {100 * rec['overall']:.1f}% (tail {100 * rec.get('tail', float('nan')):.1f}%)")
    return ", ".join(parts)
