"""FAAL: Zhang, Zhang, Mu, Huang, Ruan, "Towards Fairness-Aware Adversarial Learning", CVPR 2024
(arXiv 2402.17729; code TrustAI/FAAL).

FAAL turns adversarial training's min-max into a min-max-max: between the attack (the inner max
over perturbations) and the model update (the min over θ), a middle max picks the worst
distribution over the classes within a KL ball around the uniform one, the paper's class-wise
distributionally adversarial weights (CDAW). As the authors' code computes it, per batch (B images,
n_c of class c, C classes):

    m_c = mean over the batch's images of class c of  max_{j≠y} p_j(x') − p_y(x')
          (the margin of the softmax on the adversarial example, the model in train mode)
    w = argmax_{w in the simplex}  Σ_c n_c · m_c · w_c   s.t.  KL(u ‖ w) = Σ_c u_c log(u_c / w_c) ≤ r,  u = 1/C
    loss = (C / B) · Σ_b w_{y_b} · ℓ_b

w held fixed in the update (their solver's output is a constant), so with w = u the loss is the
plain batch mean. ``base`` chooses ℓ and its attack: ``at`` (default, FAAL_AT) ℓ = CE(f(x'), y),
PGD on the cross-entropy from the uniform start; ``trades`` (FAAL_TRADES) ℓ = CE(f(x), y) +
β·KL(f(x) ‖ f(x')), TRADES' attack and start. r = 0.5, the authors' ``--scale`` in every run of
their scripts. The paper's headline use is fine-tuning a trained robust model for two epochs
(their scripts: learning rate 0.01, ×0.1 after the first epoch): in ltbench, ``--init-from`` a
finished job with ``--epochs 2 --lr 0.01`` and ``lr_milestones = [0.5]`` (a config file or a
preset's ``per_method``, as FRL's); from scratch, FAAL trains like any other method.

The middle max is a convex programme the authors hand to cvxpy (ECOS, else MOSEK, else SCS) on the
host every step. Here it is solved on the device from its optimality conditions: with a_c = n_c·m_c
and A = max_c a_c, the maximiser is w_c(s) ∝ u_c / (A − a_c + s) for the s > 0 at which
KL(u ‖ w(s)) = r (KL falls from ∞ to 0 as s grows), found by 4 rounds of 64 candidates on log s
(a few batched operations each, no host read; to 10⁻⁶ of the bracket [10⁻⁶, 10⁶]·(A − min a)).

Departures from the authors' code / paper:

* the solver (above): the same optimum, to the solvers' tolerance (checked against a generic
  constrained solver in tests/test_faal.py; outside the repository, against the authors' ``DAW``
  class run with cvxpy/ECOS on 60 batches: weights within 4·10⁻⁷, the loss within 4·10⁻⁷ relative);
* any number of classes (their margin reshapes to 10 classes);
* no validation-based checkpoint choice (their script keeps the epoch best on a test-set subset;
  ltbench evaluates the last epoch unless the job sets ``select_best``);
* the paper's text could not be read here (only its abstract): the equations above are written
  from the authors' code (``FAAL.py``, ``ft_prn.py``), so no paper equation numbers are cited.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.method import TradesOrPgdAttack
from ltbench.losses import kl_rows
from ltbench.registry import register_method

LOG_S = (math.log(1e-6), math.log(1e6))  # the search bracket of log s, relative to the spread of a
GRID, ROUNDS = 64, 4  # each round splits the bracket into 64: 4 rounds leave it 64⁻⁴ of its width


@dataclass
class FAALConfig:
    """FAAL (Zhang et al., CVPR 2024): ``r``, the KL radius around the uniform class distribution
    (the authors' 0.5); ``base`` at (FAAL_AT, default) or trades (FAAL_TRADES); TRADES' β (6) and
    Gaussian start σ (0.001) for ``base = trades``."""

    r: float = 0.5
    base: str = "at"
    beta: float = 6.0
    start_std: float = 0.001


def softmax_margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j≠y} p_j − p_y per row, p = softmax(logits): the authors' ``cw`` on probabilities."""
    p = torch.softmax(logits.float(), 1)
    p_y = p.gather(1, y[:, None])[:, 0]
    others = p.scatter(1, y[:, None], -1.0)
    return others.max(1).values - p_y


def class_weights(scores: torch.Tensor, r: float) -> torch.Tensor:
    """argmax_w Σ_c a_c w_c over the simplex with KL(u ‖ w) ≤ r, u uniform: w_c ∝ 1 / (A − a_c + s),
    A = max a, s > 0 the smallest with KL(u ‖ w(s)) ≤ r, searched on log s (no host read) in float64:
    near r = 0 the float32 rounding of the KL would let w stray ~1e-4 from uniform."""
    a = scores.detach().double()
    C = a.numel()
    gap = a.max() - a  # ≥ 0, 0 at the maximiser
    spread = gap.max() + 1e-12
    fractions = torch.linspace(0.0, 1.0, GRID + 1, dtype=a.dtype, device=a.device)[1:]

    def weights(log_s):  # (K,) → (K, C)
        inv = 1.0 / (gap + spread * torch.exp(log_s)[:, None])
        return inv / inv.sum(1, keepdim=True)

    lo = torch.full((), LOG_S[0], dtype=a.dtype, device=a.device)  # s small: w on the maximiser, KL large
    hi = torch.full((), LOG_S[1], dtype=a.dtype, device=a.device)  # s large: w near uniform, KL near 0
    for _ in range(ROUNDS):
        candidates = lo + (hi - lo) * fractions  # ascending, the last is hi
        kl = -(torch.log(C * weights(candidates))).mean(1)  # Σ_c (1/C) log((1/C) / w_c)
        inside = kl <= r
        first = inside.int().argmax()  # the smallest candidate inside the ball (0 when none is)
        found = inside.any()
        # index_select, not candidates[first]: indexing by a 0-dim CUDA tensor reads it on the host
        below = candidates.index_select(0, (first - 1).clamp_min(0).view(1))[0]
        lo = torch.where(found & (first > 0), below, torch.where(found, lo, hi))
        hi = torch.where(found, candidates.index_select(0, first.view(1))[0], hi)
    return weights(hi.view(1))[0].to(scores.dtype)


@register_method("faal")
class FAAL(TradesOrPgdAttack):
    """FAAL (Zhang et al., CVPR 2024): AT whose loss weighs the classes by the worst class distribution in a KL ball, per batch."""

    Config = FAALConfig

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        if config.base not in ("at", "trades"):
            raise LtbenchError(f"faal.base must be 'at' or 'trades', got {config.base!r}")
        if not config.r >= 0.0:
            raise LtbenchError(f"faal.r is a KL radius ≥ 0, got {config.r}")

    def train_loss(self, model, x, x_adv, y, ctx):
        logits_adv = model(x_adv)
        if self.config.base == "trades":
            logits = model(x)
            per_sample = F.cross_entropy(logits.float(), y, reduction="none") + self.config.beta * kl_rows(logits, logits_adv)
        else:
            per_sample = F.cross_entropy(logits_adv.float(), y, reduction="none")
        C = self.num_classes
        margins = softmax_margins(logits_adv.detach(), y)
        # Σ_b w_{y_b} m_{y_b} = Σ_c n_c·m_c·w_c: the class's summed margin, n_c·m_c
        w = class_weights(margins.new_zeros(C).index_add_(0, y, margins), self.config.r)
        return (C / len(y)) * (w[y] * per_sample).sum(), logits_adv
