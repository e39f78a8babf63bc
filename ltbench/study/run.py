"""One study run, the call behind ``ltbench run`` and :func:`ltbench.run`: :func:`run_study`.

Order of work, so that bad input leaves nothing behind: the spec (:func:`ltbench.study.grid.study_spec`)
→ build and validate every job (names, ratios, epochs, method parameters, attacks) → check the
output folder and that existing jobs in it have the same configuration → check the executor (GPUs,
Slurm; :func:`ltbench.runner.executors.make_executor`) — and only then create/extend the study
folder (:class:`ltbench.study.study.Study`) and run. Finished jobs are skipped, unfinished ones
resume from their last checkpoint, failed ones are reported (``--retry-failed`` reruns them).

Exit status: 0 when every job of the grid is done (or running in another runner), 1 when a job
failed or was interrupted, 2 for bad input, 130 when stopped with Ctrl-C and 143 with SIGTERM
(``kill PID``; both leave every unfinished job resumable).
"""
from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

from ltbench.config import JobConfig
from ltbench.errors import LtbenchError, Terminated
from ltbench import study_folder as sf


@contextlib.contextmanager
def sigterm_stops_like_ctrl_c():
    """While jobs run, ``kill PID`` (SIGTERM) stops the runner as Ctrl-C does: local workers are
    stopped, their jobs resume from the last checkpoint on the next run, and the runner says so. A
    runner started in the background (``cmd &`` from a script) ignores SIGINT, so SIGTERM is how
    one stops it. A second SIGTERM during that shutdown kills at once (the default action)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def redo_jobs(out: Path, jobs: list[JobConfig], patterns: list[str]) -> frozenset[str]:
    """The names of the jobs ``--redo`` starts afresh: those matching a glob; each glob must match a
    job of this run, and none of them may be running elsewhere."""
    from fnmatch import fnmatchcase

    from ltbench.study.job_state import RUNNING, job_status

    names = set()
    for pattern in patterns:
        matched = {cfg.job_name for cfg in jobs if fnmatchcase(cfg.job_name, pattern)}
        if not matched:
            raise LtbenchError(f"--redo {pattern!r} matches no job of this run (job folders look like "
                               f"{jobs[0].job_name})")
        names |= matched
    busy = sorted(n for n in names if job_status(out / n).state == RUNNING)
    if busy:
        raise LtbenchError(f"--redo: {busy[0]} is running elsewhere; stop it before starting it afresh")
    return frozenset(names)


def run_study(spec: dict, options, command: Optional[list[str]] = None) -> int:
    """Run the study ``spec`` describes (:func:`ltbench.study.grid.study_spec`); the exit status.

    ``options`` carries how to run it, with the attributes of ``ltbench run``'s options
    (an ``argparse.Namespace``; :func:`ltbench.run` builds one): ``methods_dir``, ``redo``,
    ``dry_run``, ``retry_failed``, ``quiet``, ``tensorboard``, ``executor`` and the executor's own
    (:func:`ltbench.runner.executors.make_executor`). ``command`` is recorded in ``study.json``.
    Bad input raises :class:`~ltbench.errors.LtbenchError` before anything is written."""
    from ltbench.runner import job as J
    from ltbench.runner.display import describe, make_display
    from ltbench.runner.executors import make_executor
    from ltbench.study.checks import check_data, check_init_sources, check_writable
    from ltbench.study.grid import build_jobs
    from ltbench.study.job_state import DONE, FAILED, RUNNING, job_status
    from ltbench.study.study import Study

    args = options
    args.methods_dir = [*spec.pop("methods_dir", []), *(getattr(args, "methods_dir", None) or [])]  # a config file's, then the flags'
    jobs = build_jobs(spec, args.methods_dir)
    out = Path(spec["out"])
    check_writable(out, tuple(cfg.job_name for cfg in jobs))
    redo = redo_jobs(out, jobs, getattr(args, "redo", None) or [])
    check_init_sources(out, jobs)
    Study.check_compatible(out, jobs, redo)
    if getattr(args, "dry_run", False):
        from ltbench.study import dryrun

        workers = (args.max_parallel or len(jobs)) if getattr(args, "executor", "local") == "slurm" \
            else len(make_executor(args, spec).slots)
        dryrun.report(out, jobs, workers, bool(getattr(args, "retry_failed", False)), redo=redo)
        return 0
    executor = make_executor(args, spec)
    for name in sorted(redo):  # after every check: nothing is deleted for a run that is refused
        shutil.rmtree(out / name, ignore_errors=True)
    if getattr(args, "executor", "local") == "local":  # Slurm: the data is checked where the jobs run
        to_run = [cfg for cfg in jobs if job_status(out / cfg.job_name).state not in (DONE, RUNNING)]
        check_data([cfg.dataset for cfg in to_run])

    if getattr(args, "tensorboard", False):
        from ltbench.runner import tensorboard

        tensorboard.enable(out)  # checked before anything is written: a missing package is one line
    study = Study.prepare(out, spec, jobs, command=command, afresh=redo)
    from ltbench.runner.slurm import queued_in_slurm

    outcomes: dict[str, dict] = {}
    queue = []
    queued = queued_in_slurm([study.job_dir(cfg.job_name) for cfg in jobs])
    for cfg in jobs:
        name = cfg.job_name
        state = study.status(name)
        if name in queued and state.state != DONE:  # an earlier --no-wait submission will run it
            outcomes[name] = {"job": name, "outcome": sf.Outcome.BUSY, "error": f"queued in Slurm as {queued[name]}"}
        elif state.state == DONE:
            outcomes[name] = {"job": name, "outcome": sf.Outcome.ALREADY_DONE}
        elif state.state == FAILED and not args.retry_failed:
            outcomes[name] = {"job": name, "outcome": sf.Outcome.FAILED_BEFORE, **J.read_failure(study.job_dir(name))}
        elif state.state == RUNNING:
            outcomes[name] = {"job": name, "outcome": sf.Outcome.BUSY}
        else:
            queue.append(name)

    # Seed by seed: a study stopped half-way covers every method with its first seeds.
    seed_of = {cfg.job_name: cfg.seed for cfg in jobs}
    queue.sort(key=lambda n: seed_of[n])
    quiet = bool(getattr(args, "quiet", False))
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    counts = [f"{n} {label}" for k, label in ((sf.Outcome.ALREADY_DONE, "already done"), (sf.Outcome.FAILED_BEFORE, "failed before"),
                                              (sf.Outcome.BUSY, "running elsewhere"))
              if (n := sum(o["outcome"] == k for o in outcomes.values()))]
    say(f"study {out} ({len(jobs)} job{'s' * (len(jobs) != 1)}): " + ", ".join([f"{len(queue)} to run", *counts]))
    for name, o in outcomes.items():
        if o["outcome"] in (sf.Outcome.FAILED_BEFORE, sf.Outcome.BUSY):
            say(f"  {name}: {describe(o)}")

    if queue:
        from ltbench.study.estimate import typical_job_seconds

        slots = [s.name for s in getattr(executor, "slots", [])][:len(queue)]
        parallel = len(slots) or min(len(queue), getattr(executor, "max_parallel", None) or len(queue))
        first_guess = None if quiet else typical_job_seconds(out, [cfg for cfg in jobs if cfg.job_name in queue])
        display = make_display(len(jobs), len(jobs) - len(queue), slots, quiet, parallel, first_guess)
        try:
            with sigterm_stops_like_ctrl_c():
                outcomes.update(executor.run(study, queue, display))
        except KeyboardInterrupt:
            display.close()
            if getattr(executor, "slots", None):  # local workers were stopped (Slurm tasks go on)
                say(f"stopped; unfinished jobs resume from their last checkpoint when you re-run the same "
                    f"command (`ltbench status {out}` lists them)")
            raise
        finally:
            display.close()
        if getattr(executor, "wait", True) is False:
            return 0

    return report(study, jobs, outcomes, quiet)


def report(study, jobs: list[JobConfig], outcomes: dict[str, dict], quiet: bool = False) -> int:
    """Print the results (per-class tables for a small study, else one line per job); exit status."""
    from ltbench.runner.display import describe
    from ltbench.study_folder import Outcome

    bad = [n for n, o in outcomes.items() if o["outcome"] in (Outcome.FAILED_NOW, Outcome.FAILED_BEFORE, Outcome.INTERRUPTED)]
    unfinished = [cfg.job_name for cfg in jobs if cfg.job_name not in outcomes]
    results = {}
    for cfg in jobs:
        result = sf.read_result(study.job_dir(cfg.job_name))  # None when missing or damaged
        if result is not None:
            results[cfg.job_name] = result
    if quiet:  # the results are left out, never a failure's one line
        for name in bad:
            print(f"{name}: {describe(outcomes[name])}", file=sys.stderr)
    else:
        from ltbench.study.summary import format_summary, next_command

        if len(jobs) <= 2:
            for name, result in results.items():
                print_result_table(name, result)
        if len(results) >= 2:
            print(format_summary(results))
        if bad:
            print(f"\n{len(bad)} job(s) did not finish:")
            for name in bad:
                where = study.job_dir(name) / (sf.ERROR if (study.job_dir(name) / sf.ERROR).exists() else sf.LOG)
                print(f"  {name}: {describe(outcomes[name])}\n    see {where}")
            if any(outcomes[n]["outcome"] in (sf.Outcome.FAILED_NOW, sf.Outcome.FAILED_BEFORE) for n in bad):
                print("  (--retry-failed reruns the failed ones; interrupted ones resume on any re-run)")
        busy = [n for n, o in outcomes.items() if o["outcome"] == sf.Outcome.BUSY and n not in results]
        if busy:
            print(f"\n{len(busy)} job(s) are running elsewhere; `ltbench status {study.root}` follows them")
        print(f"\nresults written to {study.root.resolve()}  ({len(results)}/{len(jobs)} jobs done)")
        if results:
            print(sf.warnings_line(results.values(), study.root))
            print(next_command(study.root))
    return 1 if bad or unfinished else 0


def print_result_table(name: str, result: dict) -> None:
    """Per-class accuracy under each evaluated attack, then the head/medium/tail summary."""
    metrics = result["metrics"]
    names = result["dataset"]["class_names"]
    counts = result["dataset"]["train_counts"]
    attacks = list(metrics)
    print(f"\n{name}")
    header = f"{'class':<16}{'train n':>8}" + "".join(f"{a:>9}" for a in attacks)
    print(header)
    print("-" * len(header))
    for c, cname in enumerate(names):
        row = f"{cname[:15]:<16}{counts[c]:>8}" + "".join(f"{100 * metrics[a]['per_class'][c]:>8.1f}%" for a in attacks)
        print(row)
    print("-" * len(header))
    for group in ("overall", "head", "medium", "tail", "worst"):
        print(f"{group:<16}{'':>8}" + "".join(f"{100 * metrics[a][group]:>8.1f}%" for a in attacks))
