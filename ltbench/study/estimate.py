"""Rough time estimates for ``ltbench run --dry-run``: how long each job of a study will take.

Per job, the first source that applies:

1. **past jobs of the study** with the same method, dataset, model, batch size and training attack
   steps: their mean seconds per epoch (``metrics.jsonl`` ``time_s``) × the epochs still to run,
   plus their evaluation time (``result.json`` ``timing.eval_s``);
2. **past jobs of the study with the same dataset and model** (another method): the same, marked
   ``≈`` — the methods' costs differ by up to ~1.3× (``results/bench``);
3. **a rough default**: the long-tailed training set's size ÷ the PGD-10 adversarial-training
   throughput ``ltbench bench`` measured for the model (``results/bench``: 2-core CPU, H100),
   scaled to the number of attack steps and by the method's cost relative to PGD-AT measured there;
   the evaluation is not included (marked ``~``).

Otherwise the estimate is unknown (``?``). Reading only: nothing is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ltbench import study_folder as sf
from ltbench.method_roles import cost_factor

# Images per second of one PGD-10 adversarial-training step, from results/bench (method PGD-AT).
BENCH_IMAGES_PER_S = {
    ("small-cnn", "cpu"): 680.0,   # cpu-2core-default.md (batch 128)
    ("resnet18", "cpu"): 7.8,      # cpu-2core-resnet18-b32.md (batch 32)
    ("small-cnn", "cuda"): 6700.0,  # h100-default.md
    ("resnet18", "cuda"): 1890.0,   # h100-resnet18-b128.md
}
# Training images per class before the long-tailed cut (the full training sets).
N_MAX = {"fmnist": 6000, "cifar10": 5000, "cifar100": 500, "tinyimagenet": 500}
NUM_CLASSES = {"fmnist": 10, "cifar10": 10, "cifar100": 100, "tinyimagenet": 200}


@dataclass
class Estimate:
    seconds: Optional[float]
    source: str  # "study" | "similar" | "default" | "unknown"

    @property
    def mark(self) -> str:
        return {"study": "", "similar": "≈", "default": "~"}.get(self.source, "")


def past_timings(root: Path) -> list[dict]:
    """For each job folder of the study with logged epochs: its config, mean epoch seconds and
    evaluation seconds (None when it has not been evaluated)."""
    out = []
    if not Path(root).is_dir():
        return out
    for d in sorted(Path(root).iterdir()):
        epochs = sf.read_metrics(d) if d.is_dir() else []
        times = [e["time_s"] for e in epochs if isinstance(e.get("time_s"), (int, float))]
        if not times:
            continue
        cfg = sf.read_config(d)
        if cfg is None:
            continue
        timing = (sf.read_result(d) or {}).get("timing")
        eval_s = timing.get("eval_s") if isinstance(timing, dict) else None
        out.append({"config": cfg, "epoch_s": sum(times) / len(times), "eval_s": eval_s})
    return out


def _device_kind(device: str) -> str:
    if device.startswith("cuda"):
        return "cuda"
    if device == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def estimate_job(cfg, past: list[dict], epochs_left: Optional[int] = None) -> Estimate:
    """Seconds ``cfg`` will take (see the module docstring); ``epochs_left``: default all."""
    left = cfg.epochs if epochs_left is None else epochs_left
    same = [p for p in past if all(p["config"].get(k) == getattr(cfg, k) for k in
                                   ("method", "dataset", "model", "batch_size", "train_attack_steps"))]
    similar = [p for p in past if all(p["config"].get(k) == getattr(cfg, k) for k in ("dataset", "model"))]
    for source, pool in (("study", same), ("similar", similar)):
        if pool:
            epoch_s = sum(p["epoch_s"] for p in pool) / len(pool)
            evals = [p["eval_s"] for p in pool if isinstance(p["eval_s"], (int, float))]
            return Estimate(epoch_s * left + (sum(evals) / len(evals) if evals else 0.0), source)
    rate = BENCH_IMAGES_PER_S.get((cfg.model, _device_kind(str(cfg.device))))
    if rate is None or cfg.dataset not in N_MAX:
        return Estimate(None, "unknown")
    from ltbench.data.longtail import long_tail_counts

    images = sum(long_tail_counts(N_MAX[cfg.dataset], NUM_CLASSES[cfg.dataset], cfg.ratio, cfg.profile))
    per_image = (cfg.train_attack_steps + 1) / 11 / rate  # K input-gradient passes + one step, as PGD-10's 11
    per_image *= cost_factor(cfg.method)  # the method class's cost_factor (ltbench.method_roles)
    return Estimate(images * per_image * left, "default")


def typical_job_seconds(root: Path, jobs: list) -> Optional[float]:
    """The mean estimate over ``jobs`` (those with one), for the study's ETA before any job has
    reported; None when no job has an estimate."""
    past = past_timings(root)
    known = [e.seconds for e in (estimate_job(cfg, past) for cfg in jobs) if e.seconds is not None]
    return sum(known) / len(known) if known else None
