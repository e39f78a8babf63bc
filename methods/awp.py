"""AWP: Wu, Xia, Wang, "Adversarial Weight Perturbation Helps Robust Generalization", NeurIPS 2020.

A modifier (``'pgd-at +awp'``, ``'trades +awp'``, ``'reat +awp'`` …): before each training step, one
ascent step on the weights from the method's own outer loss on x_adv, scaled per layer (Sec. 4,
Eq. (8) and Algorithm 1):

    v_l = γ · ‖w_l‖ · ∇_{w_l} L(w; x_adv) / ‖∇_{w_l} L(w; x_adv)‖      (every weight matrix/kernel l)

then the step is taken at the perturbed weights w + v (the gradient of the method's loss at w + v,
the optimiser's update applied to w + v) and v is removed after it: w ← (w + v − update) − v.

As in the authors' code (csdongxian/AWP, ``diff_in_weights``): only parameters named ``*weight*``
with more than one dimension are perturbed (convolutions, linear layers; not BatchNorm or biases);
the ascent gradient is one plain step on a proxy copy in train mode whose BatchNorm statistics are
thrown away — here the gradient is taken on the model itself and its BatchNorm buffers are restored
afterwards, which is the same (the proxy's SGD learning rate cancels in the per-layer scaling; the
authors' 1e-20 guards the norm here too). RobustLT's re-implementation (core/methods/awp.py there)
takes the ascent with the training optimiser itself (momentum, weight decay); this one follows the
AWP authors.

Defaults are the AT-AWP setting (γ = 0.01, no warm-up: ``train_cifar10.py`` of the AWP release).
For TRADES-AWP the authors use γ = 0.005 and start AWP at epoch 10 (1-based, ``epoch >= 10`` in
``trades_AWP/train_trades_cifar.py``), i.e. ``warmup = 9``: TRADES declares these as its
``modifier_defaults``, so ``'trades +awp'`` runs them. RobustLT's configs use γ = 0.005, warm-up 0
for AT (``--set awp.gamma=0.005``). ``warmup`` is in the authors' 200 epochs and scaled to the job's
(:func:`ltbench.method.resolve_schedules`): 9 of 200 is 1 of 20. The perturbation agrees with the
authors' ``diff_in_weights`` to 1e-7 on the same batch.

Departures from the authors' code: the warm-up is scaled to the job's epochs
(``--absolute-schedules`` keeps it as given); none in the perturbation itself (RobustLT's
re-implementation, which takes the ascent with the training optimiser, is not followed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ltbench.attacks.base import autocast_for
from ltbench.method import epoch_field
from ltbench.modifier import Modifier
from ltbench.registry import register_modifier

NORM_GUARD = 1e-20  # the authors' EPS in γ·‖w‖ / (‖Δ‖ + EPS)


@dataclass
class AWPConfig:
    """AWP (Wu et al., NeurIPS 2020): ``gamma`` = γ, the perturbation's size relative to each layer's
    weight norm (AT-AWP 0.01; TRADES-AWP 0.005); ``warmup`` = epochs trained without AWP first, of
    the authors' 200 (scaled to the job's epochs)."""

    gamma: float = 0.01
    warmup: int = epoch_field(0, paper_epochs=200)


def perturbed_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The parameters AWP perturbs: named ``*weight*`` with more than one dimension."""
    return [p for n, p in model.named_parameters() if p.dim() > 1 and "weight" in n]


def awp_perturbation(weights: list[torch.Tensor], grads: list[torch.Tensor], gamma: float) -> list[torch.Tensor]:
    """v_l = γ·‖w_l‖·g_l / (‖g_l‖ + 1e-20), per layer, as device tensors (no host sync)."""
    w_norms = torch._foreach_norm(weights)
    g_norms = torch._foreach_add(torch._foreach_norm(grads), NORM_GUARD)
    scales = torch._foreach_mul(torch._foreach_div(w_norms, g_norms), gamma)
    return torch._foreach_mul(grads, scales)


@register_modifier("awp")
class AWP(Modifier):
    """AWP (Wu et al., NeurIPS 2020): the step taken at weights perturbed by γ·‖w‖ per layer towards the method's loss."""

    Config = AWPConfig

    def __init__(self, config, inner):
        super().__init__(config, inner)
        if config.gamma < 0 or config.warmup < 0:
            from ltbench.errors import LtbenchError

            raise LtbenchError(f"awp.gamma and awp.warmup must be ≥ 0, got {config.gamma} and {config.warmup}")
        self._weights: dict[int, list[torch.Tensor]] = {}

    def _weights_of(self, model):
        key = id(model)
        if key not in self._weights:
            self._weights[key] = perturbed_weights(model)
        return self._weights[key]

    def perturb_weights(self, model, x, x_adv, y, ctx):
        inner = self.inner.perturb_weights(model, x, x_adv, y, ctx)
        if ctx.epoch < self.config.warmup or not self.config.gamma:  # Python values: no host sync
            return None if inner is None else (inner, None)
        weights = self._weights_of(model)
        buffers = [b.clone() for b in model.buffers()]  # the ascent's forward must not move BN statistics
        with autocast_for(x.device):
            loss, _ = self.train_loss(model, x, x_adv, y, ctx)
        grads = torch.autograd.grad(loss, weights)
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
            v = awp_perturbation(weights, list(grads), self.config.gamma)
            torch._foreach_add_(weights, v)
        return (inner, v)

    def restore_weights(self, model, handle):
        inner, v = handle
        if v is not None:
            with torch.no_grad():
                torch._foreach_sub_(self._weights_of(model), v)
        if inner is not None:
            self.inner.restore_weights(model, inner)
