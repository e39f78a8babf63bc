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



def faal_weights_reference(margins: list[float], labels: list[int], num_classes: int, r: float) -> list[float]:
    """FAAL's class weights as the authors' ``DAW`` problem states them, solved by a generic solver
    (scipy's SLSQP, float64): maximise Σ_b w[y_b]·m[y_b] over the b of the batch, subject to
    Σ_c w_c = 1, w ≥ 0 and Σ_c u_c log(u_c / w_c) ≤ r with u_c = 1/C."""
    import numpy as np
    from scipy.optimize import minimize

    C = num_classes
    a = np.zeros(C)
    for m, c in zip(margins, labels):
        a[c] += m
    u = np.full(C, 1.0 / C)
    res = minimize(lambda w: -a @ w, u, jac=lambda w: -a, method="SLSQP", bounds=[(1e-9, 1.0)] * C,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(C)},
                                {"type": "ineq", "fun": lambda w: r - (u * np.log(u / w)).sum(),
                                 "jac": lambda w: u / w}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    assert res.success, res.message
    return res.x.tolist()
