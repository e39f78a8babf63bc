"""Loss pieces several methods share: effective-number weights (Cui et al.), Balanced Softmax /
logit adjustment (Ren et al.; Menon et al.), the row-wise KL of TRADES / MART and TRADES' small
Gaussian start. Plain functions of tensors; no method API here (:mod:`ltbench.method`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError


def small_normal_start(x: torch.Tensor, std: float = 0.001) -> torch.Tensor:
    """δ₀ = std · N(0, I): the start of TRADES' Algorithm 1 (Zhang et al. 2019), reused by its successors."""
    return torch.randn_like(x).mul_(std)


def effective_number(n: torch.Tensor, one_minus_beta: torch.Tensor | float) -> torch.Tensor:
    """Effective number of samples (Cui et al., CVPR 2019, Sec. 3): E_n = (1 − βⁿ) / (1 − β), elementwise.

    Takes 1 − β (not β) so that β close to 1 keeps its precision; computed as
    −expm1(n · log1p(−(1 − β))) / (1 − β). E_0 = 0 for every β, and β = 0 gives E_n = 1 for n ≥ 1.
    """
    n = n.float()
    omb = torch.as_tensor(one_minus_beta, dtype=torch.float32, device=n.device)
    safe_n = torch.where(n > 0, n, torch.ones_like(n))  # 0 · log(0) would be NaN where β = 0
    e = -torch.expm1(safe_n * torch.log1p(-omb)) / omb
    return torch.where(n > 0, e, torch.zeros_like(e))


def class_balanced_weights(class_counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al., CVPR 2019, Sec. 4): w_i ∝ 1 / E_{N_i} with one β, Σ w_i = C."""
    if not 0.0 <= beta < 1.0:
        raise LtbenchError(f"class-balanced beta must be in [0, 1), got {beta}")
    counts = class_counts.float().clamp_min(1.0)
    w = 1.0 / effective_number(counts, 1.0 - beta)
    return w * (counts.numel() / w.sum())


def logit_adjustment(class_counts: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """τ·log N_i, the shift Balanced Softmax adds to the logits (counts below 1 are taken as 1).
    Methods compute it once per job, so the training step does not repeat these operations."""
    return tau * class_counts.float().clamp_min(1.0).log()


def balanced_softmax_ce(logits: torch.Tensor, y: torch.Tensor, adjustment: torch.Tensor,
                        reduction: str = "mean") -> torch.Tensor:
    """Balanced Softmax cross-entropy (Ren et al., "Balanced Meta-Softmax", NeurIPS 2020): CE(z + τ·log N, y),
    with ``adjustment`` = :func:`logit_adjustment` (N, τ).

    τ = 1 is Balanced Softmax (log N_i and the log prior differ by a constant, which the softmax
    ignores); other τ give Menon et al.'s logit-adjusted loss.
    """
    return F.cross_entropy(logits.float() + adjustment, y, reduction=reduction)


def kl_rows(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits_p) ‖ softmax(logits_q)) per row: the TRADES/MART robustness term."""
    log_p = F.log_softmax(logits_p.float(), dim=1)
    log_q = F.log_softmax(logits_q.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)
