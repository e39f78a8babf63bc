"""Fast gradient sign method (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
Examples", ICLR 2015, Eq. (3)): ``x' = clip_[0,1](x + ε · sign(∇ₓ CE(f(x), y)))``.

One gradient step from the clean input, no random start. It is the weakest attack here and serves
as a gradient-masking probe: a multi-step PGD that does worse than FGSM means the gradients lie
(Athalye, Carlini & Wagner, ICML 2018; Carlini et al. 2019, "On Evaluating Adversarial Robustness").
"""
from __future__ import annotations

import torch

from ltbench.attacks.base import Attack, LossFn, ce_loss
from ltbench.attacks.pgd import pgd_search
from ltbench.registry import register_attack


@register_attack("fgsm")
class FGSM(Attack):
    """One signed-gradient step of size ε (Goodfellow et al., ICLR 2015); a misclassified sample stays as it is."""

    label = "FGSM"

    def __init__(self, eps: float, loss_fn: LossFn = ce_loss):
        super().__init__(eps)
        self.loss_fn = loss_fn

    def perturb(self, model, x, y):
        # One PGD step of size ε from x itself: pgd_search checks x (iterate 0) and the step's result.
        x_adv, _ = pgd_search(model, x, y, eps=self.eps, step=self.eps, steps=1, loss_fn=self.loss_fn,
                              start=torch.zeros_like)
        return x_adv

    def describe(self):
        return {"name": self.name, "eps": self.eps, "steps": 1,
                "loss": getattr(self.loss_fn, "__name__", type(self.loss_fn).__name__)}
