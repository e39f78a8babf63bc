"""The per-epoch measurement on the validation split (ltbench/data/validation.py).

At the end of every epoch of a job that holds images out, :func:`measure` runs a cheap PGD (K =
``val_attack_steps`` iterations of step 2.5·ε/K on the summed cross-entropy, uniform start, the
job's ε, the model in eval mode) on the validation images and counts per class: clean and
adversarial accuracy, the mean clean and adversarial cross-entropy, the mean
KL(p(x) ‖ p(x')) (TRADES' boundary term) and the boundary error (clean correct, adversarial
wrong: Xu et al., ICML 2021, Sec. 3). All stay on the device (no host sync), in
:class:`ValidationStats`, which the engine hands to the method's ``on_epoch_end``
(``EpochStats.val``) and writes to ``metrics.jsonl``.

The random starts draw from a forked RNG seeded per job and epoch, so the measurement is the same
on resume and does not shift the training's random stream.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ltbench.attacks.base import attack_mode, autocast_for
from ltbench.attacks.pgd import pgd_perturb
from ltbench.losses import kl_rows

SEED_OFFSET = 7_919  # the validation attack's seed: job seed · 100 003 + SEED_OFFSET + epoch


@dataclass
class ValidationStats:
    """Per-class validation measurements, (C,) tensors on the training device; classes with no
    validation image have 0 everywhere (and ``counts`` 0)."""

    counts: torch.Tensor  # images per class
    clean_acc: torch.Tensor
    adv_acc: torch.Tensor
    clean_loss: torch.Tensor  # mean CE(f(x), y)
    adv_loss: torch.Tensor  # mean CE(f(x'), y)
    kl: torch.Tensor  # mean KL(softmax f(x) ‖ softmax f(x'))
    boundary_err: torch.Tensor  # share with f(x) right and f(x') wrong

    def record(self) -> dict:
        """The per-class lists for ``metrics.jsonl`` (one host read)."""
        return {f.name: getattr(self, f.name).tolist() for f in fields(self) if f.name != "counts"}


def attack_step(eps: float, steps: int) -> float:
    """2.5·ε/K: K steps can cross the ε-ball (Madry et al. 2018); ε = 8/255, K = 10 gives 2/255."""
    return 2.5 * eps / steps


def measure(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, num_classes: int, *, eps: float, steps: int,
            batch_size: int, seed: int) -> ValidationStats:
    """Measure ``model`` on the validation images ``x_u8`` (uint8, on the training device) and labels ``y``."""
    dev = x_u8.device
    sums = torch.zeros(6, num_classes, device=dev)  # clean ok, adv ok, clean CE, adv CE, KL, boundary
    counts = torch.zeros(num_classes, device=dev)
    step = attack_step(eps, steps)
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), attack_mode(model):
        torch.manual_seed(seed)
        for i in range(0, len(y), batch_size):
            x = x_u8[i:i + batch_size].float().div_(255).contiguous(memory_format=torch.channels_last)
            yb = y[i:i + batch_size]
            x_adv = pgd_perturb(model, x, yb, eps=eps, step=step, steps=steps)
            with torch.no_grad(), autocast_for(dev):
                logits, logits_adv = model(x).float(), model(x_adv).float()
            ok, ok_adv = logits.argmax(1) == yb, logits_adv.argmax(1) == yb
            rows = torch.stack([ok.float(), ok_adv.float(), F.cross_entropy(logits, yb, reduction="none"),
                                F.cross_entropy(logits_adv, yb, reduction="none"), kl_rows(logits, logits_adv),
                                (ok & ~ok_adv).float()])
            sums.index_add_(1, yb, rows)
            counts.index_add_(0, yb, torch.ones_like(yb, dtype=counts.dtype))
    mean = sums / counts.clamp_min(1.0)
    return ValidationStats(counts, *mean.unbind(0))


def _classes(method: str, modifiers: dict) -> list:
    from ltbench.plugins import load_methods
    from ltbench.registry import METHODS, MODIFIERS

    load_methods()
    return [METHODS.get(method), *(MODIFIERS.get(m) for m in modifiers or {})]


def default_n_per_class(method: str, modifiers: dict) -> int:
    """The images per class a job holds out when it leaves ``val_n_per_class`` unset: the largest
    of its method's and modifiers' ``val_n_per_class`` class attributes (0 for most)."""
    return max(int(getattr(cls, "val_n_per_class", 0)) for cls in _classes(method, modifiers))


def before_training(method: str, modifiers: dict) -> bool:
    """Whether the method or a modifier asks for a measurement before the first epoch."""
    return any(getattr(cls, "val_before_training", False) for cls in _classes(method, modifiers))
