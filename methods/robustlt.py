"""RobustLT: Zhang et al., "Taming the Long Tail: Rebalancing Adversarial Training via Adaptive
Perturbation", CVPR 2026 (zhang-lilin/RobustLT).

A modifier (``'reat +robustlt'``, ``'pgd-at +robustlt'`` …): the training attack of class c gets its
own budget

    ε_c = (1 − α)·ε + τ·sqrt(log(n_max / n_c))·ε,   τ = α / Σ_c π_c·sqrt(log(n_max / n_c)),

with n_c the training count of class c, n_max the largest and π = n / Σ n the training prior, so
that the prior-weighted mean budget Σ_c π_c·ε_c is ε: the head class keeps (1 − α)·ε and rarer
classes get more. The PGD step is scaled by the same ε_c / ε, and both ramp linearly from 0 to full
over the first β·epochs: at 0-based epoch e the budget is ε_c·min(e / (β·E), 1) (the authors'
``(current_epoch − 1) / (β·num_epochs)`` with 1-based epochs; β = 0: full from the start).
α = 0.3, β = 0.8 by default (the authors' configs; their TAET config uses β = 1).

Only the training attack changes: the evaluation keeps the job's ε. With equal class counts every
ε_c is ε (τ·0 for all classes). Outside a job (no ``ctx.epochs``) the budgets are at full size.
The class-wise ε_c agree with the authors' to 1e-7.

Departures from the authors' code (zhang-lilin/RobustLT, ``core/methods/utils.py``, ``robustlt.py``):

* their training attack starts uniformly in the global ε-ball (then clipped to [0, 1]) and projects
  onto each sample's ε_c from the first step; ltbench starts inside each sample's ε_c-ball (the
  wrapped method's start: uniform, or TRADES' Gaussian);
* their attack runs the model in train mode with BatchNorm statistics frozen (each batch normalised
  with its own statistics); ltbench attacks in eval mode (running statistics), as every method;
* their trainer runs two more train-mode forwards per step for its logging (x' and x), which update
  the BatchNorm running statistics; ltbench's step runs the method's own forwards only;
* their AWP (``core/methods/awp.py``) takes the ascent with the training optimiser; ltbench's
  ``+awp`` follows the AWP authors (``methods/awp.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ltbench.errors import LtbenchError
from ltbench.modifier import Modifier
from ltbench.registry import register_modifier


@dataclass
class RobustLTConfig:
    """RobustLT (Zhang et al., CVPR 2026): ``alpha`` = α, the share of ε redistributed towards rare
    classes (0.3); ``beta`` = β, the fraction of the epochs over which budgets ramp up from 0 (0.8)."""

    alpha: float = 0.3
    beta: float = 0.8


def class_budget_factors(class_counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """ε_c / ε = (1 − α) + τ·sqrt(log(n_max / n_c)), τ = α / Σ_c π_c·sqrt(log(n_max / n_c)); all 1
    when every class has the same count. Counts below 1 are taken as 1. Computed in fp64."""
    n = class_counts.double().clamp_min(1.0)
    r = (n.max() / n).log().sqrt()
    weighted = ((n / n.sum()) * r).sum()
    if weighted <= 0:  # balanced: nothing to redistribute (once per job, not in the step)
        return torch.ones_like(n).to(class_counts.dtype if class_counts.is_floating_point() else torch.float32)
    factors = (1.0 - alpha) + (alpha / weighted) * r
    return factors.to(class_counts.dtype if class_counts.is_floating_point() else torch.float32)


def ramp(epoch: int, epochs, beta: float) -> float:
    """min(e / (β·E), 1) at 0-based epoch e of E; 1 when β = 0 or E is unknown."""
    if beta <= 0 or not epochs:
        return 1.0
    return min(epoch / (beta * epochs), 1.0)


@register_modifier("robustlt")
class RobustLT(Modifier):
    """RobustLT (Zhang et al., CVPR 2026): class-wise PGD budgets ε_c growing with rarity, ramped up over β·epochs."""

    Config = RobustLTConfig

    def __init__(self, config, inner):
        super().__init__(config, inner)
        if not 0.0 <= config.alpha <= 1.0 or config.beta < 0:
            raise LtbenchError(f"robustlt.alpha must be in [0, 1] and robustlt.beta ≥ 0, got {config.alpha} "
                               f"and {config.beta}")
        self.factors = class_budget_factors(self.class_counts, config.alpha)  # ε_c / ε, once per job

    def attack_budget(self, eps, step, ctx):
        eps, step = self.inner.attack_budget(eps, step, ctx)
        scale = self.factors[ctx.y] * ramp(ctx.epoch, ctx.epochs, self.config.beta)  # (B,), on the device
        return eps * scale, step * scale
