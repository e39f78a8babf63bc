"""``ltbench status STUDY``: every job of a study as done / running / failed / pending.

*running* means some process holds the job's lock right now (this machine, or any machine
sharing the folder over a file system with working ``flock``); a job whose process was killed
shows as *pending* with "interrupted", and resumes on the next ``ltbench run``.
"""
from __future__ import annotations

import json

from ltbench.runner.study import DONE, FAILED, PENDING, RUNNING, Study

ORDER = (DONE, RUNNING, FAILED, PENDING)


def add_arguments(p):
    p.add_argument("study", help="a study folder (the --out of `ltbench run`)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--state", choices=ORDER, action="append", help="only jobs in this state (repeatable)")


def main(args) -> int:
    from ltbench.runner.slurm import queued_in_slurm

    study = Study.open(args.study)
    statuses = study.statuses()
    queued = queued_in_slurm([study.job_dir(s.name) for s in statuses if s.state in (PENDING, FAILED)])
    for s in statuses:
        if s.name in queued:
            s.detail = f"queued in Slurm as {queued[s.name]}" + (f"; {s.detail}" if s.detail else "")
    rows = [s for s in statuses if not args.state or s.state in args.state]
    counts = {state: sum(s.state == state for s in statuses) for state in ORDER}
    if args.json:
        print(json.dumps({"study": str(study.root), "counts": counts,
                          "jobs": [{"job": s.name, "state": s.state, "detail": s.detail} for s in rows]},
                         indent=2))
        return 0
    width = max([len(s.name) for s in rows] + [3])
    for s in rows:
        print(f"{s.name:<{width}}  {s.state:<8} {s.detail}".rstrip())
    total = sum(counts.values())
    print(f"{study.root}: {total} jobs — " + ", ".join(f"{counts[k]} {k}" for k in ORDER))
    return 0
