"""FRL: Xu, Liu, Li, Jain, Tang, "To be Robust or to be Fair: Towards Fairness in Adversarial
Training", ICML 2021 (hannxu123/fair_robust), Algorithm 1 (reweight, remargin).

A fine-tuning method: the authors start from an adversarially trained model (``hot_start.pt``)
and fine-tune it; their scripts' default run is 40 epochs at learning rate 0.001 (SGD, momentum
0.9, wd 5e−4), whose MultiStepLR milestones 40 and 80 are never reached: a constant rate. In
ltbench, a job started with ``--init-from`` another job's folder (``fmnist-lt``: each seed's PGD-AT
job, lr 0.001, constant). Each epoch starts from the validation split measured on the current
model (before the first epoch, on the initial model): per class c the clean error e_c and the
boundary error b_c (clean right, adversarially wrong), and their averages ē, b̄. The fairness
constraints e_c − ē ≤ τ₁, b_c − b̄ ≤ τ₂ get Lagrange multipliers

    λ₀ ← Π(λ₀ + α₁·(e − ē − τ₁)),   λ₁ ← Π(λ₁ + 2α₁·(b − b̄ − τ₂)),

Π = clip at 0 then, if Σλ > ``lim`` (0.5), rescale to sum ``lim``; α₁ = 0.05, halved every 40
epochs (before 1-based epochs 40, 80, …; ``halve_every`` is in the authors' 40 epochs and scaled
to the job's, :func:`ltbench.method.resolve_schedules`). They weigh the TRADES terms per class,
w⁰_c = 1/C + λ₀_c − mean(λ₀), w¹_c = 1/C + λ₁_c − mean(λ₁), each term normalised by its own
weights (``utils_frl.train_model``):

    Σ_i w⁰_{y_i}·CE(f(x_i), y_i) / Σ_i w⁰_{y_i}  +  β · Σ_i w¹_{y_i}·KL(f(x_i) ‖ f(x'_i)) / Σ_i w¹_{y_i}.

**Remargin** (``remargin``, default, the authors' ``frlrmrw.py``; ``frl --no-remargin`` is
FRL-Reweight, ``frlrw.py``) also moves the attack's budget: λ₂ ← λ₂ + α₂·(b − b̄ − τ₂) (not
projected), ε_c = ε·clip(exp(2λ₂_c), 0.98, 3), and the attack's step is max over the batch of
ε_{y_i} / 4 (``utils_frl2.trades_adv``); FRL-Reweight attacks with the job's ε and step. The attack
is TRADES' (KL, 0.001·N(0, 1) start). Defaults per variant, as the authors' scripts set them:
β = 1.5 for both; τ₁ = τ₂ = 0.07 and α₂ = 0.2 for remargin, τ₁ = τ₂ = 0.1 for reweight (its α₂ is
unused); α₁ = 0.05, ``lim`` = 0.5. FRL holds out 300 images per class by default (the authors'
CIFAR-10 split), capped at 20 % of a class.

Departures from the authors' code:

* the boundary error is the paper's (share of class-c images with f(x) right and f(x') wrong; the
  code takes clean minus robust accuracy, which also counts images the attack makes right);
* ē and b̄ are means over the classes with validation images (the authors' set is balanced, where
  they agree with the overall error);
* the validation attack is ltbench's per-epoch PGD (``val_attack_steps`` = 5 by default; the
  authors' is PGD-20 with step 2/255, ``--val-attack-steps 20`` gives step 2.5·ε/20 instead);
* the training attack's 0.001·N(0, 1) start is clipped to [0, 1] (``--no-clip-start`` does not,
  as the authors);
* the authors' outer step runs three train-mode forwards (x, x', x again for the KL target), each
  updating the BatchNorm statistics; ltbench runs two (x, x');
* the fine-tuning length is the job's (``fmnist-lt``: the study's 20 epochs, not the authors' 40).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.method import epoch_field
from ltbench.losses import kl_rows
from ltbench.registry import register_method
from methods.trades import TRADES, TRADESConfig


# The authors' defaults of each variant: frlrmrw.py (remargin), frlrw.py (reweight).
VARIANT_DEFAULTS = {True: {"bound0": 0.07, "bound1": 0.07, "rate2": 0.2},
                    False: {"bound0": 0.1, "bound1": 0.1, "rate2": 0.1}}


@dataclass
class FRLConfig(TRADESConfig):
    """FRL (Xu et al., ICML 2021), the authors' defaults per variant (``frlrmrw.py``, ``frlrw.py``):
    β = 1.5, remargin on; τ₁ = τ₂ (``bound0``, ``bound1``) 0.07 with remargin, 0.1 without; α₁ =
    0.05 halved every 40 epochs (of the authors' 40); α₂ = 0.2 (remargin; unused without); ``lim`` =
    0.5; ``max_eps_step``: the remargin attack's step is max ε_c / 4 over the batch (false: the
    job's step). ``None`` takes the variant's default."""

    beta: float = 1.5
    remargin: bool = True
    bound0: Optional[float] = None
    bound1: Optional[float] = None
    rate1: float = 0.05
    rate2: Optional[float] = None
    halve_every: int = epoch_field(40, paper_epochs=40)
    lim: float = 0.5
    max_eps_step: bool = True

    def __post_init__(self):
        for key, value in VARIANT_DEFAULTS[bool(self.remargin)].items():
            if getattr(self, key) is None:
                setattr(self, key, value)


def project_multipliers(lmbda: torch.Tensor, lim: float) -> torch.Tensor:
    """Π: clip at 0, then rescale to sum ``lim`` if the sum exceeds it (no host read)."""
    lmbda = lmbda.clamp_min(0.0)
    total = lmbda.sum()
    return torch.where(total > lim, lmbda * (lim / total.clamp_min(1e-12)), lmbda)


def class_weights(lmbda: torch.Tensor) -> torch.Tensor:
    """w_c = 1/C + λ_c − mean(λ) (the authors' 1/C + (C−1)/C·λ_c − 1/C·Σ_{j≠c} λ_j)."""
    return 1.0 / lmbda.numel() + lmbda - lmbda.mean()


def margin_factors(lmbda2: torch.Tensor) -> torch.Tensor:
    """ε_c / ε = clip(exp(2λ₂_c), 0.98, 3)."""
    return torch.exp(2.0 * lmbda2).clamp(0.98, 3.0)


def class_mean(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    has = (counts > 0).to(values.dtype)
    return (values * has).sum() / has.sum().clamp_min(1.0)


@register_method("frl")
class FRL(TRADES):
    """FRL (Xu et al., ICML 2021): fine-tuning with per-class TRADES weights (and ε) from Lagrange multipliers of fairness constraints."""

    Config = FRLConfig
    val_n_per_class = 300  # the authors hold out 300 per class of CIFAR-10
    val_before_training = True  # the first epoch's weights come from the initial model

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        if config.halve_every < 1:
            raise LtbenchError(f"frl.halve_every must be at least 1 epoch, got {config.halve_every}")
        if not 0.0 < config.lim < 1.0:
            raise LtbenchError(f"frl.lim must be in (0, 1) so every class weight stays positive, got {config.lim}")
        self.lmbda = torch.zeros(3, num_classes)  # λ₀, λ₁, λ₂
        self.w_clean = torch.full((num_classes,), 1.0 / num_classes)
        self.w_bndy = torch.full((num_classes,), 1.0 / num_classes)
        self.eps_factor = torch.ones(num_classes)

    def rate1(self, epoch: int) -> float:
        """α₁ for 0-based ``epoch``: halved at 1-based epochs ``halve_every``, 2·``halve_every``, …"""
        return self.config.rate1 / 2 ** ((epoch + 1) // self.config.halve_every)

    def attack_budget(self, eps, step, ctx):
        """Remargin: ε_c per sample and, as the authors' ``utils_frl2.trades_adv``, the step
        max_i ε_{y_i} / 4 (a device tensor, no host read)."""
        if not self.config.remargin:
            return eps, step
        eps_c = eps * self.eps_factor[ctx.y]
        if self.config.max_eps_step:
            step = (eps_c.amax() / 4).expand_as(eps_c)
        return eps_c, step

    def train_loss(self, model, x, x_adv, y, ctx):
        logits = model(x)
        logits_adv = model(x_adv)
        w0, w1 = self.w_clean[y], self.w_bndy[y]
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        kl = kl_rows(logits, logits_adv)
        # each term normalised by its own weights, as the authors' utils_frl.train_model
        loss = (w0 * ce).sum() / w0.sum() + self.config.beta * (w1 * kl).sum() / w1.sum()
        return loss, logits_adv

    def on_epoch_end(self, epoch, stats):
        """Measurements after ``epoch`` (−1: of the initial model) set the weights of epoch + 1."""
        val, c = stats.val, self.config
        if val is None:
            if stats.model is not None:
                raise LtbenchError("frl needs a validation split: set val_n_per_class > 0")
            return
        clean_err = 1.0 - val.clean_acc
        gap0 = clean_err - class_mean(clean_err, val.counts) - c.bound0
        gap1 = val.boundary_err - class_mean(val.boundary_err, val.counts) - c.bound1
        has = val.counts > 0  # a class without validation images has no constraint
        gap0, gap1 = torch.where(has, gap0, 0.0), torch.where(has, gap1, 0.0)
        a1 = self.rate1(epoch + 1)
        l0 = project_multipliers(self.lmbda[0] + a1 * gap0, c.lim)
        l1 = project_multipliers(self.lmbda[1] + 2 * a1 * gap1, c.lim)
        l2 = self.lmbda[2] + c.rate2 * gap1 if c.remargin else self.lmbda[2]
        self.lmbda = torch.stack([l0, l1, l2])
        self.w_clean, self.w_bndy = class_weights(l0), class_weights(l1)
        self.eps_factor = margin_factors(l2)

    def state_dict(self):
        return {"lmbda": self.lmbda, "w_clean": self.w_clean, "w_bndy": self.w_bndy, "eps_factor": self.eps_factor}

    def load_state_dict(self, state):
        dev = self.lmbda.device
        for k in ("lmbda", "w_clean", "w_bndy", "eps_factor"):
            setattr(self, k, state[k].to(dev))
