"""``ltbench status STUDY``: every job of a study as done / running / failed / pending.

*running* means some process holds the job's lock right now (this machine, or any machine
sharing the folder over a file system with working ``flock``); a job whose process was killed
shows as *pending* with "interrupted", and resumes on the next ``ltbench run``.

Exit status: 0 when no job has failed, 1 when at least one has (so ``ltbench status S && …``
stops on failures), 2 for bad input. ``--json`` prints one object whose per-job fields are
numbers (epochs done, accuracies as fractions, the running job's progress), not only the
one-line ``detail`` meant for people.
"""
from __future__ import annotations

import json
from pathlib import Path

from ltbench.study.job_state import DONE, FAILED, PENDING, RUNNING
from ltbench.study.study import Study
from ltbench import study_folder as sf

ORDER = (DONE, RUNNING, FAILED, PENDING)


def add_arguments(p):
    p.add_argument("study", nargs="?", help="a study folder (the --out of `ltbench run`)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--state", choices=ORDER, action="append", help="only jobs in this state (repeatable)")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def job_record(study: Study, status) -> dict:
    """One job for ``--json``: state, the human ``detail`` and the same facts as numbers.

    ``epochs_done`` / ``epochs``; for a done job ``metrics`` (attack → overall, tail, worst as
    fractions and ``n``, the number of test images); for a failed one ``error`` and
    ``failed_epoch``; for a running one ``progress`` (epoch, batch, loss, accuracy, images/s,
    ETA in seconds, when the job reports them) and ``host`` / ``pid``.
    """
    job_dir = study.job_dir(status.name)
    epochs = study.data.get("jobs", {}).get(status.name, {}).get("epochs")
    rec = {"job": status.name, "state": status.state, "detail": status.detail,
           "epochs": int(epochs) if isinstance(epochs, int) else None, "epochs_done": 0}
    rec["epochs_done"] = sf.epochs_done(job_dir)
    if status.state == DONE:
        result = sf.read_result(job_dir) or {}
        metrics = result.get("metrics") if isinstance(result, dict) else None
        rec["metrics"] = {a: {k: m.get(k) for k in ("overall", "tail", "worst", "n") if k in m}
                          for a, m in (metrics or {}).items() if isinstance(m, dict)}
        rec["warnings"] = len(result["warnings"]) if isinstance(result.get("warnings"), list) else 0
    elif status.state == FAILED:
        failure = _read_json(job_dir / sf.FAILED)
        if isinstance(failure, dict):
            rec["error"] = failure.get("error")
            rec["failed_epoch"] = failure.get("epoch")
    elif status.state == RUNNING:
        progress = _read_json(job_dir / sf.PROGRESS_JSON)
        if isinstance(progress, dict):
            rec["progress"] = {k: v for k, v in progress.items() if k != "text"}
        host = _read_json(job_dir / sf.RUNNING)
        if isinstance(host, dict):
            rec.update({k: host.get(k) for k in ("host", "pid", "slurm_job")})
    if getattr(status, "slurm", None):
        rec["slurm_job"] = status.slurm
    return rec


def how_to_call() -> str:
    """The one line ``ltbench status`` without a study prints: how to call it, and the studies it
    finds under ``results/`` here."""
    here = sorted(str(p.parent) for p in Path("results").glob(f"*/{sf.STUDY}"))
    found = f"; studies under results/: {', '.join(here)}" if here else ""
    return f"give a study folder (the --out of `ltbench run`), e.g. `ltbench status results/demo`{found}"


def main(args) -> int:
    from ltbench.errors import LtbenchError
    from ltbench.runner.slurm import queued_in_slurm

    if not args.study:
        raise LtbenchError(how_to_call())
    study = Study.open(args.study)
    statuses = study.statuses()
    queued = queued_in_slurm([study.job_dir(s.name) for s in statuses if s.state in (PENDING, FAILED)])
    for s in statuses:
        if s.name in queued:
            s.detail = f"queued in Slurm as {queued[s.name]}" + (f"; {s.detail}" if s.detail else "")
            s.slurm = queued[s.name]
    rows = [s for s in statuses if not args.state or s.state in args.state]
    counts = {state: sum(s.state == state for s in statuses) for state in ORDER}
    code = 1 if counts[FAILED] else 0
    if args.json:
        print(json.dumps({"study": str(study.root), "counts": counts, "total": len(statuses),
                          "jobs": [job_record(study, s) for s in rows]}, indent=2))
        return code
    width = max([len(s.name) for s in rows] + [3])
    for s in rows:
        print(f"{s.name:<{width}}  {s.state:<8} {s.detail}".rstrip())
    total = sum(counts.values())
    print(f"{study.root}: {total} jobs — " + ", ".join(f"{counts[k]} {k}" for k in ORDER))
    print(sf.warnings_line([sf.read_result(study.job_dir(s.name)) for s in statuses if s.state == DONE], study.root))
    if counts[FAILED]:
        print(f"{counts[FAILED]} failed: `ltbench run … --retry-failed` reruns them; each job's error.txt has "
              f"the traceback")
    return code
