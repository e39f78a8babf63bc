"""Reproducibility guard for the committed reference study (``results/fmnist-lt``).

Re-runs the cheapest committed job from scratch (same config, the CPU, the thread count its
``result.json`` records) and requires the same long-tailed split and bit-identical metrics. A
change that moves a committed number fails here; such a change must say so in its commit and
re-run the affected jobs. Slow (one whole job, AutoAttack included): ``make test-all``.
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "results" / "fmnist-lt"


def _cost(job_dir: Path) -> float:
    """The job's training time over every epoch (``metrics.jsonl``: a resumed job's ``timing.train_s``
    counts only the epochs of its last process) plus its evaluation time."""
    from ltbench.study_folder import read_metrics, read_result

    timing = read_result(job_dir).get("timing") or {}
    return sum(float(e.get("time_s", 0)) for e in read_metrics(job_dir)) + float(timing.get("eval_s", 0))


def _rerunnable(job_dir: Path) -> bool:
    """A job that starts from another job's checkpoint (``init_from``, FRL) cannot re-run from a clone:
    checkpoints are not committed."""
    from ltbench.study_folder import read_result

    return not read_result(job_dir)["config"].get("init_from")


@pytest.mark.slow
def test_cheapest_committed_job_reproduces_exactly(tmp_path):
    import torch

    from ltbench.config import JobConfig
    from ltbench.data import get_dataset, load_raw
    from ltbench.engine.train import run_job
    from ltbench.errors import LtbenchError

    done = sorted(d for d in STUDY.glob("*__*") if (d / "result.json").is_file() and _rerunnable(d)) \
        if STUDY.is_dir() else []
    if not done:
        pytest.skip(f"no committed job in {STUDY}")
    try:
        load_raw(get_dataset("fmnist"))
    except LtbenchError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    job = min(done, key=_cost)
    committed = json.loads((job / "result.json").read_text())
    cfg = JobConfig.from_dict({**committed["config"], "device": "cpu"})
    threads = torch.get_num_threads()
    torch.set_num_threads(int(committed["env"]["threads"]))
    try:
        result = run_job(cfg, tmp_path / job.name)
    finally:
        torch.set_num_threads(threads)
    split = json.loads((tmp_path / job.name / "lt_indices.json").read_text())
    assert split["indices"] == json.loads((job / "lt_indices.json").read_text())["indices"]
    assert _numbers(json.loads(json.dumps(result["metrics"]))) == _numbers(committed["metrics"]), \
        f"{job.name} no longer reproduces"


def _numbers(metrics: dict) -> dict:
    """The metrics without the wall time each attack took (the one field that is not a result)."""
    return {attack: {k: v for k, v in record.items() if k != "seconds"} for attack, record in metrics.items()}
