"""FAAL: Zhang, Zhang, Mu, Huang, Ruan, "Towards Fairness-Aware Adversarial Learning", CVPR 2024
(arXiv 2402.17729). No public code was found; this module is written from the paper's
formulation as far as it could be read here (see the departures paragraph).

FAAL turns adversarial training's min-max into a min-max-max: between the attack (the inner max
over perturbations) and the model update (the min over θ), a middle max picks the worst
distribution over the classes in a KL ball around the nominal one, the paper's class-wise
distributionally adversarial weights (CDAW):

    min_θ  max_{q ∈ Q}  Σ_c q_c · L_c(θ),    L_c(θ) = mean over the batch's images of class c of
                                             max_{‖δ‖∞ ≤ ε} ℓ(f_θ(x + δ), y),
    Q = { q in the simplex : KL(q ‖ p̂) ≤ ρ },  p̂ = the batch's class frequencies.

With p̂ as the centre, ρ = 0 gives q = p̂ and Σ_c p̂_c L_c is the plain batch mean: conventional
adversarial training, of which FAAL is the generalisation. The middle max is a KL-constrained
linear programme with the known solution (exponential tilting)

    q_c(τ) ∝ p̂_c · exp(L_c / τ),   τ > 0 the smallest with KL(q(τ) ‖ p̂) ≤ ρ,

found per batch by a search on log τ (KL(q(τ) ‖ p̂) falls as τ grows), a fixed number of rounds
on the device, so the step reads nothing back. q is held fixed in the update (Danskin: the
gradient of the max is Σ_c q*_c ∇L_c), i.e. the loss is Σ_b q_{y_b} / n_{y_b} · ℓ_b over the batch.
``base`` chooses ℓ and its attack: ``at`` (default) cross-entropy on the PGD example, PGD on the
cross-entropy from the uniform start (FAAL on PGD-AT); ``trades`` CE(f(x), y) + β·KL(f(x) ‖ f(x'))
with TRADES' attack (FAAL on TRADES). FAAL also fine-tunes a trained model (the paper: two
epochs); in ltbench that is ``--init-from`` a finished job with ``--epochs 2``.

Departures from the authors' code / paper: there is no authors' code, and the paper's method
section could not be read here (only its abstract and summaries), so these are ltbench's choices:

* the radius ρ = 0.5 nats (ltbench's default; the paper's value could not be checked) and the
  centre p̂ = the batch's class frequencies (so that ρ = 0 is conventional AT, as the paper's
  "generalisation of conventional AT" requires; on balanced data, the paper's setting, p̂ is about
  uniform);
* the middle max solved per batch by a search on log τ over [10⁻⁴, 10⁴] (4 rounds of 64
  candidates, to 10⁻⁶ of the bracket), where the paper may use another solver; classes absent from
  the batch get q_c = 0;
* the PGD-AT base by default; the paper pairs FAAL with several AT methods.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.method import TradesOrPgdAttack, kl_rows
from ltbench.registry import register_method

LOG_TAU = (math.log(1e-4), math.log(1e4))  # the search bracket for log τ
GRID, ROUNDS = 64, 4  # each round splits the bracket into 64: 4 rounds leave it 64⁻⁴ of its width


@dataclass
class FAALConfig:
    """FAAL (Zhang et al., CVPR 2024): ``rho``, the KL radius of the class distributions the middle
    max may pick (0.5, ltbench's choice); ``base`` at (PGD-AT, default) or trades; TRADES' β (6) and
    Gaussian start σ (0.001) for ``base = trades``."""

    rho: float = 0.5
    base: str = "at"
    beta: float = 6.0
    start_std: float = 0.001


def worst_class_distribution(class_losses: torch.Tensor, prior: torch.Tensor, rho: float) -> torch.Tensor:
    """argmax_q Σ_c q_c L_c over the simplex with KL(q ‖ prior) ≤ ρ: q ∝ prior · exp(L / τ) at the
    smallest τ inside the ball (KL falls as τ grows), searched on log τ by rounds of 64 candidates
    at once (a few batched operations per round, no host read); classes with prior 0 get 0."""
    present = prior > 0
    log_prior = torch.where(present, prior.clamp_min(1e-30).log(), -math.inf)
    losses = torch.where(present, class_losses.detach().float(), 0.0)
    fractions = torch.linspace(0.0, 1.0, GRID + 1, device=prior.device)[1:]

    def tilt(log_tau):  # (K,) → (K, C)
        return torch.softmax(log_prior + losses * torch.exp(-log_tau)[:, None], 1)

    lo = torch.full((), LOG_TAU[0], device=prior.device)  # τ small: q near the worst class, KL large
    hi = torch.full((), LOG_TAU[1], device=prior.device)  # τ large: q near the prior, KL near 0
    for _ in range(ROUNDS):
        candidates = lo + (hi - lo) * fractions  # ascending, the last is hi
        q = tilt(candidates)
        kl = torch.where(present, q * (q.clamp_min(1e-30).log() - log_prior.clamp_min(-1e30)), 0.0).sum(1)
        inside = kl <= rho
        first = inside.int().argmax()  # the smallest candidate inside the ball (0 when none is)
        found = inside.any()
        lo = torch.where(found & (first > 0), candidates[(first - 1).clamp_min(0)], torch.where(found, lo, hi))
        hi = torch.where(found, candidates[first], hi)
    return tilt(hi.view(1))[0]


@register_method("faal")
class FAAL(TradesOrPgdAttack):
    """FAAL (Zhang et al., CVPR 2024): AT whose loss weighs the classes by the worst class distribution in a KL ball, per batch."""

    Config = FAALConfig

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        if config.base not in ("at", "trades"):
            raise LtbenchError(f"faal.base must be 'at' or 'trades', got {config.base!r}")
        if not config.rho >= 0.0:
            raise LtbenchError(f"faal.rho is a KL radius ≥ 0, got {config.rho}")

    def train_loss(self, model, x, x_adv, y, ctx):
        logits_adv = model(x_adv)
        if self.config.base == "trades":
            logits = model(x)
            per_sample = F.cross_entropy(logits.float(), y, reduction="none") + self.config.beta * kl_rows(logits, logits_adv)
        else:
            per_sample = F.cross_entropy(logits_adv.float(), y, reduction="none")
        C = self.num_classes
        n = per_sample.new_zeros(C).index_add_(0, y, torch.ones_like(per_sample))
        class_losses = per_sample.new_zeros(C).index_add_(0, y, per_sample.detach()) / n.clamp_min(1.0)
        q = worst_class_distribution(class_losses, n / len(y), self.config.rho)
        weights = (q / n.clamp_min(1.0))[y]  # Σ_c q_c L_c as a sum over the batch
        return (weights * per_sample).sum(), logits_adv
