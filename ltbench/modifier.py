"""Modifiers: an enhancement that runs on top of *any* method (``reat +robustlt``, ``at-bsl +awp``).

A modifier is a :class:`~ltbench.method.Method` that wraps another one: every hook delegates to the
wrapped method unless the modifier overrides it. RobustLT's adaptive budgets override
:meth:`~ltbench.method.Method.attack_budget`; AWP overrides
:meth:`~ltbench.method.Method.perturb_weights` / :meth:`~ltbench.method.Method.restore_weights`.
Several modifiers nest in the order given (``pgd-at +robustlt +awp``: AWP wraps RobustLT wraps
PGD-AT). Hyper-parameters are a nested ``Config`` dataclass, as for methods, set with
``--set awp.gamma=0.01`` or inline (``'pgd-at +awp --gamma=0.01'``), recorded in ``config.json``
(``modifiers``) and, resolved, in ``result.json``'s ``method_config`` under ``+NAME``.

:func:`parse_spec` reads a study's method argument: ``"reat --no-tail +awp --gamma=0.01"`` is the
method ``reat`` with ``tail=false``, wrapped by ``awp`` with ``gamma=0.01``, labelled
``reat+no-tail+awp+gamma=0.01`` (the job folder's prefix).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ltbench.errors import LtbenchError
from ltbench.method import Method, NoConfig

STATE_PREFIX = "+"  # a modifier's own state keys in the checkpoint: "+NAME.KEY"


class Modifier(Method):
    """Wraps ``inner``; every hook is the inner method's unless a subclass overrides it."""

    Config: type = NoConfig

    def __init__(self, config: Any, inner: Method):
        self.config = config
        self.inner = inner
        self.num_classes = inner.num_classes
        self.class_counts = inner.class_counts

    # --- delegation ------------------------------------------------------------------------
    def attack_start(self, x, ctx):
        return self.inner.attack_start(x, ctx)

    def attack_loss(self, logits_adv, y, ctx):
        return self.inner.attack_loss(logits_adv, y, ctx)

    def attack_budget(self, eps, step, ctx):
        return self.inner.attack_budget(eps, step, ctx)

    def attacks(self, ctx):
        return self.inner.attacks(ctx)

    def train_loss(self, model, x, x_adv, y, ctx):
        return self.inner.train_loss(model, x, x_adv, y, ctx)

    def build_head(self, in_features, num_classes, class_counts):
        return self.inner.build_head(in_features, num_classes, class_counts)

    def perturb_weights(self, model, x, x_adv, y, ctx):
        return self.inner.perturb_weights(model, x, x_adv, y, ctx)

    def restore_weights(self, model, handle):
        self.inner.restore_weights(model, handle)

    def observe(self, logits_adv, y, ctx):
        self.inner.observe(logits_adv, y, ctx)

    def on_epoch_end(self, epoch, stats):
        self.inner.on_epoch_end(epoch, stats)

    # --- state and configuration -------------------------------------------------------------
    def own_state_dict(self) -> dict:
        """The modifier's own state (tensors only); none by default."""
        return {}

    def load_own_state_dict(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        prefix = f"{STATE_PREFIX}{self.registered_name}."
        return {**self.inner.state_dict(), **{prefix + k: v for k, v in self.own_state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        prefix = f"{STATE_PREFIX}{self.registered_name}."
        self.load_own_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        self.inner.load_state_dict({k: v for k, v in state.items() if not k.startswith(prefix)})

    def config_dict(self) -> dict[str, Any]:
        """The wrapped method's resolved configuration plus this modifier's, under ``+NAME``."""
        own = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else {}
        return {**self.inner.config_dict(), f"+{self.registered_name}": own}

    def to(self, device: torch.device) -> "Modifier":
        self.inner.to(device)
        for k, v in list(vars(self).items()):
            if isinstance(v, torch.Tensor) and k != "class_counts":
                setattr(self, k, v.to(device))
        self.class_counts = self.inner.class_counts
        return self


@dataclass
class MethodSpec:
    """One ``--methods`` argument, parsed: the method, its flags, its modifiers and the label."""

    name: str
    overrides: dict[str, str]
    modifiers: dict[str, dict[str, str]]
    label: str | None  # None for a bare method name (the job folder is the method's name)


def parse_spec(spec: str) -> MethodSpec:
    """``"reat --no-tail +awp --gamma=0.01"`` → reat with ``tail=false``, modifier awp with
    ``gamma=0.01``, label ``reat+no-tail+awp+gamma=0.01``.

    ``--no-X`` / ``--X`` / ``--X=V`` set a field of the method, or of the modifier named last
    before them; ``+NAME`` adds a modifier (at most once each). Values stay strings, type-checked
    later against the ``Config`` dataclasses.
    """
    tokens = str(spec).split()
    if not tokens:
        raise LtbenchError("empty method name")
    if tokens[0].startswith(("+", "-")):
        raise LtbenchError(f"{spec!r} should start with a method name, e.g. 'pgd-at +awp'")
    name, overrides, modifiers = tokens[0], {}, {}
    target = overrides
    for tok in tokens[1:]:
        if tok.startswith("+"):
            mod = tok[1:]
            if not mod or mod.startswith(("+", "-")):
                raise LtbenchError(f"modifier {tok!r} in {spec!r} should look like +NAME, e.g. +awp")
            if mod in modifiers:
                raise LtbenchError(f"modifier +{mod} is given twice in {spec!r}")
            target = modifiers[mod] = {}
            continue
        if not tok.startswith("--") or len(tok) < 3:
            raise LtbenchError(f"method flag {tok!r} in {spec!r} should look like --no-KEY, --KEY, --KEY=VALUE "
                               "or +MODIFIER")
        key, sep, value = tok[2:].partition("=")
        if not sep:
            key, value = (key[3:], "false") if key.startswith("no-") else (key, "true")
        target[key.replace("-", "_")] = value
    label = "+".join(t.lstrip("-+") for t in tokens) if len(tokens) > 1 else None
    return MethodSpec(name, overrides, modifiers, label)
