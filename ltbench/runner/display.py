"""What the terminal shows while a study runs.

On a terminal: one live line per worker (its job's epoch, batch, running loss and AE accuracy,
images/s, ETA) under a bar of the study's overall progress with the study's ETA (tqdm). Elsewhere
(a log file, CI): plain lines — job started, finished, failed, each epoch's summary — plus, at most
once a minute, each busy worker's progress and the study's ETA. ``--quiet``: nothing.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

from ltbench.progress import fmt_duration, text
from ltbench.study_folder import Outcome

OUTCOME_TEXT = {
    Outcome.FINISHED: "finished",
    Outcome.ALREADY_DONE: "already done",
    Outcome.FAILED_NOW: "FAILED",
    Outcome.FAILED_BEFORE: "failed before (not rerun; --retry-failed reruns it)",
    Outcome.BUSY: "running elsewhere (another runner or Slurm), skipped",
    Outcome.INTERRUPTED: "INTERRUPTED (resumes on the next run)",
}


def describe(outcome: dict) -> str:
    """One line for a job's outcome."""
    text = OUTCOME_TEXT.get(outcome["outcome"], outcome["outcome"])
    if outcome.get("error"):
        text += f": {outcome['error']}"
        if outcome.get("epoch"):
            text += f" (epoch {outcome['epoch']})"
    return text


class StudyClock:
    """A rough ETA for the study: each running job's own estimate (elapsed / fraction of training
    done), pending jobs at the mean duration of the jobs finished so far (else of the running
    jobs' estimates, else ``per_job_s``: the dry run's estimate from past jobs or the bench
    figures), spread over the workers."""

    def __init__(self, total: int, done: int, workers: int, per_job_s: Optional[float] = None):
        self.total, self.count, self.workers = total, done, max(1, workers)
        self.per_job_s = per_job_s
        self.started: dict[str, float] = {}  # worker → when its job started
        self.fraction: dict[str, float] = {}  # worker → fraction of its job's training done
        self.durations: list[float] = []

    def start(self, worker: str) -> None:
        self.started[worker] = time.monotonic()
        self.fraction[worker] = 0.0

    def update(self, worker: str, msg) -> None:
        if isinstance(msg, dict) and isinstance(msg.get("done"), (int, float)):
            self.fraction[worker] = float(msg["done"])

    def end(self, worker: str, ran: bool) -> None:
        t = self.started.pop(worker, None)
        self.fraction.pop(worker, None)
        self.count += 1
        if ran and t is not None:
            self.durations.append(time.monotonic() - t)

    def eta_s(self) -> Optional[float]:
        now = time.monotonic()
        estimates = {w: (now - t) / self.fraction[w] for w, t in self.started.items() if self.fraction.get(w, 0) >= 0.02}
        per_job = (sum(self.durations) / len(self.durations) if self.durations else
                   sum(estimates.values()) / len(estimates) if estimates else self.per_job_s)
        if per_job is None:
            return None
        left = sum(max(0.0, estimates.get(w, per_job) - (now - t)) for w, t in self.started.items())
        pending = max(0, self.total - self.count - len(self.started))
        return (left + pending * per_job) / self.workers


class Display:
    """Plain line-per-event output (the base class; also used when stderr is not a terminal).

    Besides the started / finished lines: each job's end-of-epoch summary (loss, accuracy on the
    training AEs, lr, time, images/s) and, at most once every :attr:`PERIOD_S` seconds, each busy
    worker's latest progress and the study's ETA. Plain text only: no carriage returns or escapes.
    """

    PERIOD_S = 60.0

    def __init__(self, total: int, done: int = 0, stream=None, workers: int = 1, per_job_s: Optional[float] = None):
        self.stream = stream or sys.stderr
        self.total = total
        self.count = done
        self.lines: dict[str, str] = {}
        self.last_dump = time.monotonic()
        self.clock = StudyClock(total, done, workers, per_job_s)

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def study_line(self) -> str:
        return f"study: {self.count}/{self.total} jobs done, ETA {fmt_duration(self.clock.eta_s())}"

    def started(self, worker: str, job: str) -> None:
        self.lines[worker] = job
        self.clock.start(worker)
        self.write(f"[{worker}] {job}: started")

    def progress(self, worker: str, job: str, msg) -> None:
        self.lines[worker] = f"{job}: {text(msg)}"
        self.clock.update(worker, msg)
        if isinstance(msg, dict) and msg.get("kind") == "epoch":
            self.write(f"[{worker}] {job}: {text(msg)}")
        now = time.monotonic()
        if now - self.last_dump >= self.PERIOD_S:
            self.last_dump = now
            for w, line in sorted(self.lines.items()):
                self.write(f"[{w}] {line}")
            self.write(self.study_line())

    def ended(self, worker: str, job: str, outcome: dict) -> None:
        self.lines.pop(worker, None)
        self.count += 1
        self.clock.end(worker, outcome.get("outcome") == Outcome.FINISHED)
        self.write(f"[{self.count}/{self.total}] {job}: {describe(outcome)}")

    def close(self) -> None:
        pass


class QuietDisplay(Display):
    """Shows nothing."""

    def write(self, text: str) -> None:
        pass


class TtyDisplay(Display):
    """tqdm: the study's progress bar with its ETA, then one live line per worker (its job's epoch,
    batch, running loss and AE accuracy, images/s and ETA)."""

    def __init__(self, total: int, done: int = 0, workers: Optional[list[str]] = None, stream=None,
                 parallel: Optional[int] = None, per_job_s: Optional[float] = None):
        super().__init__(total, done, stream, parallel or len(workers or []) or 1, per_job_s)
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, initial=done, desc="study", unit="job", position=0, file=self.stream,
                        dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} jobs [{elapsed}{postfix}]")
        self.bar.set_postfix_str(f"ETA {fmt_duration(self.clock.eta_s())}", refresh=False)
        self.rows = {}
        for i, w in enumerate(workers or []):
            self.rows[w] = tqdm(total=0, position=i + 1, bar_format="{desc}", file=self.stream,
                                dynamic_ncols=True, leave=False)
            self.rows[w].set_description_str(f"{w}: idle")

    def write(self, text: str) -> None:
        self._tqdm.write(text, file=self.stream)

    def _row(self, worker: str, text: str) -> None:
        if worker not in self.rows:
            self.rows[worker] = self._tqdm(total=0, position=len(self.rows) + 1, bar_format="{desc}",
                                           file=self.stream, dynamic_ncols=True, leave=False)
        self.rows[worker].set_description_str(f"{worker}: {text}", refresh=True)

    def _eta(self) -> None:
        self.bar.set_postfix_str(f"ETA {fmt_duration(self.clock.eta_s())}", refresh=True)

    def started(self, worker: str, job: str) -> None:
        self.clock.start(worker)
        self._row(worker, f"{job} starting")

    def progress(self, worker: str, job: str, msg) -> None:
        self.clock.update(worker, msg)
        self._row(worker, f"{job} {text(msg)}")
        self._eta()

    def ended(self, worker: str, job: str, outcome: dict) -> None:
        self.count += 1
        self.clock.end(worker, outcome.get("outcome") == Outcome.FINISHED)
        self.write(f"{job}: {describe(outcome)}")
        self.bar.update(1)
        self._eta()
        self._row(worker, "idle")

    def close(self) -> None:
        for row in self.rows.values():
            row.close()
        self.bar.close()


def make_display(total: int, done: int, workers: list[str], quiet: bool = False, parallel: Optional[int] = None,
                 per_job_s: Optional[float] = None) -> Display:
    """The right display for this terminal; ``parallel``: jobs running at once (default: one per
    worker), ``per_job_s``: a first guess of a job's duration for the study's ETA."""
    if quiet:
        return QuietDisplay(total, done)
    if sys.stderr.isatty() and _columns() >= 40:
        return TtyDisplay(total, done, workers, parallel=parallel, per_job_s=per_job_s)
    return Display(total, done, workers=parallel or len(workers) or 1, per_job_s=per_job_s)


def _columns() -> int:
    """The terminal's width (0 for a pseudo-terminal without a size, where live bars can't draw)."""
    import os

    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0
