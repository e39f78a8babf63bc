"""WAT: Li & Liu, "WAT: Improve the Worst-class Robustness in Adversarial Training", AAAI 2023
(boqili/WAT).

TRADES (Zhang et al., ICML 2019) whose loss is reweighted per class by exponentiated-gradient
(Hedge) weights on C + 1 "experts": the C classes and the average loss. After epoch t, with
L^t_c the class-c mean on the validation split of CE(f(x), y) + β·KL(f(x) ‖ f(x')) and L^t_C the
mean of the class means,

    w_j = C · exp(η · Σ_{s ≤ t} L^s_j) / Σ_{k=0..C} exp(η · Σ_{s ≤ t} L^s_k),   j = 0 … C,

so Σ_j w_j = C (before the first measurement every w_j = 1, as in the authors' code), and the
training loss is

    (1/B) Σ_i w_{y_i}·(CE_i + β·KL_i)  +  w_C · (mean CE + β · mean KL)

(the second term is the authors' "expected loss in the decision set"). The weights are computed as
C·softmax(η·S), the same numbers without overflow. η = 0.1, β = 6; the attack is TRADES' (KL,
0.001·N(0, 1) start). WAT holds out 300 images per class by default (the authors' CIFAR-10 split),
capped at 20 % of a class (``ltbench/data/validation.py``).

The loss and the Hedge weights agree with the authors' functions to 1e-7 on the same inputs.

Departures from the authors' code (boqili/WAT, ``worst_class_adversarial_train.py``), on purpose:

* the validation losses come from ltbench's per-epoch validation measurement, whose attack is PGD on
  the cross-entropy (``val_attack_steps`` = 5 by default), not TRADES' KL attack;
* the per-class means are true per-class means and the (C+1)-th entry is the mean over the classes
  that have validation images; a class without validation images counts L = 0. The authors divide
  each class's sum by ``val_iter * batch_size / C`` (the padded count of batches, not the class's
  images): on their own balanced split of 3,000 images in 24 batches of 128 that is 3000 / 3072 =
  0.977 of the mean, so their costs, and their effective η, are 2.3 % smaller than ltbench's;
* the PGD random start is clipped to [0, 1] (ltbench's default, ``JobConfig.clip_start``); the authors' start is not (``--no-clip-start`` reproduces it);
* the authors' train-mode forwards are two (x, x'), as ltbench's; their validation forwards are in
  eval mode, as ltbench's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.losses import kl_rows
from ltbench.registry import register_method
from methods.trades import TRADES, TRADESConfig


@dataclass
class WATConfig(TRADESConfig):
    """WAT (Li & Liu, AAAI 2023): TRADES' β (6) and start σ, and η, the exponentiated-gradient rate (0.1)."""

    eta: float = 0.1


def validation_costs(val, beta: float) -> torch.Tensor:
    """L_c = mean CE + β·mean KL per class on the validation split, and their mean over the classes
    that have images as the (C+1)-th entry: a (C + 1,) tensor."""
    has = (val.counts > 0).to(val.kl.dtype)
    cost = (val.clean_loss + beta * val.kl) * has
    mean = (cost * has).sum() / has.sum().clamp_min(1.0)
    return torch.cat([cost, mean.view(1)])


def hedge_weights(cumulative: torch.Tensor, eta: float, num_classes: int) -> torch.Tensor:
    """w = C · softmax(η · Σ_s L^s) over the C + 1 entries."""
    return num_classes * torch.softmax(eta * cumulative, 0)


@register_method("wat")
class WAT(TRADES):
    """WAT (Li & Liu, AAAI 2023): TRADES reweighted per class by Hedge on per-class validation TRADES losses."""

    Config = WATConfig
    val_n_per_class = 300  # the authors hold out 300 per class of CIFAR-10

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        self.cumulative = torch.zeros(num_classes + 1)  # Σ_s L^s
        self.weights = torch.ones(num_classes + 1)  # w_0 … w_C

    def train_loss(self, model, x, x_adv, y, ctx):
        logits = model(x)
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        kl = kl_rows(logits, logits_adv)
        per_sample = ce + self.config.beta * kl
        loss = (self.weights[y] * per_sample).mean() + self.weights[-1] * per_sample.mean()
        return loss, logits_adv

    def on_epoch_end(self, epoch, stats):
        if stats.val is None:
            if stats.model is not None:  # a job without a validation split
                raise LtbenchError("wat needs a validation split: set val_n_per_class > 0")
            return
        self.cumulative = self.cumulative + validation_costs(stats.val, self.config.beta)
        self.weights = hedge_weights(self.cumulative, self.config.eta, self.num_classes)

    def state_dict(self):
        return {"cumulative": self.cumulative, "weights": self.weights}

    def load_state_dict(self, state):
        self.cumulative = state["cumulative"].to(self.cumulative.device)
        self.weights = state["weights"].to(self.weights.device)
