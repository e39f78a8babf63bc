"""MART: Wang, Zou, Yi, Bailey, Ma, Gu, "Improving Adversarial Robustness Requires Revisiting
Misclassified Examples", ICLR 2020.

The MART objective (Sec. 3), per sample, with p(·) the softmax output:

    L = BCE(p(x'), y) + λ · KL( p(x) ‖ p(x') ) · (1 − p_y(x))
    BCE(p(x'), y) = −log p_y(x') − log(1 − max_{k≠y} p_k(x'))

where x' = argmax_{‖x'−x‖∞≤ε} CE(f(x'), y) is found by PGD (the default inner loss here). The
(1 − p_y(x)) factor weights the KL by how misclassified the clean input is; like the authors'
release it stays in the graph. The start is 0.001·N(0, I), as in the authors' release (which
follows TRADES). λ = 5 is the paper's setting for ResNet-18 on CIFAR-10 (6 for WRN-34-10).

Departures from the authors' code (YisenWang/MART, ``mart.py``):

* the PGD random start is clipped to [0, 1] (ltbench's default, ``JobConfig.clip_start``); the authors' start is not (``--no-clip-start`` reproduces it);
* the margin term is −log(1 − max_{k≠y} p_k(x')) with 1 − p clamped at 1e-12, and the KL weight is
  1 − p_y(x); the authors write −log(1.0001 − p + 1e-12), (1.0000001 − p_y) and log(p(x') + 1e-12)
  in the KL: guards that bound their margin term at −log(1e-4) where max_{k≠y} p_k(x') → 1 (not
  compared number by number).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ltbench.method import Method
from ltbench.losses import kl_rows, small_normal_start
from ltbench.registry import register_method


@dataclass
class MARTConfig:
    """MART (Wang et al., ICLR 2020): λ weighs the misclassification-aware KL term (5 for
    ResNet-18, 6 for WRN-34-10 in the paper); ``start_std`` is the σ of the Gaussian start."""

    lam: float = 5.0
    start_std: float = 0.001


@register_method("mart")
class MART(Method):
    """MART (Wang et al., ICLR 2020): boosted CE on AEs + λ·KL weighted by 1 − p_y(clean)."""

    Config = MARTConfig
    cost_factor = 1.15

    def attack_start(self, x, ctx):
        return small_normal_start(x, self.config.start_std)

    def train_loss(self, model, x, x_adv, y, ctx):
        logits = model(x)
        logits_adv = model(x_adv)
        z_adv = logits_adv.float()
        probs_adv = z_adv.softmax(1)
        true = F.one_hot(y, z_adv.shape[1]).bool()
        best_other = probs_adv.masked_fill(true, 0.0).amax(1)
        bce = F.cross_entropy(z_adv, y, reduction="none") - torch.log((1.0 - best_other).clamp_min(1e-12))
        p_true_clean = logits.float().softmax(1).gather(1, y[:, None]).squeeze(1)
        loss = (bce + self.config.lam * kl_rows(logits, logits_adv) * (1.0 - p_true_clean)).mean()
        return loss, logits_adv
