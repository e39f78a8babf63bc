"""What the terminal shows while a study runs.

On a terminal: one live line per worker (its job and progress) under a bar of the study's overall
progress (tqdm). Elsewhere (a log file, CI): one line per event — job started, finished, failed —
plus, at most once a minute, each busy worker's progress. ``--quiet``: nothing.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

from ltbench.runner import job as J

OUTCOME_TEXT = {
    J.FINISHED: "finished",
    J.ALREADY_DONE: "already done",
    J.FAILED_NOW: "FAILED",
    J.FAILED_BEFORE: "failed before (not rerun; --retry-failed reruns it)",
    J.BUSY: "running elsewhere (another runner or Slurm), skipped",
    "interrupted": "INTERRUPTED (resumes on the next run)",
}


def describe(outcome: dict) -> str:
    """One line for a job's outcome."""
    text = OUTCOME_TEXT.get(outcome["outcome"], outcome["outcome"])
    if outcome.get("error"):
        text += f": {outcome['error']}"
        if outcome.get("epoch"):
            text += f" (epoch {outcome['epoch']})"
    return text


class Display:
    """Plain line-per-event output (the base class; also used when stderr is not a terminal)."""

    PERIOD_S = 60.0

    def __init__(self, total: int, done: int = 0, stream=None):
        self.stream = stream or sys.stderr
        self.total = total
        self.count = done
        self.lines: dict[str, str] = {}
        self.last_dump = time.monotonic()

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def started(self, worker: str, job: str) -> None:
        self.lines[worker] = job
        self.write(f"[{worker}] {job}: started")

    def progress(self, worker: str, job: str, msg: str) -> None:
        self.lines[worker] = f"{job}: {msg}"
        now = time.monotonic()
        if now - self.last_dump >= self.PERIOD_S:
            self.last_dump = now
            for w, line in sorted(self.lines.items()):
                self.write(f"[{w}] {line}")

    def ended(self, worker: str, job: str, outcome: dict) -> None:
        self.lines.pop(worker, None)
        self.count += 1
        self.write(f"[{self.count}/{self.total}] {job}: {describe(outcome)}")

    def close(self) -> None:
        pass


class QuietDisplay(Display):
    """Shows nothing."""

    def write(self, text: str) -> None:
        pass


class TtyDisplay(Display):
    """tqdm: the study's progress bar, then one status line per worker."""

    def __init__(self, total: int, done: int = 0, workers: Optional[list[str]] = None, stream=None):
        super().__init__(total, done, stream)
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, initial=done, desc="study", unit="job", position=0, file=self.stream,
                        dynamic_ncols=True)
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

    def started(self, worker: str, job: str) -> None:
        self._row(worker, f"{job} starting")

    def progress(self, worker: str, job: str, msg: str) -> None:
        self._row(worker, f"{job} {msg}")

    def ended(self, worker: str, job: str, outcome: dict) -> None:
        self.count += 1
        self.write(f"{job}: {describe(outcome)}")
        self.bar.update(1)
        self._row(worker, "idle")

    def close(self) -> None:
        for row in self.rows.values():
            row.close()
        self.bar.close()


def make_display(total: int, done: int, workers: list[str], quiet: bool = False) -> Display:
    """The right display for this terminal."""
    if quiet:
        return QuietDisplay(total, done)
    if sys.stderr.isatty() and _columns() >= 40:
        return TtyDisplay(total, done, workers)
    return Display(total, done)


def _columns() -> int:
    """The terminal's width (0 for a pseudo-terminal without a size, where live bars can't draw)."""
    import os

    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0
