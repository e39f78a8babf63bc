"""AutoAttack (Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of
Diverse Parameter-free Attacks", ICML 2020) through the ``pyautoattack`` package.

The standard version runs APGD-CE, APGD-T (targeted DLR), FAB-T and Square in sequence, each on
the points the previous ones left robust. Two adjustments to the package's defaults:

* ``n_target_classes = min(9, C − 1)`` for APGD-T and FAB-T after construction: the package
  hard-codes 9, which breaks datasets with fewer than ten classes. With C ≤ 3 the targeted DLR loss
  is undefined (it reads the third-largest and fourth-largest logits), so APGD-T (C < 4) and the
  DLR sub-attacks (C < 3) are dropped and the dropped names are recorded.
* The seed comes from the job seed, and the package's reseeding of the global generator is
  confined (:func:`torch.random.fork_rng`), so evaluation does not change the caller's random state.

The package's own resumable state (``state_path``) cannot resume in pyautoattack 0.2.0: the saved
attack list is read back as a list and compared with a set, so every restore is refused, and the
restore path leaves the adversarial labels unbound. Resumption is therefore done one level up, by
:mod:`ltbench.engine.evaluate`, which runs AutoAttack on fixed chunks of the test set and records
each finished chunk in a state file in the job folder. Each call reseeds, so a resumed evaluation
gives exactly the numbers of an uninterrupted one.

Warnings the package logs (zero gradients, Square beating the gradient attacks, randomised
defence…) are gradient-masking signs: they are collected in :attr:`AutoAttack.warnings` instead of
being printed, and the evaluation copies them into ``result["warnings"]``.
"""
from __future__ import annotations

import logging
import re
from typing import Optional, Sequence

import torch
from torch import nn

from ltbench.attacks.base import Attack, autocast_for, project
from ltbench.registry import register_attack

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")


class _FloatLogits(nn.Module):
    """Runs the wrapped model under bf16 autocast on CUDA and hands AutoAttack float32 logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_for(x.device):
            return self.model(x).float()


class _Collect(logging.Handler):
    """Keeps the package's warnings, one per kind (numbers masked), with how often each came."""

    def __init__(self, seen: dict[str, list]):
        super().__init__(logging.WARNING)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        entry = self.seen.setdefault(re.sub(r"\d+(\.\d+)?", "#", msg), [msg, 0])
        entry[1] += 1


def usable_attacks(attacks: Sequence[str], num_classes: int) -> tuple[list[str], list[str]]:
    """Split ``attacks`` into those defined for ``num_classes`` classes and those that are not."""
    keep, dropped = [], []
    for a in attacks:
        needs = 4 if a == "apgd-t" else 3 if a == "apgd-dlr" else 2
        (keep if num_classes >= needs else dropped).append(a)
    return keep, dropped


@register_attack("aa")
class AutoAttack(Attack):
    """AutoAttack, standard version: APGD-CE, APGD-T, FAB-T, Square (Croce & Hein, ICML 2020).

    L∞; ``version='standard'`` by default, or ``'custom'`` with an ``attacks`` list.

    ``iterations`` and ``target_classes`` (custom use, e.g. fast tests) override the iteration
    count of APGD / FAB and the query budget of Square, and cap the number of target classes of
    APGD-T / FAB-T; leave them ``None`` for the published settings.
    """

    label = "AutoAttack"

    @classmethod
    def from_name(cls, steps, eps, step, *, seed=0, batch_size=250):
        return cls(eps, seed=seed, batch_size=batch_size)

    def __init__(self, eps: float, *, version: str = "standard", attacks: Optional[Sequence[str]] = None,
                 seed: int = 0, batch_size: int = 250, iterations: Optional[int] = None,
                 target_classes: Optional[int] = None):
        super().__init__(eps)
        if version != "custom" and attacks is not None:
            raise ValueError("an attack list needs version='custom'")
        self.version = version
        self.attacks = list(attacks) if attacks is not None else list(STANDARD)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.iterations = iterations
        self.target_classes = target_classes
        self._seen: dict[str, list] = {}  # warning kind → [first message, count]
        self.dropped: list[str] = []
        self.n_target_classes: Optional[int] = None

    def _build(self, model: nn.Module, num_classes: int, device: torch.device):
        from pyautoattack import AutoAttack as _PackageAutoAttack

        keep, self.dropped = usable_attacks(self.attacks, num_classes)
        aa = _PackageAutoAttack(_FloatLogits(model), eps=self.eps, norm="Linf", device=device, seed=self.seed,
                                version=self.version, attacks=self.attacks if self.version == "custom" else None)
        aa.verbose = False
        aa.attacks_to_run = keep
        self.n_target_classes = min(9, num_classes - 1, self.target_classes or 9)
        aa.apgd_targeted.n_target_classes = self.n_target_classes
        aa.fab.n_target_classes = self.n_target_classes
        if self.iterations is not None:
            aa.apgd.n_iter = aa.apgd_targeted.n_iter = aa.fab.n_iter = int(self.iterations)
            aa.square.n_queries = int(self.iterations)
        return aa

    def perturb(self, model, x, y):
        with torch.no_grad(), autocast_for(x.device):
            num_classes = model(x[:1]).shape[1]
        aa = self._build(model, num_classes, x.device)
        if not aa.attacks_to_run:
            return x.clone()
        logger = logging.getLogger("auto-attack")
        handler = _Collect(self._seen)
        propagate = logger.propagate
        logger.addHandler(handler)
        logger.propagate = False
        devices = [x.device] if x.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=self.batch_size)
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate
        # Guard the contract against rounding in the package's own projections.
        return project(x, x_adv.to(x.device), self.eps)

    @property
    def warnings(self) -> list[str]:
        """The package's warnings so far, each kind once: ``"AutoAttack: <message> (N times)"``."""
        return [f"AutoAttack: {msg}" + (f" ({n} times)" if n > 1 else "") for msg, n in self._seen.values()]

    def describe(self):
        d = {"name": self.name, "eps": self.eps, "version": self.version, "attacks": list(self.attacks),
             "seed": self.seed, "norm": "Linf"}
        if self.n_target_classes is not None:
            d["n_target_classes"] = self.n_target_classes
        if self.dropped:
            d["dropped"] = list(self.dropped)
        if self.iterations is not None:
            d["iterations"] = self.iterations
        if self.target_classes is not None:
            d["target_classes"] = self.target_classes
        return d
