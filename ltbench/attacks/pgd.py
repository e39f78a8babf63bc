"""Projected gradient descent under L∞ (Madry et al., ICLR 2018, Eq. (2.2)).

``x_{t+1} = Π_{B_ε(x) ∩ [0,1]}(x_t + α · sign(∇ₓ L(f(x_t), y)))`` from a random start. The loss is
pluggable (cross-entropy, CW margin, or a training method's own inner loss), so training and
evaluation share this one implementation. With ``restarts > 1`` the per-sample worst case over
restarts is kept (a sample counts as broken if any restart breaks it), without host syncs.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ltbench.attacks.base import Attack, LossFn, autocast_for, ce_loss, project

StartFn = Callable[[torch.Tensor], torch.Tensor]


def pgd_perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int,
                loss_fn: LossFn = ce_loss, start: Optional[StartFn] = None) -> torch.Tensor:
    """Run ``steps`` PGD iterations from ``x + start(x)`` (uniform in the ε-ball by default).

    The model's mode is left alone (callers choose it); only the input gradient is computed.
    """
    if start is None:
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        delta = start(x)
    x_adv = project(x, x + delta, eps) if eps > 0 else x.clone()
    amp = autocast_for(x.device)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with amp:
            logits = model(x_adv)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = project(x, x_adv.detach() + step * grad.sign(), eps)
    return x_adv.detach()


class PGD(Attack):
    """L∞ PGD: ``steps`` iterations of size ``step`` from a random start, ``restarts`` times."""

    name = "pgd"

    def __init__(self, eps: float, step: float, steps: int = 20, restarts: int = 1,
                 loss_fn: LossFn = ce_loss, random_start: bool = True):
        super().__init__(eps)
        self.step, self.steps, self.restarts = float(step), int(steps), int(restarts)
        self.loss_fn = loss_fn
        self.random_start = random_start

    def perturb(self, model, x, y):
        start = None if self.random_start else (lambda x: torch.zeros_like(x))
        best = None
        for _ in range(self.restarts):
            x_adv = pgd_perturb(model, x, y, eps=self.eps, step=self.step, steps=self.steps,
                                loss_fn=self.loss_fn, start=start)
            if best is None:
                best = x_adv
                if self.restarts == 1:
                    break
                with torch.no_grad(), autocast_for(x.device):
                    broken = model(best).argmax(1) != y
                continue
            with torch.no_grad(), autocast_for(x.device):
                new_broken = model(x_adv).argmax(1) != y
            take = new_broken & ~broken
            best = torch.where(take[:, None, None, None], x_adv, best)
            broken = broken | new_broken
        return best

    def describe(self):
        return {"name": self.name, "eps": self.eps, "step": self.step, "steps": self.steps,
                "restarts": self.restarts, "loss": getattr(self.loss_fn, "__name__", "custom")}
