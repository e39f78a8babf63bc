"""The method API: what an adversarial-training method supplies to the engine.

A method is a small class, not a training loop (DESIGN.md, "The method API"). The engine owns the
loop, optimiser, AMP, checkpoints and evaluation; it calls these hooks and never branches on a
method's name. Every hook's default is PGD-AT (Madry et al., ICLR 2018):

* :meth:`Method.attack_start` — random start of the inner maximisation (uniform in the ε-ball);
* :meth:`Method.attack_loss` — the per-batch loss PGD ascends (summed cross-entropy);
* :meth:`Method.train_loss` — the outer loss (cross-entropy on the adversarial logits);
* :meth:`Method.build_head` — an optional replacement classifier head;
* :meth:`Method.observe` / :meth:`Method.on_epoch_end` — statistics kept on the device and turned
  into next epoch's state; state round-trips through ``state_dict``/``load_state_dict``.

Hyper-parameters are a dataclass ``Config`` nested in the class, with the paper's defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ltbench.errors import LtbenchError


@dataclass
class NoConfig:
    """A method without hyper-parameters."""


class BatchContext:
    """What a loss may need about the current batch, computed lazily and at most once.

    ``clean_logits`` are the logits of the clean batch under the model's mode at first access,
    without gradient (TRADES' attack target).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, class_counts: torch.Tensor,
                 eps: float, epoch: int = 0):
        self.model = model
        self.x = x
        self.y = y
        self.class_counts = class_counts
        self.num_classes = class_counts.numel()
        self.eps = eps
        self.epoch = epoch
        self._clean_logits: Optional[torch.Tensor] = None

    @property
    def clean_logits(self) -> torch.Tensor:
        if self._clean_logits is None:
            with torch.no_grad():
                self._clean_logits = self.model(self.x).float()
        return self._clean_logits


class Method:
    """PGD-AT defaults for every hook; subclasses override what differs."""

    Config: type = NoConfig
    registered_name: str = "?"

    def __init__(self, config: Any, num_classes: int, class_counts: torch.Tensor):
        self.config = config
        self.num_classes = num_classes
        self.class_counts = class_counts.float()

    # --- inner maximisation -------------------------------------------------------------
    def attack_start(self, x: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        """Initial perturbation δ₀: uniform in the ε-ball (Madry et al. 2018)."""
        return torch.empty_like(x).uniform_(-ctx.eps, ctx.eps)

    def attack_loss(self, logits_adv: torch.Tensor, y: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        """Loss the attack ascends; summed over the batch so its scale is per sample."""
        return F.cross_entropy(logits_adv.float(), y, reduction="sum")

    # --- outer minimisation -------------------------------------------------------------
    def train_loss(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                   ctx: BatchContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, adversarial logits). Default: cross-entropy on the adversarial logits."""
        logits_adv = model(x_adv)
        return F.cross_entropy(logits_adv.float(), y), logits_adv

    def build_head(self, in_features: int, num_classes: int, class_counts: torch.Tensor) -> Optional[nn.Module]:
        """A replacement classifier head, or None to keep the model's linear head."""
        return None

    # --- state ---------------------------------------------------------------------------
    def observe(self, logits_adv: torch.Tensor, y: torch.Tensor, ctx: BatchContext) -> None:
        """Accumulate per-batch statistics on the device (no host sync)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Turn the epoch's statistics into next epoch's state."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def to(self, device: torch.device) -> "Method":
        """Move tensor attributes to ``device``."""
        for k, v in list(vars(self).items()):
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device))
        return self


def parse_overrides(method: str, config_cls: type, overrides: dict[str, Any]) -> Any:
    """Build ``config_cls`` from string overrides (``{"tail_weight": "0.5"}``), type-checked."""
    if not dataclasses.is_dataclass(config_cls):
        raise LtbenchError(f"method {method!r} has no Config dataclass")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    kwargs = {}
    defaults = config_cls()
    for key, raw in overrides.items():
        if key not in fields:
            known = ", ".join(fields) or "(none)"
            raise LtbenchError(f"method {method!r} has no parameter {key!r}; its parameters: {known}")
        kwargs[key] = _coerce(raw, getattr(defaults, key), f"{method}.{key}")
    return config_cls(**kwargs)


def _coerce(raw: Any, default: Any, name: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            low = raw.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return low in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if default is None:
            try:
                return float(raw)
            except ValueError:
                return raw
        return type(default)(raw)
    except ValueError:
        raise LtbenchError(f"{name}={raw!r} is not a valid {type(default).__name__}") from None


def build_method(name: str, overrides: dict[str, Any], num_classes: int, class_counts: torch.Tensor) -> Method:
    """Instantiate a registered method with its Config built from ``overrides``."""
    from ltbench.registry import METHODS, load_methods

    load_methods()
    cls = METHODS.get(name)
    config = parse_overrides(name, cls.Config, overrides)
    return cls(config, num_classes, class_counts)
