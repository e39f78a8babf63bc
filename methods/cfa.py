"""CFA: Wei, Wang, Guo, Wang, "CFA: Class-wise Calibrated Fair Adversarial Training", CVPR 2023
(PKU-ML/CFA).

Three parts, each switchable, on top of TRADES (``base = "trades"``, default) or PGD-AT
(``base = "at"``). With t_c the robust accuracy of class c on the previous epoch's training AEs
(``EpochStats.train_adv_acc``), from 0-based epoch ``begin`` on (the authors' 10 of their 200
epochs, scaled to the job's by default: 1 of 20, :func:`ltbench.method.resolve_schedules`):

* **CCM** (class-wise calibrated margin, Sec. 4.1): class c is attacked with ε_c = (λ₁ + t_c)·ε,
  the PGD step unchanged (the authors' ``--pgd-alpha``). λ₁ = 0.5. The attack starts as its base's:
  TRADES' x + 0.001·N(0, I) (the default base, as the authors' ``cw_trades_loss``), or uniform in
  each ε_c-ball for ``base = "at"``.
* **CCR** (class-wise calibrated regularisation, Sec. 4.2; TRADES base only, AT has no β): the
  TRADES loss of a sample of class c is (1 − β'_c)·CE(f(x), y) + β'_c·KL(f(x) ‖ f(x')) with
  β'_c = (λ₂ + t_c)·β / (1 + (λ₂ + t_c)·β), λ₂ = 0.5. Before ``begin`` (or without CCR) every
  β'_c = β / (1 + β): the authors' TRADES is the usual one divided by 1 + β, kept here.
* **FAWA** (fairness-aware weight averaging, Sec. 4.3): after each epoch, if the worst class's
  robust accuracy on the validation split reaches ``threshold`` (the authors' 0.24; 0.2 in their
  README's AT example), the average becomes decay·average + (1 − decay)·weights (the first time:
  the weights), decay = 0.88; otherwise it stays. The average — parameters and BatchNorm buffers —
  is what the job evaluates, selects from and saves (``eval_weights.pt``); it lives in the method
  state, so it is in every checkpoint. If it never started, the trained model is evaluated.

ε_c, β'_c and the FAWA average agree with the authors' functions to 1e-7 on the same batch,
weights and noise.

Departures from the authors' code (PKU-ML/CFA), on purpose:

* t_c is the **true per-class accuracy** (correct AEs of class c / training images of class c).
  The authors compute C·(correct of class c) / (all images), which equals it only on balanced
  data; on long-tailed data it would shrink the tail's ε_c and β'_c with its count.
* The worst class on the validation split is measured by ltbench's per-epoch validation attack
  (``val_attack_steps`` = 5 iterations of 2.5·ε/5 by default; the authors use PGD-10 with step
  2/255 on CIFAR-10, which ``--val-attack-steps 10`` reproduces at ε = 8/255), over the classes
  that have validation images. CFA holds out 100 images per class by default (the authors'
  CIFAR-10 split), capped at 20 % of a class (``ltbench/data/validation.py``).
* The PGD random start is clipped to [0, 1] (ltbench's default, ``JobConfig.clip_start``); the
  authors' start is not (``--no-clip-start`` reproduces it).
* The authors' TRADES step runs three train-mode forwards (x, x', x again for the KL target), each
  updating the BatchNorm statistics; ltbench runs two.
* ``begin`` is scaled to the job's epochs (``--absolute-schedules`` keeps the authors' 10).

All per-class quantities live on the device; the FAWA test is a ``torch.where``, so neither the
step nor the epoch end reads a value back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.method import TradesOrPgdAttack, epoch_field
from ltbench.losses import kl_rows
from ltbench.registry import register_method

AVG = "fawa."  # state keys of the weight average: "fawa.<parameter or buffer name>"


@dataclass
class CFAConfig:
    """CFA (Wei et al., CVPR 2023), the authors' defaults: ``base`` trades or at; CCM, CCR, FAWA
    switches; λ₁ (CCM), λ₂ (CCR), the 0-based epoch both start (10 of the authors' 200 epochs, scaled
    to the job's), TRADES β (6), FAWA's decay
    (0.88) and worst-class validation threshold (0.24); TRADES' Gaussian start σ (0.001)."""

    base: str = "trades"
    ccm: bool = True
    ccr: bool = True
    fawa: bool = True
    lambda1: float = 0.5
    lambda2: float = 0.5
    begin: int = epoch_field(10, paper_epochs=200)
    beta: float = 6.0
    decay: float = 0.88
    threshold: float = 0.24
    start_std: float = 0.001


def ccm_factors(train_adv_acc: torch.Tensor, lambda1: float) -> torch.Tensor:
    """ε_c / ε = λ₁ + t_c (CFA, Sec. 4.1)."""
    return lambda1 + train_adv_acc


def ccr_betas(train_adv_acc: torch.Tensor, lambda2: float, beta: float) -> torch.Tensor:
    """β'_c = (λ₂ + t_c)·β / (1 + (λ₂ + t_c)·β) (CFA, Sec. 4.2)."""
    b = (lambda2 + train_adv_acc) * beta
    return b / (1.0 + b)


@register_method("cfa")
class CFA(TradesOrPgdAttack):
    """CFA (Wei et al., CVPR 2023): class-wise ε (CCM) and TRADES β (CCR) from per-class train robustness, FAWA weight average."""

    Config = CFAConfig
    val_n_per_class = 100  # FAWA needs the validation split: the authors hold out 100 per class of CIFAR-10

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        if config.base not in ("trades", "at"):
            raise LtbenchError(f"cfa.base must be 'trades' or 'at', got {config.base!r}")
        if not 0.0 <= config.decay <= 1.0:
            raise LtbenchError(f"cfa.decay must be in [0, 1], got {config.decay}")
        C = num_classes
        self.eps_factor = torch.ones(C)  # ε_c / ε for the coming epoch (1 before `begin`)
        self.class_beta = torch.full((C,), config.beta / (1.0 + config.beta))  # β'_c for the coming epoch
        self.fawa_started = torch.zeros((), dtype=torch.bool)
        self.average: dict[str, torch.Tensor] = {}

    # --- the step -----------------------------------------------------------------------------
    def active(self, ctx) -> bool:
        """CCM acts from epoch ``begin`` (Python ints: no host read); outside a job (``ctx.epochs``
        None, ``ltbench bench``) it counts as late in training, so the bench times CFA's own step."""
        return ctx.epochs is None or ctx.epoch >= self.config.begin

    def attack_budget(self, eps, step, ctx):
        if self.config.ccm and self.active(ctx):
            return eps * self.eps_factor[ctx.y], step  # (B,) budgets, the step unchanged
        return eps, step

    def train_loss(self, model, x, x_adv, y, ctx):
        if self.config.base == "at":
            return super().train_loss(model, x, x_adv, y, ctx)
        logits = model(x)
        logits_adv = model(x_adv)
        b = self.class_beta[y]
        per_sample = (1.0 - b) * F.cross_entropy(logits.float(), y, reduction="none") + b * kl_rows(logits, logits_adv)
        return per_sample.mean(), logits_adv

    # --- the epoch end --------------------------------------------------------------------------
    def on_epoch_end(self, epoch, stats):
        c = self.config
        if stats.train_adv_acc is not None and epoch + 1 >= c.begin:  # the next epoch's ε_c and β'_c
            if c.ccm:
                self.eps_factor = ccm_factors(stats.train_adv_acc, c.lambda1)
            if c.ccr and c.base == "trades":
                self.class_beta = ccr_betas(stats.train_adv_acc, c.lambda2, c.beta)
        if c.fawa and stats.model is not None:
            if stats.val is None:
                raise LtbenchError("cfa's FAWA needs a validation split: set val_n_per_class > 0 or cfa.fawa=false")
            self.update_average(stats.model.state_dict(), worst_class(stats.val.adv_acc, stats.val.counts))

    def update_average(self, weights: dict, worst: torch.Tensor) -> None:
        """FAWA: average ← decay·average + (1 − decay)·weights when ``worst`` ≥ threshold (the first
        time: ← weights), else unchanged; non-floating buffers are copied when it passes."""
        passed = worst >= self.config.threshold
        d = torch.where(self.fawa_started, self.config.decay, 0.0)
        for k, w in weights.items():
            w = w.detach()
            avg = self.average.get(k)
            if avg is None:
                avg = w.clone()
            if w.is_floating_point():
                new = d.to(w.dtype) * avg + (1.0 - d.to(w.dtype)) * w
            else:
                new = w
            self.average[k] = torch.where(passed, new, avg)
        self.fawa_started = self.fawa_started | passed

    def needs_validation(self) -> bool:
        return self.config.fawa  # CCM and CCR learn from the training AEs alone

    def eval_weights(self) -> Optional[dict]:
        if not self.config.fawa or not self.average or not bool(self.fawa_started):  # read once, at evaluation
            return None
        return dict(self.average)

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self):
        return {"eps_factor": self.eps_factor, "class_beta": self.class_beta, "fawa_started": self.fawa_started,
                **{AVG + k: v for k, v in self.average.items()}}

    def load_state_dict(self, state):
        device = self.eps_factor.device
        self.eps_factor = state["eps_factor"].to(device)
        self.class_beta = state["class_beta"].to(device)
        self.fawa_started = state["fawa_started"].to(device)
        self.average = {k[len(AVG):]: v.to(device) for k, v in state.items() if k.startswith(AVG)}

    def to(self, device):
        super().to(device)
        self.average = {k: v.to(device) for k, v in self.average.items()}
        return self


def worst_class(acc: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The lowest per-class accuracy over the classes that have images (a 0-dim tensor)."""
    return torch.where(counts > 0, acc, torch.full_like(acc, float("inf"))).min()
