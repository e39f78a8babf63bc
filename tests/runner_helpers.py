"""Shared by the runner tests: a tiny Fashion-MNIST in the real IDX format, and test-only methods.

The runner starts jobs in other processes (local workers, Slurm tasks), so test data must be
reachable from any process: the tiny dataset is written as the four IDX files the real ``fmnist``
loader reads from ``$LTBENCH_DATA/fashion-mnist``, and the test methods are a ``--methods-dir``
plugin folder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A tiny job: 28×28 images, width-4 CNN, PGD-2 in training and evaluation.
TINY_ARGS = ["--datasets", "fmnist", "--ratios", "0.2", "--model", "small-cnn", "--set", "model.width=4",
             "--batch-size", "32", "--train-attack-steps", "2", "--attacks", "clean", "pgd2"]


def write_tiny_fmnist(root: Path, per_class_train: int = 20, per_class_test: int = 6) -> Path:
    """``root/fashion-mnist/*.gz``: a tiny, learnable Fashion-MNIST (see ``tinydata``); returns root."""
    from tinydata import write_tiny_fmnist as write

    return write(Path(root), train_per_class=per_class_train, test_per_class=per_class_test)


PLUGIN = '''
"""Test-only methods for the runner tests."""
import os
import time
from dataclasses import dataclass

import torch

from ltbench.method import Method
from ltbench.registry import register_method


@register_method("slow-at")
class SlowAT(Method):
    """PGD-AT that pauses at the end of each epoch (numerically identical to pgd-at)."""

    @dataclass
    class Config:
        pause: float = 0.0

    def on_epoch_end(self, epoch, stats):
        time.sleep(self.config.pause)


@register_method("boom-at")
class BoomAT(Method):
    """Raises in the second epoch while the file named by $BOOM_FLAG exists."""

    def train_loss(self, model, x, x_adv, y, ctx):
        flag = os.environ.get("BOOM_FLAG")
        if ctx.epoch >= 1 and flag and os.path.exists(flag):
            raise RuntimeError("boom: test failure")
        return super().train_loss(model, x, x_adv, y, ctx)


@register_method("nan-at")
class NanAT(Method):
    """Its loss becomes NaN from the second epoch on."""

    def train_loss(self, model, x, x_adv, y, ctx):
        loss, logits = super().train_loss(model, x, x_adv, y, ctx)
        if ctx.epoch >= 1:
            loss = loss * float("nan")
        return loss, logits
'''


def write_plugin(folder: Path) -> Path:
    """A ``--methods-dir`` folder with slow-at, boom-at and nan-at."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runner_test_methods.py").write_text(PLUGIN)
    return folder


def ltbench(*args: str, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m ltbench ARGS`` in a subprocess; returns the completed process (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ltbench", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=kw.get("cwd", ROOT))


TIMING_KEYS = ("seconds", "time_s", "images_per_s", "train_s", "eval_s")


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def result_core(job_dir: Path) -> dict:
    """What must match between an interrupted and an uninterrupted run: metrics and losses (no timings)."""
    result = json.loads((job_dir / "result.json").read_text())
    lines = [json.loads(x) for x in (job_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return _without_timings({
        "metrics": result["metrics"],
        "config": result["config"],
        "train_counts": result["dataset"]["train_counts"],
        "epochs": lines,
    })
