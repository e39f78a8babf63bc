"""``ltbench run --dry-run``: what a run would do, without doing or writing anything.

Lists every job of the grid with what would happen to it — run, resume from epoch k, or skip
(done, failed before, running elsewhere) — and its estimated time
(:mod:`ltbench.study.estimate`), then the totals: the sum over the jobs to run and the wall time
spread over the workers.
"""
from __future__ import annotations

from pathlib import Path

from ltbench.progress import fmt_duration
from ltbench import study_folder as sf


def plan(out: Path, jobs: list, retry_failed: bool = False, redo: frozenset = frozenset()) -> list[dict]:
    """One row per job: ``job``, ``action`` (run / resume / skip), ``why``, ``epochs_left``, ``estimate``;
    the jobs in ``redo`` (``--redo``) run afresh whatever their state."""
    from ltbench.study.estimate import estimate_job, past_timings
    from ltbench.study.job_state import DONE, FAILED, RUNNING, job_status

    past = past_timings(out)
    rows = []
    for cfg in jobs:
        job_dir = out / cfg.job_name
        state = job_status(job_dir, cfg.epochs)
        done_epochs = 0 if cfg.job_name in redo else sf.epochs_done(job_dir)
        row = {"job": cfg.job_name, "epochs_left": max(0, cfg.epochs - done_epochs), "estimate": None}
        if cfg.job_name in redo:
            row.update(action="run", why="afresh (--redo)")
        elif state.state == DONE:
            row.update(action="skip", why="done")
        elif state.state == RUNNING:
            row.update(action="skip", why="running elsewhere")
        elif state.state == FAILED and not retry_failed:
            row.update(action="skip", why="failed before (--retry-failed reruns it)")
        else:
            row.update(action="resume" if done_epochs else "run",
                       why="" if not done_epochs else f"from epoch {done_epochs + 1}" if done_epochs < cfg.epochs
                       else "(evaluation only)")
        if row["action"] != "skip":
            row["estimate"] = estimate_job(cfg, past, row["epochs_left"])
        rows.append(row)
    return rows



def report(out: Path, jobs: list, workers: int, retry_failed: bool = False, say=print,
           redo: frozenset = frozenset()) -> None:
    """Print the plan (see the module docstring); writes nothing."""
    rows = plan(out, jobs, retry_failed, redo)
    width = max(len(r["job"]) for r in rows)
    to_run = [r for r in rows if r["action"] != "skip"]
    say(f"dry run: study {out} ({len(rows)} jobs): {len(to_run)} to run, {len(rows) - len(to_run)} to skip; "
        f"nothing is written")
    for r in rows:
        est = r["estimate"]
        when = f"{est.mark}{fmt_duration(est.seconds)}" if est is not None else ""
        what = f"{r['action']} {r['why']}".strip()
        say(f"  {r['job']:<{width}}  {what:<44} {when}".rstrip())
    known = [r["estimate"].seconds for r in to_run if r["estimate"].seconds is not None]
    unknown = len(to_run) - len(known)
    if to_run:
        total = sum(known)
        say(f"estimated: {fmt_duration(total)} of job time"
            + (f" for {len(known)} of {len(to_run)} jobs ({unknown} without an estimate)" if unknown else "")
            + f", about {fmt_duration(total / max(1, min(workers, len(to_run))))} with {workers} worker"
            + ("s" if workers != 1 else ""))
        marks = {r["estimate"].source for r in to_run}
        if "similar" in marks:
            say("  ≈ from this study's jobs of another method with the same dataset and model")
        if "default" in marks:
            say("  ~ rough: from the PGD-10 throughput in results/bench for this model and device, scaled by the "
                "model's width, the attack steps and the evaluation's attacks and test images")
