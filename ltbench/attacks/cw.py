"""CW∞: L∞ PGD on the Carlini–Wagner margin loss (Carlini & Wagner, "Towards Evaluating the
Robustness of Neural Networks", IEEE S&P 2017, objective f₆: ``max_{j≠y} Z_j − Z_y``).

This is the "CW∞" of the adversarial-training literature (e.g. Zhang et al. 2019, TRADES; Wang et
al. 2020, MART): the margin loss does not saturate the way softmax cross-entropy does, so it still
has useful gradients on confidently classified points, and it is invariant to shifting all
logits by the same amount.

By name ``cwK`` (``cw20``), with the step rule of ``pgdK`` (:func:`ltbench.attacks.pgd.reaching_step`).
"""
from __future__ import annotations

from ltbench.attacks.base import cw_margin_loss
from ltbench.attacks.pgd import PGD
from ltbench.registry import register_attack


@register_attack("cw")
class CW(PGD):
    """K-step L∞ PGD on the CW margin (CW∞; Carlini & Wagner, S&P 2017, f₆), random start."""

    label = "CW"

    def __init__(self, eps: float, step: float, steps: int = 20, restarts: int = 1, random_start: bool = True):
        super().__init__(eps, step, steps=steps, restarts=restarts, loss_fn=cw_margin_loss,
                         random_start=random_start)
