"""The local executor: a pool of worker processes on this machine, one per GPU or N on the CPU.

Each worker is a separate (spawned) process bound to one *slot*: a GPU (``CUDA_VISIBLE_DEVICES``
set to that one device before the worker imports torch, so the job's ``auto`` device is that GPU)
or a share of the CPU cores (``torch.set_num_threads``). The main process keeps the job queue,
hands the next job to whichever worker is free, and turns the workers' progress messages into the
terminal display. A worker that dies (SIGKILL, out of memory) is replaced; its job stays
resumable from its last checkpoint and is reported as interrupted.
"""
from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import connection
from pathlib import Path
from typing import Optional

from ltbench.runner import job as J
from ltbench.runner.display import Display
from ltbench import study_folder as sf

INTERRUPTED = sf.Outcome.INTERRUPTED


@dataclass
class Slot:
    """Where one worker runs: a name for the display, environment overrides, CPU threads."""

    name: str
    env: dict = field(default_factory=dict)
    threads: Optional[int] = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_slots(n: int) -> list[Slot]:
    """``n`` CPU workers sharing this machine's cores evenly."""
    threads = max(1, available_cores() // n)
    return [Slot(f"cpu{i}", {"CUDA_VISIBLE_DEVICES": ""}, threads) for i in range(n)]


def gpu_slots(ids: list[int], per_gpu: int = 1) -> list[Slot]:
    """``per_gpu`` workers per GPU id (ids as torch numbers them under the current
    CUDA_VISIBLE_DEVICES); the CPU cores are shared evenly among all of them. Several workers on
    one GPU run their jobs side by side: a small model leaves most of a GPU idle, since each step
    is bound by the CPU launching its kernels."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [v.strip() for v in visible.split(",")] if visible else None
    threads = max(1, available_cores() // max(1, len(ids) * per_gpu))
    return [Slot(_slot_name(f"gpu{i}", k, per_gpu), {"CUDA_VISIBLE_DEVICES": names[i] if names else str(i)}, threads)
            for i in ids for k in range(per_gpu)]


def pinned_slots(device: str, per_gpu: int = 1) -> list[Slot]:
    """``per_gpu`` workers on the one device a job config pins (``cuda:1``)."""
    return [Slot(_slot_name(device, k, per_gpu)) for k in range(per_gpu)]


def _slot_name(base: str, k: int, per_gpu: int) -> str:
    return base if per_gpu == 1 else f"{base}.{k}"


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the runner dies (no orphaned training processes)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _worker_main(conn, threads: Optional[int], methods_dirs: list[str]) -> None:
    """A worker's loop: receive a job, run it, report the outcome; stop on None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what Ctrl-C does
    _die_with_parent()
    import torch

    from ltbench.config import JobConfig
    from ltbench.plugins import load_all

    if threads:
        torch.set_num_threads(threads)
    load_all(methods_dirs)

    def send(msg) -> None:
        try:
            conn.send(msg)
        except (BrokenPipeError, EOFError, OSError):
            os._exit(1)  # the runner is gone: stop; the job resumes from its checkpoint next time

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        job_dir, cfg_dict, retry = task
        cfg = JobConfig.from_dict(cfg_dict)
        outcome = J.execute_job(Path(job_dir), cfg, progress=lambda m: send(("progress", m)),
                                retry_failed=retry)
        send(("done", outcome))
        if outcome["outcome"] == sf.Outcome.FAILED_NOW:
            return  # a fresh worker takes the next job (no GPU memory or state left from the failure)


@dataclass
class _Worker:
    slot: Slot
    process: object
    conn: object
    job: Optional[str] = None
    retiring: bool = False  # exits after its job failed (see _worker_main)


class LocalExecutor:
    """Runs a list of jobs of a study on local worker processes (see the module docstring)."""

    def __init__(self, slots: list[Slot], methods_dirs=(), retry_failed: bool = False):
        if not slots:
            raise ValueError("no worker slots")
        self.slots = slots
        self.methods_dirs = [str(Path(d).resolve()) for d in methods_dirs]
        self.retry_failed = retry_failed

    def _start(self, ctx, slot: Slot) -> _Worker:
        parent_conn, child_conn = ctx.Pipe()
        with _environ(slot.env):  # a spawned child takes its environment at start
            p = ctx.Process(target=_worker_main, args=(child_conn, slot.threads, self.methods_dirs),
                            name=f"ltbench-{slot.name}", daemon=True)
            p.start()
        child_conn.close()
        return _Worker(slot, p, parent_conn)

    def run(self, study, names: list[str], display: Display) -> dict[str, dict]:
        """Run ``names`` (jobs of ``study``); returns each job's outcome by name."""
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        queue = deque(names)
        before = study.prerequisites(names)
        outcomes: dict[str, dict] = {}
        workers: list[Optional[_Worker]] = [None] * min(len(self.slots), len(names))
        try:
            while queue or any(w is not None and w.job for w in workers):
                for i, w in enumerate(workers):
                    if queue and (w is None or w.job is None):
                        name = _take_ready(queue, before, outcomes, display)
                        if name is None:
                            continue
                        if w is not None and (w.retiring or not w.process.is_alive()):
                            w.process.join(timeout=30)  # it exits by itself after a failed job
                            if w.process.is_alive():
                                w.process.kill()
                                w.process.join()
                            w.conn.close()
                            w = None
                        if w is None:
                            w = workers[i] = self._start(ctx, self.slots[i])
                        w.conn.send((str(study.job_dir(name)), study.data["jobs"][name], self.retry_failed))
                        w.job = name
                        display.started(w.slot.name, name)
                busy = [w for w in workers if w is not None and w.job]
                ready = connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
                for w in busy:
                    if w.conn in ready or w.process.sentinel in ready:
                        self._drain(w, outcomes, display)
                    if w.job and not w.process.is_alive():
                        self._drain(w, outcomes, display)
                    if w.job and not w.process.is_alive():  # died mid-job
                        code = w.process.exitcode
                        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                        outcome = {"job": w.job, "outcome": INTERRUPTED,
                                   "error": f"worker process ended ({why})"}
                        outcomes[w.job] = outcome
                        display.ended(w.slot.name, w.job, outcome)
                        w.job = None
                        w.process.join()
                        w.conn.close()
                        workers[workers.index(w)] = None
        finally:
            self._stop(workers)
        return outcomes

    @staticmethod
    def _drain(w: _Worker, outcomes: dict, display: Display) -> None:
        try:
            while w.conn.poll():
                kind, payload = w.conn.recv()
                if kind == "progress" and w.job:
                    display.progress(w.slot.name, w.job, payload)
                elif kind == "done":
                    outcomes[payload["job"]] = payload
                    display.ended(w.slot.name, payload["job"], payload)
                    w.job = None
                    w.retiring = payload["outcome"] == sf.Outcome.FAILED_NOW
        except (EOFError, OSError):
            pass

    @staticmethod
    def _stop(workers: list) -> None:
        for w in workers:
            if w is None:
                continue
            with contextlib.suppress(OSError, BrokenPipeError):
                w.conn.send(None)
        for w in workers:
            if w is None:
                continue
            w.process.join(timeout=2 if w.job is None else 0.1)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()


def _take_ready(queue: deque, before: dict[str, str], outcomes: dict[str, dict], display: Display) -> Optional[str]:
    """Remove and return the first queued job that may start now: one that starts from no job of
    this run, or from one that has finished. A job whose first job ended otherwise (failed,
    interrupted) is taken off the queue as interrupted (it runs when the command is re-run); None
    while every queued job waits for a running one."""
    for name in list(queue):
        first = before.get(name)
        ended = outcomes.get(first) if first else None
        if first is None or (ended is not None and ended["outcome"] in _SUCCEEDED):
            queue.remove(name)
            return name
        if ended is not None:
            queue.remove(name)
            outcome = outcomes[name] = {"job": name, "outcome": INTERRUPTED,
                                        "error": f"not started: it starts from {first}, which did not finish"}
            display.ended("-", name, outcome)
    return None


_SUCCEEDED = (sf.Outcome.FINISHED, sf.Outcome.ALREADY_DONE)


@contextlib.contextmanager
def _environ(overrides: dict):
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
