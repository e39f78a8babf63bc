"""Rough time estimates for ``ltbench run --dry-run``: how long each job of a study will take.

A job's time is its training plus its evaluation. Training, the first source that applies:

1. **past jobs of the study** with the same method, dataset, model (and its parameters, e.g. the
   width), batch size and training attack steps: their mean seconds per epoch (``metrics.jsonl``
   ``time_s``) per training image × this job's training images × the epochs still to run;
2. **past jobs of the study with the same dataset, model and model parameters** (another method):
   the same, marked ``≈`` — the methods' costs differ by up to ~1.3× (``results/bench``);
3. **a rough default**, marked ``~``: the long-tailed training set's size ÷ the PGD-10
   adversarial-training throughput ``ltbench bench`` measured for the model at its default width
   (``results/bench``: 2-core CPU, H100), scaled to the number of attack steps, by the method's cost
   relative to PGD-AT measured there and by the model's width (:func:`width_factor`).

Evaluation: a past job's ``result.json`` ``timing.eval_s`` when its evaluation settings are this
job's (attacks, test images, AutoAttack subset, model); otherwise counted from the attacks' steps
(:func:`eval_passes`) at that throughput. Without a throughput for the model and device the
estimate is unknown (``?``). Reading only: nothing is written.
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
# Test images per class (the balanced test sets).
N_TEST = {"fmnist": 1000, "cifar10": 1000, "cifar100": 100, "tinyimagenet": 50}
# Input-gradient passes per image of an evaluation attack, at the same rate as the training attack's
# (measured on the committed fmnist-lt study: a PGD-20 step over all test images runs at the training
# PGD's passes per second, within 10 %). AutoAttack (standard): 90–140 × a PGD-20 image on its
# pgd-at and reat jobs, about 2400 passes; less on a model that few images resist.
AA_PASSES = 2400
# Cost of one pass against the model's default width: ∝ width^1.3 (small CNN on the 2-core CPU, batch
# 128, one thread, measured with the cores busy: widths 16, 32, 64 took 12, 28, 67 ms), and no less
# than at width 8 (0.23 of width 32; widths 4 and 8 took 6.4 and 6.5 ms: the per-batch overhead).
WIDTH_EXPONENT = 1.3
WIDTH_FLOOR = 0.23
# Seconds a job spends outside training and attacks (worker start, imports, loading the data, the
# environment record): 12 s measured on the 2-core CPU under a load of 2–3 (Fashion-MNIST); in the
# rough default only (a past job's epoch and evaluation times leave it out too).
JOB_START_S = 12.0
CHECK_SAMPLES = 1000  # images of the gradient-masking checks (ltbench.engine.evaluate.CHECK_SAMPLES)


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
        out.append({"config": cfg, "epoch_s": sum(times) / len(times), "eval_s": eval_s,
                    "images": _stored_images(d, cfg)})
    return out


def _device_kind(device: str) -> str:
    if device.startswith("cuda"):
        return "cuda"
    if device == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _stored_images(job_dir: Path, config: dict) -> Optional[int]:
    """Training images of a past job: its saved split's, else counted from its configuration."""
    import json

    try:
        counts = json.loads((job_dir / sf.SPLIT).read_text())["counts"]
        return int(sum(counts))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from ltbench.config import JobConfig
    from ltbench.errors import LtbenchError

    try:
        return train_images(JobConfig.from_dict(config))
    except (LtbenchError, TypeError, ValueError):  # another ltbench's configuration: no size, epoch time as it is
        return None


def _setting(config: dict, key: str):
    """A stored configuration's value for ``key``, the default where it was left out, lists as lists."""
    from ltbench.config import JobConfig

    value = config.get(key, getattr(JobConfig(), key))
    return list(value) if isinstance(value, (list, tuple)) else value


def _matches(p: dict, cfg, keys: tuple) -> bool:
    return all(_setting(p["config"], k) == _setting(cfg.to_dict(), k) for k in keys)


TRAIN_KEYS = ("dataset", "model", "model_params")  # what decides the cost of a training image, but the method
SAME_KEYS = (*TRAIN_KEYS, "method", "batch_size", "train_attack_steps")
EVAL_KEYS = ("dataset", "model", "model_params", "eval_attacks", "test_per_class", "aa_n_per_class")


def train_images(cfg) -> Optional[int]:
    """The long-tailed training set's size for ``cfg`` (``train_per_class`` counted)."""
    from ltbench.data.longtail import long_tail_counts

    if cfg.dataset not in N_MAX:
        return None
    n_max = N_MAX[cfg.dataset] if cfg.train_per_class is None else min(N_MAX[cfg.dataset], cfg.train_per_class)
    return sum(long_tail_counts(n_max, NUM_CLASSES[cfg.dataset], cfg.ratio, cfg.profile))


def width_factor(cfg) -> float:
    """Cost of a pass of ``cfg``'s model against the same model at its default width (1.0 for a model
    without a ``width`` parameter)."""
    import inspect

    from ltbench.errors import LtbenchError
    from ltbench.models import MODELS

    width = cfg.model_params.get("width")
    try:
        default = inspect.signature(MODELS.get(cfg.model)).parameters["width"].default
    except (KeyError, LtbenchError):  # no such model, or no width parameter
        return 1.0
    if not isinstance(width, (int, float)) or not isinstance(default, (int, float)) or width <= 0 or default <= 0:
        return 1.0
    return max(WIDTH_FLOOR, (width / default) ** WIDTH_EXPONENT)


def eval_passes(cfg) -> Optional[float]:
    """Input-gradient passes of ``cfg``'s evaluation: each attack's steps × its test images, plus
    the gradient-masking checks (FGSM, PGD at ε/2 and logit-scaled PGD on 1000 images)."""
    from ltbench.attacks.factory import parse_attack_name

    if cfg.dataset not in N_TEST:
        return None
    per_class = N_TEST[cfg.dataset] if cfg.test_per_class is None else min(N_TEST[cfg.dataset], cfg.test_per_class)
    n_classes = NUM_CLASSES[cfg.dataset]
    n_test = per_class * n_classes
    specs = [parse_attack_name(name) for name in cfg.eval_attacks]
    passes = 0.0
    for spec in specs:
        if spec.kind == "aa":
            n_aa = n_test if cfg.aa_n_per_class is None else min(per_class, cfg.aa_n_per_class) * n_classes
            passes += n_aa * AA_PASSES
        else:
            passes += n_test * (spec.steps or 1)  # clean and FGSM: one pass
    # The checks hold the first plain pgdK (else PGD-20) against FGSM, itself at ε/2 and logit-scaled PGD.
    main_steps = next((s.steps for s in specs if s.kind == "pgd" and s.eps is None), 20)
    checks = min(n_test, CHECK_SAMPLES) * (1 + main_steps + main_steps)
    return passes + checks


def estimate_job(cfg, past: list[dict], epochs_left: Optional[int] = None) -> Estimate:
    """Seconds ``cfg`` will take (see the module docstring); ``epochs_left``: default all."""
    left = cfg.epochs if epochs_left is None else epochs_left
    images = train_images(cfg)
    rate = BENCH_IMAGES_PER_S.get((cfg.model, _device_kind(str(cfg.device))))
    evals = [p["eval_s"] for p in past if _matches(p, cfg, EVAL_KEYS) and isinstance(p["eval_s"], (int, float))]
    if evals:
        eval_s = sum(evals) / len(evals)
    elif rate is not None and eval_passes(cfg) is not None:
        eval_s = eval_passes(cfg) / (11 * rate) * width_factor(cfg)  # PGD-10's 11 passes per image
    else:
        eval_s = None
    same = [p for p in past if _matches(p, cfg, SAME_KEYS)]
    similar = [p for p in past if _matches(p, cfg, TRAIN_KEYS)]
    for source, pool in (("study", same), ("similar", similar)):
        if pool:
            per_epoch = [p["epoch_s"] * (images / p["images"] if images and p["images"] else 1.0) for p in pool]
            epoch_s = sum(per_epoch) / len(per_epoch)
            return Estimate(epoch_s * left + (eval_s or 0.0), source)
    if rate is None or images is None:
        return Estimate(None, "unknown")
    per_image = (cfg.train_attack_steps + 1) / 11 / rate  # K input-gradient passes + one step, as PGD-10's 11
    per_image *= cost_factor(cfg.method)  # the method class's cost_factor (ltbench.method_roles)
    per_image *= width_factor(cfg)
    return Estimate(JOB_START_S + images * per_image * left + (eval_s or 0.0), "default")


def typical_job_seconds(root: Path, jobs: list) -> Optional[float]:
    """The mean estimate over ``jobs`` (those with one), for the study's ETA before any job has
    reported; None when no job has an estimate."""
    past = past_timings(root)
    known = [e.seconds for e in (estimate_job(cfg, past) for cfg in jobs) if e.seconds is not None]
    return sum(known) / len(known) if known else None
