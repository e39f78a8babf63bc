"""Logit-scaled PGD: PGD on cross-entropy of ``α · logits`` (α = 10).

The adaptive attack Yue et al. ("Revisiting Adversarial Training under Long-Tailed Distributions",
CVPR 2024) use against defences that rescale or shift logits (e.g. by class priors): a model whose
logits are small in scale has a soft softmax, and one whose logits are large saturates it; either
way plain cross-entropy gradients can be uninformative. Scaling the logits by α before the softmax
sharpens the loss without changing the arg-max, so a large gap between this attack and plain PGD
points to gradient masking by logit scale.

By name ``lsK`` (``ls20``), with the step rule of ``pgdK`` (:func:`ltbench.attacks.pgd.reaching_step`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ltbench.attacks.pgd import PGD
from ltbench.registry import register_attack


class ScaledCE:
    """Summed cross-entropy of ``alpha · logits`` (a picklable, named loss for :class:`PGD`)."""

    def __init__(self, alpha: float = 10.0):
        self.alpha = float(alpha)
        self.__name__ = f"ce_of_{self.alpha:g}x_logits"

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.alpha * logits.float(), y, reduction="sum")


@register_attack("ls")
class LogitScaledPGD(PGD):
    """K-step L∞ PGD on CE(10 · logits), the logit-scaled attack (Yue et al., CVPR 2024), random start."""

    label = "logit-scaled PGD"

    def __init__(self, eps: float, step: float, steps: int = 20, restarts: int = 1, alpha: float = 10.0,
                 random_start: bool = True):
        super().__init__(eps, step, steps=steps, restarts=restarts, loss_fn=ScaledCE(alpha),
                         random_start=random_start)
        self.alpha = float(alpha)

    def describe(self):
        return {**super().describe(), "alpha": self.alpha}
