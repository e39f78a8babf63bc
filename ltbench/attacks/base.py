"""What every attack shares: eval mode restored afterwards, [0, 1] in and out, autocast on CUDA.

An attack is a callable ``attack(model, x, y) -> x_adv``. ``Attack.__call__`` puts the model in
eval mode, freezes parameter gradients for the duration, and restores both afterwards, whatever
happens inside; subclasses implement :meth:`Attack.perturb` and must keep their iteration loop free
of host synchronisation (no ``.item()``, no Python branches on tensor values).

Contract of every attack (checked by ``tests/test_attacks.py`` for each one): the returned
points lie in the L∞ ε-ball around ``x`` and in [0, 1]; with ε = 0 they are ``x`` itself; a sample
the model already misclassifies is returned unchanged (so robust accuracy never exceeds clean
accuracy, sample by sample).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (the sum keeps each sample's gradient independent of batch size)."""
    return F.cross_entropy(logits.float(), y, reduction="sum")


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini–Wagner margin, summed: max_{j≠y} z_j − z_y (Carlini & Wagner, S&P 2017, Eq. for f₆)."""
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (other - true).sum()


def expand_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample boolean ``mask`` (N,) shaped to broadcast against ``like`` (N, …)."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA, nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Arg-max labels of ``model`` on ``x`` without gradient (bf16 autocast on CUDA)."""
    with autocast_for(x.device):
        return model(x).argmax(1)


@contextlib.contextmanager
def attack_mode(model: nn.Module):
    """Eval mode and frozen parameters inside; the previous mode and flags restored afterwards."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


class Attack:
    """Base class: subclasses implement ``perturb(model, x, y)`` in eval mode.

    A subclass registered with ``@register_attack("stem")`` (ltbench/registry.py) is an attack by
    name: its name grammar is the stem, then the step count K when ``takes_steps`` (``pgd20``), then
    optionally ``@EPS`` when ``takes_budget`` (``pgd20@0.05``); :meth:`from_name` builds it from the
    parsed name (ltbench/attacks/factory.py). Adding an attack is one file in ``ltbench/attacks/``.
    """

    name = "attack"  # the registered stem (set by @register_attack)
    label = "attack"  # how warnings and tables call it: "PGD", "logit-scaled PGD"
    takes_steps = False  # the name carries a step count K ≥ 1: pgdK
    takes_budget = True  # the name may carry its own budget: pgd20@0.05

    def __init__(self, eps: float):
        self.eps = float(eps)

    @classmethod
    def grammar(cls) -> str:
        """How a name of this attack is spelled: ``pgdK``, ``fgsm``, ``clean``."""
        return f"{cls.name}K" if cls.takes_steps else cls.name

    @classmethod
    def from_name(cls, steps: Optional[int], eps: float, step: float, *, seed: int = 0,
                  batch_size: int = 250) -> "Attack":
        """The attack a parsed name stands for, at budget ``eps`` (the name's own ``@EPS`` already
        applied) and PGD step ``step``; ``steps`` is the name's K (None without one). ``seed`` and
        ``batch_size`` serve attacks with their own seeding and batching (AutoAttack)."""
        return cls(eps)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with attack_mode(model):
            x_adv = self.perturb(model, x.detach(), y)
        return x_adv.detach()

    def describe(self) -> dict:
        """The settings that define this attack, recorded next to its numbers in ``result.json``."""
        return {"name": self.name, "eps": self.eps}


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the L∞ ε-ball around x intersected with [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)
