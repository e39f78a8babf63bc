"""The Slurm executor against a real Slurm (one node, started by ``scripts/ci/slurm.sh`` as root).

Without Slurm on the machine (no ``sinfo``, or no idle node) the live tests are skipped — unless
``LTBENCH_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where they fail instead.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from ltbench.errors import LtbenchError
from ltbench.runner.slurm import parse_time
from runner_helpers import TINY_ARGS, ltbench, write_plugin, write_tiny_fmnist


def slurm_missing() -> str | None:
    """Why Slurm cannot run a test job here, or None when a node is idle."""
    for tool in ("sinfo", "sbatch", "squeue"):
        if shutil.which(tool) is None:
            return f"Slurm's `{tool}` is not installed (run scripts/ci/slurm.sh as root)"
    try:
        out = subprocess.run(["sinfo", "-h", "-t", "idle,mix", "-o", "%n"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()[:200]}"
    if not out.stdout.strip():
        return "no idle Slurm node (run scripts/ci/slurm.sh as root)"
    return None


@pytest.fixture
def slurm():
    reason = slurm_missing()
    if reason:
        if os.environ.get("LTBENCH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"LTBENCH_REQUIRE_SERVICES=1 but Slurm is not usable: {reason}")
        pytest.skip(reason)


@pytest.fixture
def tiny(tmp_path):
    data = write_tiny_fmnist(tmp_path / "data")
    return tmp_path, {"LTBENCH_DATA": str(data)}, write_plugin(tmp_path / "plugins")


SLURM_ARGS = ["--executor", "slurm", "--gpus-per-job", "0", "--cpus-per-job", "1", "--time", "10"]


def test_two_job_study_through_slurm(slurm, tiny):
    tmp, env, _ = tiny
    out = tmp / "study"
    p = ltbench("run", "--out", str(out), *TINY_ARGS, "--seeds", "0", "1", "--epochs", "2", *SLURM_ARGS,
                env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "submitted Slurm array" in p.stderr
    for seed in (0, 1):
        d = out / f"pgd-at__fmnist__r0.2__s{seed}"
        result = json.loads((d / "result.json").read_text())
        assert result["config"]["seed"] == seed
        assert set(result["metrics"]) >= {"clean", "pgd2"}
        assert " slurm " in (d / "log.txt").read_text()  # ran inside a Slurm task
    assert list((out / "slurm").glob("*_submission.sh")) or list((out / "slurm").glob("*.sh"))

    # Re-running submits nothing: both jobs are done.
    p = ltbench("run", "--out", str(out), *TINY_ARGS, "--seeds", "0", "1", "--epochs", "2", *SLURM_ARGS,
                env=env, timeout=120)
    assert p.returncode == 0 and "submitted" not in p.stderr and "2 already done" in p.stderr


def test_a_job_that_starts_from_another_goes_in_a_later_array(slurm, tiny):
    """trades fine-tunes pgd-at (init_from): two arrays, the second after the first has ended."""
    tmp, env, _ = tiny
    out = tmp / "study"
    (tmp / "grid.toml").write_text(
        'methods = ["trades", "pgd-at"]\nepochs = 1\n'
        f'[per_method]\n"trades" = {{init_from = "{out}/pgd-at__{{dataset}}__r{{ratio:g}}__s{{seed}}", lr = 0.01}}\n')
    p = ltbench("run", "--config", str(tmp / "grid.toml"), "--out", str(out), *TINY_ARGS, "--seeds", "0", *SLURM_ARGS,
                env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "submitted Slurm arrays" in p.stderr and "each array after the one before it" in p.stderr
    first, then = out / "pgd-at__fmnist__r0.2__s0", out / "trades__fmnist__r0.2__s0"
    assert json.loads((then / "result.json").read_text())["config"]["init_from"] == str(first)
    assert (then / "log.txt").stat().st_mtime >= (first / "result.json").stat().st_mtime


def test_failed_job_no_wait_and_status(slurm, tiny):
    tmp, env, plugins = tiny
    out = tmp / "study"
    p = ltbench("run", "--out", str(out), *TINY_ARGS, "--methods", "nan-at", "--methods-dir", str(plugins),
                "--epochs", "2", *SLURM_ARGS, "--no-wait", env=env, timeout=120)
    assert p.returncode == 0 and "--no-wait" in p.stderr, p.stdout + p.stderr
    # Re-running while the task is queued or running submits nothing new.
    again = ltbench("run", "--out", str(out), *TINY_ARGS, "--methods", "nan-at", "--methods-dir", str(plugins),
                    "--epochs", "2", *SLURM_ARGS, "--no-wait", env=env, timeout=120)
    assert "submitted" not in again.stderr, again.stderr
    deadline = time.monotonic() + 240
    while True:
        status = json.loads(ltbench("status", str(out), "--json", env=env).stdout)
        state = status["jobs"][0]["state"]
        if state == "failed" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert state == "failed", status
    assert "TrainingDiverged" in status["jobs"][0]["detail"] and "epoch 2" in status["jobs"][0]["detail"]
    rec = json.loads((out / "nan-at__fmnist__r0.2__s0" / "failed.json").read_text())
    assert rec["slurm_job"] and rec["epoch"] == 2


@pytest.mark.parametrize("text,minutes", [("10", 10), ("90", 90), ("1:30", 2), ("12:00:00", 720),
                                          ("1-00", 1440), ("2-03:04:05", 2 * 1440 + 3 * 60 + 5)])
def test_parse_time(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["", "soon", "0", "1:2:3:4"])
def test_parse_time_rejects(text):
    with pytest.raises(LtbenchError):
        parse_time(text)
