"""TAET: Wang et al., "TAET: Two-Stage Adversarial Equalization Training on Long-Tailed
Distributions", CVPR 2025 (arXiv 2503.01924).

Two stages over the job's E epochs:

1. the first ⌊stage1·E⌉ epochs (stage1 = 0.4): plain cross-entropy on the clean images, with **no
   attack computed** (``attacks`` is False: each step costs a standard step);
2. the rest: PGD with cross-entropy from x + 0.001·N(0, I) (clipped to [0, 1] by default, see
   below), then the hierarchical adversarial
   robust loss (HARL) on the adversarial logits,

       L = α·mean_c(L_c) + β·var_c(L_c) + γ·Σ_c (L_c / Σ_k L_k)²,

   L_c the batch's mean cross-entropy over the samples of class c, var the population variance,
   α = β = γ = 0.1 (the authors' ``code/HARL.py``; Σ_k L_k + 1e-10 in the ratio, as there).

A class absent from the batch: ``absent = "zero"`` (the default) counts it as L_c = 0 in the mean,
the variance and the ratios, over all C classes, as the authors' code does (HARL.py and RobustLT's
core/methods/taet.py), so that results compare with theirs; ``absent = "present"`` takes the mean
and variance over the classes present in the batch only (the ratio term is the same either way: an
absent class adds 0 to it). RobustLT's configs give 40 cross-entropy epochs of 100 but compare
1-based epochs with ``<``, so they train 39; here stage 1 is round(0.4·E) = 40 epochs.
In stage 1 the engine's "adversarial" training accuracy and prediction histogram are those of
the clean images (there are no adversarial ones). HARL agrees with the authors' ``HARL.py`` to 1e-7
on the same batch.

Departures from the authors' code: the PGD random start is clipped to [0, 1] (ltbench's default, ``JobConfig.clip_start``); the authors' start is not (``--no-clip-start`` reproduces it); stage 1 is round(0.4·E) epochs
where RobustLT's configs train 39 of 100 (above).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.method import Method
from ltbench.losses import small_normal_start
from ltbench.registry import register_method

ABSENT = ("zero", "present")


@dataclass
class TAETConfig:
    """TAET (CVPR 2025): ``stage1`` = fraction of the epochs trained with clean cross-entropy (0.4);
    HARL weights ``alpha``, ``beta``, ``gamma`` (0.1 each); ``absent`` = how a class missing from
    the batch counts ("zero": L_c = 0 over all classes, as the authors' code; "present": statistics
    over the classes in the batch); ``start_std`` = σ of the Gaussian PGD start (0.001)."""

    stage1: float = 0.4
    alpha: float = 0.1
    beta: float = 0.1
    gamma: float = 0.1
    absent: str = "zero"
    start_std: float = 0.001


def harl_loss(logits_adv: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float, beta: float,
              gamma: float, absent: str = "zero") -> torch.Tensor:
    """HARL (TAET, Eq. of the hierarchical equalization loss) from per-class mean CE, vectorised:
    per-class sums with ``index_add_``, no loop over classes, no host sync."""
    ce = F.cross_entropy(logits_adv.float(), y, reduction="none")
    sums = ce.new_zeros(num_classes).index_add_(0, y, ce)
    counts = ce.new_zeros(num_classes).index_add_(0, y, torch.ones_like(ce))
    L = sums / (counts + 1e-10)  # the authors' 1e-10; 0 for an absent class
    if absent == "zero":
        mean = L.mean()
        var = (L - mean).pow(2).mean()
    else:
        present = (counts > 0).to(L.dtype)
        n = present.sum()
        mean = L.sum() / n
        var = ((L - mean).pow(2) * present).sum() / n
    ratio = L / (L.sum() + 1e-10)
    return alpha * mean + beta * var + gamma * ratio.pow(2).sum()


@register_method("taet")
class TAET(Method):
    """TAET (CVPR 2025): clean CE without attack for the first 40 % of epochs, then HARL on PGD examples."""

    Config = TAETConfig

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        if config.absent not in ABSENT:
            raise LtbenchError(f"taet.absent must be one of {', '.join(ABSENT)}, got {config.absent!r}")
        if not 0.0 <= config.stage1 <= 1.0:
            raise LtbenchError(f"taet.stage1 must be in [0, 1], got {config.stage1}")

    def stage1_epochs(self, epochs: int) -> int:
        return round(self.config.stage1 * epochs)

    def in_stage1(self, ctx) -> bool:
        """Python integers only; outside a job (``ctx.epochs`` None) the step is stage 2's."""
        return ctx.epochs is not None and ctx.epoch < self.stage1_epochs(ctx.epochs)

    def attacks(self, ctx):
        return not self.in_stage1(ctx)

    def attack_start(self, x, ctx):
        return small_normal_start(x, self.config.start_std)

    def train_loss(self, model, x, x_adv, y, ctx):
        if self.in_stage1(ctx):  # x_adv is x: one clean forward pass
            logits = model(x)
            return F.cross_entropy(logits.float(), y), logits
        c = self.config
        logits_adv = model(x_adv)
        return harl_loss(logits_adv, y, self.num_classes, c.alpha, c.beta, c.gamma, c.absent), logits_adv
