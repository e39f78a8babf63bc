"""Reference implementations the tests check the vectorised code against, written the obvious way."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from methods.reat import first_tail_class


def tail_loss_loop(features: torch.Tensor, labels: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    """REAT's TAIL term, per pair (DESIGN.md "REAT"), as a Python loop over anchors.

    For every tail anchor i and every sample j: s_ij · (w_yi + w_yj) · KL(p_i ‖ q_j) with
    p_i = softmax(f_i) detached, q_j = softmax(f_j), s_ij = −1 for the same class else +1,
    w_c = sqrt(1 / prior_c); averaged over the batch, then over the anchors (0 without anchors).
    """
    f = features if features.dtype == torch.float64 else features.float()
    counts = class_counts.to(f.device, f.dtype)
    w = (counts.sum() / counts).sqrt()
    first_tail = first_tail_class(counts.numel())
    log_q = F.log_softmax(f, dim=1)
    terms = []
    for i in range(len(labels)):
        yi = int(labels[i])
        if yi < first_tail:
            continue
        log_p = F.log_softmax(f[i].detach(), dim=0)
        kl = (log_p.exp() * (log_p - log_q)).sum(1)
        sign = torch.where(labels == yi, -1.0, 1.0).to(f.dtype)
        terms.append((sign * (w[yi] + w[labels]) * kl).mean())
    if not terms:
        return features.sum() * 0.0
    return torch.stack(terms).mean()


def dafa_weights_loop(probs: list[list[float]], labels: list[int], num_classes: int, lam: float) -> list[float]:
    """DAFA's class weights (Lee et al., ICLR 2024) one image and one class pair at a time:
    p_i(j) the mean over the images of class i of their probability of class j (0 for a class
    without images), then W_i = 1 + λ Σ_{j≠i} ([p_i(i) < p_j(j)] p_i(j) p_j(j) − [otherwise] p_j(i) p_i(i))."""
    C = num_classes
    p = [[0.0] * C for _ in range(C)]
    n = [0] * C
    for row, label in zip(probs, labels):
        n[label] += 1
        for j in range(C):
            p[label][j] += row[j]
    p = [[v / n[i] if n[i] else 0.0 for v in p[i]] for i in range(C)]
    weights = []
    for i in range(C):
        w = 1.0
        for j in range(C):
            if j == i:
                continue
            if p[i][i] < p[j][j]:
                w += lam * p[i][j] * p[j][j]
            else:
                w -= lam * p[j][i] * p[i][i]
        weights.append(w)
    return weights


def kl_ball_worst_distribution(losses: list[float], prior: list[float], rho: float) -> list[float]:
    """The maximiser of Σ_c q_c L_c over distributions q with KL(q ‖ prior) ≤ ρ, one float at a time:
    the exponential tilt q_c ∝ prior_c·exp(L_c / τ) at the τ where KL = ρ, found by 200 bisections
    of log τ in float64 (the whole weight on the worst class when even τ → 0 stays inside the ball)."""
    classes = [c for c, p in enumerate(prior) if p > 0]

    def tilt(tau):
        top = max(losses[c] / tau for c in classes)
        e = {c: prior[c] * math.exp(losses[c] / tau - top) for c in classes}
        s = sum(e.values())
        return [e[c] / s if c in e else 0.0 for c in range(len(prior))]

    def kl(q):
        return sum(q[c] * math.log(q[c] / prior[c]) for c in classes if q[c] > 0)

    worst = max(classes, key=lambda c: losses[c])
    if -math.log(prior[worst]) <= rho:
        return [1.0 if c == worst else 0.0 for c in range(len(prior))]
    lo, hi = math.log(1e-8), math.log(1e8)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if kl(tilt(math.exp(mid))) <= rho else (mid, hi)
    return tilt(math.exp(hi))
