"""Projected gradient descent under L∞ (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018, Eq. (2.1)–(2.2)).

``x_{t+1} = Π_{B_ε(x) ∩ [0,1]}(x_t + α · sign(∇ₓ L(f(x_t), y)))`` from a random start. The loss is
pluggable (cross-entropy, CW margin, or a training method's own inner loss), so training and
evaluation share this one implementation:

* :func:`pgd_perturb` — the last iterate; what adversarial training uses (the inner maximisation).
  Its ε and step may be per-sample budgets (a tensor of shape (B,), broadcast over the image), for
  training methods whose budget depends on the class (RobustLT's adaptive ε); a float keeps the
  scalar path exactly as it was.
* :func:`pgd_search` — for evaluation: per sample, the first iterate the model misclassifies (the
  worst-case bookkeeping of Croce & Hein's APGD, ICML 2020), else the last one. A sample counts as
  broken if *any* iterate breaks it, so on a fixed seed more steps can never give a weaker attack.
* :class:`PGD` — the evaluation attack ``pgdK``: ``restarts`` runs of :func:`pgd_search`, the clean
  input counted as iterate 0, per-sample worst case over restarts; all without host syncs. By name
  its step follows :func:`reaching_step` (2.5·ε/K when K · step < ε).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

from ltbench.attacks.base import Attack, LossFn, autocast_for, ce_loss, expand_mask, predict_labels, project
from ltbench.registry import register_attack

StartFn = Callable[[torch.Tensor], torch.Tensor]


def _start(x: torch.Tensor, eps: float, start: Optional[StartFn]) -> torch.Tensor:
    delta = torch.empty_like(x).uniform_(-eps, eps) if start is None else start(x)
    return project(x, x + delta, eps) if eps > 0 else x.clone()


Budget = Union[float, torch.Tensor]


def per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample budget (B,) shaped (B, 1, …) to broadcast against ``like`` (B, …), in its dtype."""
    return value.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def uniform_start(x: torch.Tensor, eps: Budget) -> torch.Tensor:
    """δ₀ uniform in the ε-ball: for a float ε exactly the draw PGD-AT always made; for a per-sample
    ε (B,) a uniform draw in [−1, 1] scaled by each sample's ε."""
    if isinstance(eps, torch.Tensor):
        return torch.empty_like(x).uniform_(-1.0, 1.0).mul_(per_sample(eps, x))
    return torch.empty_like(x).uniform_(-eps, eps)


def _pgd_per_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, step: Budget,
                    steps: int, loss_fn: LossFn, start: Optional[StartFn], clip_start: bool = True) -> torch.Tensor:
    """:func:`pgd_perturb` with per-sample ε (and step): the same iteration, the bounds and the step
    broadcast per sample. No host sync (a zero ε projects onto x itself, no branch needed)."""
    e = per_sample(eps, x)
    s = per_sample(step, x) if isinstance(step, torch.Tensor) else step
    delta = uniform_start(x, eps) if start is None else start(x)
    lo, hi = (x - e).clamp_(0.0, 1.0), (x + e).clamp_(0.0, 1.0)
    x_adv = torch.clamp(x + delta, lo, hi) if clip_start else x + torch.clamp(delta, -e, e)
    return _ascend(model, x_adv, y, lo, hi, s, steps, loss_fn)


def _ascend(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
            step, steps: int, loss_fn: LossFn) -> torch.Tensor:
    """``steps`` signed-gradient steps from ``x_adv``, each clamped to [lo, hi] (the projection onto
    B_ε(x) ∩ [0, 1] as one clamp between precomputed bounds). ``step`` is a float, or a tensor
    broadcast per sample."""
    amp = autocast_for(x_adv.device)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with amp:
            logits = model(x_adv)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.clamp(x_adv.detach().addcmul_(grad.sign_(), step) if isinstance(step, torch.Tensor)
                            else x_adv.detach().add_(grad.sign_(), alpha=step), lo, hi)
    return x_adv.detach()


def pgd_perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: Budget, step: Budget, steps: int,
                loss_fn: LossFn = ce_loss, start: Optional[StartFn] = None, clip_start: bool = True) -> torch.Tensor:
    """Run ``steps`` PGD iterations from ``x + start(x)`` (uniform in the ε-ball by default).

    Returns the last iterate. The model's mode is left alone (callers choose it); only the input
    gradient is computed. ``eps`` (and ``step``) may be a (B,) tensor: one budget per sample.
    ``clip_start=False`` keeps the start inside the ε-ball but not inside [0, 1] (the first forward
    pass may see pixels outside the image range, as in the AT-BSL authors' script); the
    iterates are clipped to [0, 1] either way.
    """
    if isinstance(eps, torch.Tensor) or isinstance(step, torch.Tensor):
        eps = eps if isinstance(eps, torch.Tensor) else torch.full((len(x),), float(eps), device=x.device)
        return _pgd_per_sample(model, x, y, eps, step, steps, loss_fn, start, clip_start)
    if clip_start:
        x_adv = _start(x, eps, start)
    else:
        delta = torch.empty_like(x).uniform_(-eps, eps) if start is None else start(x)
        x_adv = x + delta.clamp_(-eps, eps)
    # The projection onto B_ε(x) ∩ [0, 1] as one clamp between precomputed bounds: three
    # elementwise ops per iteration instead of eight (same numbers as ``project``).
    lo, hi = (x - eps).clamp_(0.0, 1.0), (x + eps).clamp_(0.0, 1.0)
    return _ascend(model, x_adv, y, lo, hi, step, steps, loss_fn)


def pgd_search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int,
               loss_fn: LossFn = ce_loss, start: Optional[StartFn] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD that keeps, per sample, the first misclassified iterate; returns ``(x_adv, fooled)``.

    Iterates ``x_0 … x_steps`` are all checked: the logits computed for each gradient step double
    as the check of the iterate they were computed on, and one extra forward pass checks the last.
    ``fooled`` is a boolean (N,) tensor on the device (no host sync anywhere).
    """
    x_adv = _start(x, eps, start)
    best = x_adv.clone()
    fooled = torch.zeros(len(y), dtype=torch.bool, device=x.device)
    amp = autocast_for(x.device)
    lo, hi = (x - eps).clamp_(0.0, 1.0), (x + eps).clamp_(0.0, 1.0)  # B_ε(x) ∩ [0, 1], as in pgd_perturb
    for _ in range(steps):
        x_in = x_adv.requires_grad_(True)
        with amp:
            logits = model(x_in)
        (grad,) = torch.autograd.grad(loss_fn(logits, y), x_in)
        x_adv = x_in.detach()
        wrong = logits.detach().argmax(1) != y
        best = torch.where(expand_mask(wrong & ~fooled, x), x_adv, best)
        fooled |= wrong
        x_adv = torch.clamp(x_adv + step * grad.sign_(), lo, hi)
    wrong = predict_labels(model, x_adv) != y
    best = torch.where(expand_mask(fooled, x), best, x_adv)
    return best, fooled | wrong


REACH_FACTOR = 2.5  # the step of K iterations that cannot reach the boundary becomes 2.5·ε/K


def reaching_step(eps: float, step: float, steps: int) -> float:
    """The step of a K-step attack by name: ``step`` if K · step ≥ ε, else 2.5 · ε / K.

    K steps of size ``step`` move a coordinate by at most K · step; below ε the attack cannot reach
    the boundary of the ε-ball, so it measures a smaller budget than it reports (and looks weaker
    than FGSM, a false gradient-masking sign). 2.5 · ε / K lets the K steps cross the ball's
    diameter 2ε from any start with room to spare; it is the rule Madry et al. (ICLR 2018) give
    for their attack's step, and the step of the per-epoch validation attack
    (``attack_step`` in ltbench/engine/validation.py). A step that reaches is kept as it is.
    """
    if steps * step >= eps * (1 - 1e-9):  # the tolerance keeps 4 · (2/255) ≥ 8/255 under rounding
        return step
    return REACH_FACTOR * eps / steps


@register_attack("pgd")
class PGD(Attack):
    """K-step L∞ PGD on cross-entropy, random start (Madry et al., ICLR 2018, Eq. (2.1)–(2.2)).

    ``steps`` iterations of size ``step``, ``restarts`` random starts. The returned point of each
    sample is the first misclassified point found (the clean input, an iterate of any restart),
    else the last iterate of the last restart. ``random_start=False`` starts at ``x`` itself (then
    restarts repeat the same deterministic run). By name (``pgd20``), the step follows
    :func:`reaching_step`; the record then keeps the step it was given as ``step_given``.
    """

    label = "PGD"
    takes_steps = True
    step_given: Optional[float] = None  # the job's step, when reaching_step replaced it

    @classmethod
    def from_name(cls, steps, eps, step, **_):
        attack = cls(eps, reaching_step(eps, step, steps), steps=steps)
        if attack.step != float(step):
            attack.step_given = float(step)
        return attack

    def __init__(self, eps: float, step: float, steps: int = 20, restarts: int = 1,
                 loss_fn: LossFn = ce_loss, random_start: bool = True):
        super().__init__(eps)
        self.step, self.steps, self.restarts = float(step), int(steps), int(restarts)
        if self.steps < 1 or self.restarts < 1:
            raise ValueError(f"PGD needs at least one step and one restart, got {steps} and {restarts}")
        self.loss_fn = loss_fn
        self.random_start = random_start

    def perturb(self, model, x, y):
        if self.random_start:
            start = None
            best = x.clone()  # iterate 0: a sample the model already gets wrong stays as it is
            fooled = predict_labels(model, x) != y
        else:
            start = torch.zeros_like  # the first iterate is x itself: pgd_search checks it
            best, fooled = None, None
        for _ in range(self.restarts):
            x_adv, fooled_now = pgd_search(model, x, y, eps=self.eps, step=self.step, steps=self.steps,
                                           loss_fn=self.loss_fn, start=start)
            if best is None:
                best, fooled = x_adv, fooled_now
            else:
                best = torch.where(expand_mask(fooled, x), best, x_adv)
                fooled = fooled | fooled_now
        return best

    def describe(self):
        d = {"name": self.name, "eps": self.eps, "step": self.step, "steps": self.steps,
             "restarts": self.restarts, "random_start": self.random_start,
             "loss": getattr(self.loss_fn, "__name__", type(self.loss_fn).__name__)}
        if self.step_given is not None:
            d["step_given"] = self.step_given
            d["step_rule"] = "2.5·ε/K, as K·step_given < ε"
        return d
