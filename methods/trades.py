"""TRADES: Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off between
Robustness and Accuracy", ICML 2019.

The TRADES objective (Sec. 4) and its Algorithm 1, with the KL surrogate of the boundary error:

    min_θ  E [ CE(f_θ(x), y) + β · max_{‖x'−x‖∞ ≤ ε} KL( softmax f_θ(x) ‖ softmax f_θ(x') ) ]

* inner maximisation: PGD ascends Σ_b KL(p(x_b) ‖ p(x'_b)), where p(x) are the clean
  predictions taken as a fixed target (``ctx.clean_logits``, computed once per batch in eval mode,
  as in Algorithm 1), from the start x' = x + 0.001·N(0, I);
* outer minimisation: CE on the clean logits + β · the batch mean of the same KL, both
  forward passes in train mode, gradients through both (as in Algorithm 1).
β = 6 (1/λ) is the paper's CIFAR-10 setting.

Departures from the authors' code (yaodongyu/TRADES, ``trades.py``):

* the PGD random start is clipped to [0, 1] (ltbench's default, ``JobConfig.clip_start``); the authors' start is not (``--no-clip-start`` reproduces it);
* the authors' outer step runs three train-mode forwards (x for the CE, x', and x again for the KL
  target), each updating the BatchNorm running statistics; ltbench runs two (x, x'), the KL target
  being the first forward's logits (the same values: train mode normalises with batch statistics).
"""
from dataclasses import dataclass

import torch.nn.functional as F

from ltbench.method import Method
from ltbench.losses import kl_rows, small_normal_start
from ltbench.registry import register_method


@dataclass
class TRADESConfig:
    """TRADES (Zhang et al., ICML 2019): β weighs the KL robustness term (paper: β = 1/λ = 6 on
    CIFAR-10); ``start_std`` is the σ of the Gaussian start of Algorithm 1 (0.001)."""

    beta: float = 6.0
    start_std: float = 0.001


@register_method("trades")
class TRADES(Method):
    """TRADES (Zhang et al., ICML 2019): CE(clean) + β·KL(clean ‖ adversarial), KL ascended by PGD."""

    Config = TRADESConfig
    cost_factor = 1.2  # the clean forward pass of the KL term
    # TRADES-AWP as Wu et al. (NeurIPS 2020) ran it: γ = 0.005, AWP from epoch 10 (1-based) on.
    modifier_defaults = {"awp": {"gamma": 0.005, "warmup": 9}}

    def attack_start(self, x, ctx):
        return small_normal_start(x, self.config.start_std)

    def attack_loss(self, logits_adv, y, ctx):
        return kl_rows(ctx.clean_logits, logits_adv).sum()

    def train_loss(self, model, x, x_adv, y, ctx):
        logits = model(x)
        logits_adv = model(x_adv)
        loss = F.cross_entropy(logits.float(), y) + self.config.beta * kl_rows(logits, logits_adv).mean()
        return loss, logits_adv
