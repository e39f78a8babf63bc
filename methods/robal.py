"""RoBal: Wu, Liu, Huang, Wang, Lin, "Adversarial Robustness under Long-Tailed Distribution",
CVPR 2021 (Sec. 4).

Three parts, all written with the class prior π_i = N_i / Σ_j N_j:

1. Scale-invariant (cosine) classifier, the head this method installs (:class:`RoBalHead`):
   z_i(f) = s · ⟨ f/‖f‖ , w_i/(‖w_i‖ + γ) ⟩ — no bias, scale s, γ keeping the norms of the tail
   weights from collapsing.
2. Margin engineering in the training loss, on the adversarial logits:
   L = CE( s·(cos_y − m_y)  and  s·cos_j (j ≠ y)  + τ_b · log π_j , y ),
   m_y = m + (τ_m / s) · log(N_y / N_min): a uniform margin m plus a class-aware part, and the
   class-aware bias τ_b·log π (a pairwise class-aware margin τ_b·log(π_j/π_y) between classes).
   As in the authors' configuration the outer loss adds TRADES' β·KL(p(x) ‖ p(x')) term.
3. Boundary adjustment at inference: z_i − τ_p · log π_i. It lives in the head's eval mode, so
   every evaluation attack differentiates through it; the training-time PGD (also run in eval
   mode) ascends CE on the unadjusted s·cos, as the authors' training does.

Defaults are the authors' CIFAR-10-LT RoBal configuration (s = 10, m = 0.1, τ_m = 0, τ_b = 1.2,
γ = 1/32, β = 6, boundary adjustment τ_p = 0.1).

Departures from the authors' code (wutong16/Adversarial_Long-Tail, ``methods/train_modes.py``), not
compared number by number:

* the authors' PGD starts from x + ε·U[0, 1) (one-sided, not clipped to [0, 1]); ltbench from a
  uniform draw in [−ε, ε], clipped (``--no-clip-start`` drops the clipping, not the one-sidedness);
* their outer step runs a train-mode forward for each term (x' for the margin loss, then x and x'
  again for the TRADES term), each updating the BatchNorm statistics; ltbench runs two (x, x');
  their KL takes log(p(x') + 1e-12).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ltbench.errors import LtbenchError
from ltbench.method import Method
from ltbench.losses import kl_rows
from ltbench.registry import register_method


def log_prior(class_counts: torch.Tensor) -> torch.Tensor:
    counts = class_counts.float().clamp_min(1.0)
    return (counts / counts.sum()).log()


class RoBalHead(nn.Module):
    """Cosine classifier s·⟨f/‖f‖, w/(‖w‖+γ)⟩; in eval mode minus τ_p·log π (boundary adjustment)."""

    def __init__(self, in_features: int, num_classes: int, class_counts: torch.Tensor, scale: float = 10.0,
                 gamma: float = 1 / 32, tau_p: float = 0.1):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-bound, bound))
        self.register_buffer("log_prior", log_prior(class_counts).cpu())
        self.scale, self.gamma, self.tau_p = float(scale), float(gamma), float(tau_p)

    def cosine(self, f: torch.Tensor) -> torch.Tensor:
        w = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.gamma)
        return F.normalize(f, dim=1) @ w.t()

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        z = self.scale * self.cosine(f)
        if not self.training and self.tau_p:
            z = z - self.tau_p * self.log_prior
        return z

    def extra_repr(self) -> str:
        return (f"in_features={self.weight.shape[1]}, classes={self.weight.shape[0]}, scale={self.scale}, "
                f"gamma={self.gamma}, tau_p={self.tau_p}")


@dataclass
class RoBalConfig:
    """RoBal (Wu et al., CVPR 2021, Sec. 4): cosine scale s and γ; margin m, class-aware margin τ_m,
    training bias τ_b; inference boundary adjustment τ_p; TRADES-KL weight β (0 turns it off)."""

    scale: float = 10.0
    gamma: float = 1 / 32
    margin: float = 0.1
    tau_m: float = 0.0
    tau_b: float = 1.2
    tau_p: float = 0.1
    trades_beta: float = 6.0

    def validate(self) -> None:
        """Checked before a study is written (``ltbench.method.check_method_config``): the cosine scale s > 0."""
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")


@register_method("robal")
class RoBal(Method):
    """RoBal (Wu et al., CVPR 2021): cosine classifier, class-aware margin, boundary adjustment at inference."""

    Config = RoBalConfig
    cost_factor = 1.2

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        if config.scale <= 0:
            raise LtbenchError(f"robal.scale must be positive, got {config.scale}")
        self.log_prior = log_prior(self.class_counts)
        # The logit shifts of the attack and the training loss, computed once per job, not per step.
        self.attack_shift = config.tau_p * self.log_prior
        self.train_shift = config.tau_b * self.log_prior
        counts = self.class_counts.clamp_min(1.0)
        self.margins = config.margin + config.tau_m * (counts / counts.min()).log() / config.scale

    def build_head(self, in_features, num_classes, class_counts):
        c = self.config
        return RoBalHead(in_features, num_classes, class_counts, scale=c.scale, gamma=c.gamma, tau_p=c.tau_p)

    def attack_loss(self, logits_adv, y, ctx):
        # The training attack runs in eval mode; undo the inference-time boundary adjustment.
        return F.cross_entropy(logits_adv.float() + self.attack_shift, y, reduction="sum")

    def train_loss(self, model, x, x_adv, y, ctx):
        c = self.config
        logits_adv = model(x_adv)  # train mode: s·cos
        z = logits_adv.float()
        z = z - c.scale * F.one_hot(y, z.shape[1]) * self.margins[y][:, None] + self.train_shift
        loss = F.cross_entropy(z, y)
        if c.trades_beta:
            loss = loss + c.trades_beta * kl_rows(model(x), logits_adv).mean()
        return loss, logits_adv
