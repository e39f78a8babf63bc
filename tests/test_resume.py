"""Resume: a job killed with SIGKILL mid-training ends, on re-run, bit-for-bit like an uninterrupted one.

Both runs go through the real ``ltbench run`` (same worker process setup, same thread count) on
the CPU; the killed process is the job's worker, found through ``running.json``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ltbench.engine.checkpoint import load_checkpoint
from ltbench.io import save_torch
from runner_helpers import ROOT, TINY_ARGS, ltbench, result_core, write_plugin, write_tiny_fmnist

EPOCHS = 4
JOB = "slow-at__fmnist__r0.2__s0"


@pytest.fixture
def setup(tmp_path):
    data = write_tiny_fmnist(tmp_path / "data")
    plugins = write_plugin(tmp_path / "plugins")
    env = {"LTBENCH_DATA": str(data)}
    # slow-at = PGD-AT plus a pause after each epoch: time to kill the job between checkpoints.
    args = [*TINY_ARGS, "--methods", "slow-at", "--methods-dir", str(plugins), "--set", "slow-at.pause=0.6",
            "--epochs", str(EPOCHS), "--device", "cpu"]
    return tmp_path, env, args


def test_sigkill_then_rerun_matches_uninterrupted_run(setup):
    tmp, env, args = setup
    reference, killed = tmp / "reference", tmp / "killed"

    p = ltbench("run", "--out", str(reference), *args, env=env)
    assert p.returncode == 0, p.stdout + p.stderr

    runner = subprocess.Popen([sys.executable, "-m", "ltbench", "run", "--out", str(killed), *args], cwd=ROOT,
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job = killed / JOB
    deadline = time.monotonic() + 120
    while not (job / "metrics.jsonl").exists():  # the first epoch's log line, written after its checkpoint
        assert runner.poll() is None and time.monotonic() < deadline, "job ended before it could be killed"
        time.sleep(0.02)
    pid = json.loads((job / "running.json").read_text())["pid"]
    assert pid != runner.pid  # the job runs in a worker process
    os.kill(pid, signal.SIGKILL)
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 1, out
    assert "INTERRUPTED" in out

    epochs_done = len((job / "metrics.jsonl").read_text().splitlines())
    assert 1 <= epochs_done < EPOCHS  # killed mid-training
    assert not (job / "result.json").exists() and not (job / "failed.json").exists()
    assert load_checkpoint(job / "checkpoint.pt")["epoch"] == epochs_done

    status = ltbench("status", str(killed), env=env)
    assert status.returncode == 0 and "pending" in status.stdout and "interrupted" in status.stdout

    p = ltbench("run", "--out", str(killed), *args, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    log = (job / "log.txt").read_text()
    assert log.count(" start ") == 2 and f"epoch {epochs_done + 1}/{EPOCHS}" in log.split(" start ")[-1]
    assert f"epoch 1/{EPOCHS}" not in log.split(" start ")[-1]  # resumed, not restarted

    a, b = result_core(reference / JOB), result_core(killed / JOB)
    assert len(b["epochs"]) == EPOCHS
    assert a == b  # metrics, per-epoch losses and histograms: bit-for-bit
    # The job's training time counts the epochs of both runs; this run's alone is train_s.
    timing = json.loads((job / "result.json").read_text())["timing"]
    assert timing["resumed_at_epoch"] == epochs_done
    assert timing["epochs_s"] == sum(r["time_s"] for r in epoch_lines(job)) > 0
    assert json.loads((reference / JOB / "result.json").read_text())["timing"]["resumed_at_epoch"] == 0


def test_sigterm_stops_the_runner_like_ctrl_c(setup):
    """``kill PID`` on a runner (how one stops a background runner, which ignores SIGINT) stops its
    workers, says how to resume, exits 143, and the job resumes where it stopped."""
    tmp, env, args = setup
    out = tmp / "terminated"
    runner = subprocess.Popen([sys.executable, "-m", "ltbench", "run", "--out", str(out), *args], cwd=ROOT,
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job = out / JOB
    deadline = time.monotonic() + 120
    while not (job / "metrics.jsonl").exists():
        assert runner.poll() is None and time.monotonic() < deadline, "job ended before the runner could be stopped"
        time.sleep(0.02)
    worker = json.loads((job / "running.json").read_text())["pid"]
    runner.send_signal(signal.SIGTERM)
    text, _ = runner.communicate(timeout=60)
    assert runner.returncode == 143, text
    assert "stopped; unfinished jobs resume from their last checkpoint" in text and "terminated" in text
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)  # the worker went with it
    stopped_after = len(epoch_lines(job))
    assert 1 <= stopped_after < EPOCHS and not (job / "failed.json").exists()

    p = ltbench("run", "--out", str(out), *args, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"epoch {stopped_after + 1}/{EPOCHS}" in (job / "log.txt").read_text().split(" start ")[-1]
    assert json.loads((job / "result.json").read_text())["timing"]["resumed_at_epoch"] == stopped_after


def epoch_lines(job):
    return [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_checkpoints_load_weights_only(tmp_path):
    """A checkpoint holding an arbitrary pickled object is refused, not executed."""
    path = tmp_path / "checkpoint.pt"
    save_torch(path, {"epoch": 1, "model": {"w": torch.ones(2)}})
    assert load_checkpoint(path)["epoch"] == 1
    save_torch(path, {"epoch": 1, "evil": subprocess.Popen})
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|unsupported"):
        load_checkpoint(path)
