"""The method API: what an adversarial-training method supplies to the engine.

A method is a small class, not a training loop (DESIGN.md, "The method API"). The engine owns the
loop, optimiser, AMP, checkpoints and evaluation; it calls these hooks and never branches on a
method's name. Every hook's default is PGD-AT (Madry et al., ICLR 2018):

* :meth:`Method.attack_start` — random start of the inner maximisation (uniform in the ε-ball);
* :meth:`Method.attack_loss` — the per-batch loss PGD ascends (summed cross-entropy);
* :meth:`Method.train_loss` — the outer loss (cross-entropy on the adversarial logits);
* :meth:`Method.build_head` — an optional replacement classifier head;
* :meth:`Method.observe` / :meth:`Method.on_epoch_end` — statistics kept on the device and turned
  into next epoch's state; :class:`EpochStats` brings what the engine itself counted (the
  adversarial examples' predicted classes, REAT's RBL input); state round-trips through
  ``state_dict``/``load_state_dict``;
* :meth:`Method.attack_budget` — this batch's training ε and step, scalars or one per sample
  (RobustLT's class-wise ε); the evaluation always uses the job's ε, never this budget;
* :meth:`Method.attacks` — whether this step attacks at all (TAET's first stage does not: the
  step is then a standard step, clean forward and backward only);
* :meth:`Method.perturb_weights` / :meth:`Method.restore_weights` — a weight perturbation in
  place around the optimiser step (AWP);
* :meth:`Method.eval_weights` — weights to evaluate instead of the trained ones (CFA's FAWA
  average); ``val_n_per_class`` / :meth:`Method.needs_validation` / ``val_before_training`` — the
  validation split a method holds out by default and hears about in ``EpochStats.val`` (CFA, WAT, FRL);
* :meth:`Method.auxiliary_training` / :meth:`Method.attach_auxiliary_model` — a second model of the
  job's architecture that the engine trains for the method, with another method, on a balanced
  subset of the training set, at the start of the first epoch (its time is that epoch's), then
  hands over frozen (SD-LT's balanced self-teacher); the method keeps its weights in its state.

A *modifier* (:class:`Modifier`, ``@register_modifier``) wraps any method and overrides some of
these hooks: ``reat +robustlt`` is REAT with RobustLT's budgets, ``at-bsl +awp`` AT-BSL with AWP.

Hyper-parameters are a dataclass ``Config`` nested in the class, with the paper's defaults.
Variants and ablations are boolean fields of that dataclass (``reat.tail=false``), or a registered
subclass (``reat-official``); :func:`ltbench.modifier.parse_spec` turns ``"reat --no-tail"`` into those.

What the report and the time estimate need to know of a method are class attributes too:
``cost_factor`` (its training cost per image relative to PGD-AT), ``baseline_rank`` (whether the
report pairs every method with it, and in which order), ``side_by_side`` (a registered method shown
beside it in the report) and ``step_cost_target`` (the step time relative to the cost baseline that
``ltbench bench`` checks it against).

The loss pieces several methods share live in :mod:`ltbench.losses`; a job's method is built
(discovery, Config, modifiers) by :func:`ltbench.method_factory.build_method`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ltbench.attacks.pgd import Budget, uniform_start
from ltbench.config import coerce_value
from ltbench.errors import LtbenchError
from ltbench.losses import kl_rows, small_normal_start
from ltbench.registry import METHODS


@dataclass
class NoConfig:
    """A method without hyper-parameters."""


class BatchContext:
    """What a loss may need about the current batch, computed lazily and at most once.

    ``clean_logits`` are the logits of the clean batch under the model's mode at first access,
    without gradient (TRADES' attack target).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, class_counts: torch.Tensor,
                 eps: float, epoch: int = 0, *, step: Optional[float] = None, epochs: Optional[int] = None):
        self.model = model
        self.x = x
        self.y = y
        self.class_counts = class_counts
        self.num_classes = class_counts.numel()
        # ε and step of this batch's attack: the job's until the engine applies the method's
        # ``attack_budget`` (then possibly (B,) tensors); ``job_eps``/``job_step`` stay the job's,
        # the budget the evaluation uses.
        self.eps = eps
        self.step = step
        self.job_eps = eps
        self.job_step = step
        self.epoch = epoch  # 0-based
        self.epochs = epochs  # the job's number of epochs (None outside a job)
        self._clean_logits: Optional[torch.Tensor] = None

    @property
    def clean_logits(self) -> torch.Tensor:
        if self._clean_logits is None:
            with torch.no_grad():
                self._clean_logits = self.model(self.x).float()
        return self._clean_logits


@dataclass
class EpochStats:
    """What the engine counted during one training epoch, as tensors on the training device.

    ``train_adv_acc`` is per class the share of the epoch's training AEs classified correctly (the
    AEs' logits from the outer loss, as the model was at each step; the true per-class accuracy,
    not a share of the whole set). ``val`` is the epoch-end measurement on the validation split
    (:class:`ltbench.engine.validation.ValidationStats`), None when the job holds none out.
    ``model`` is the model being trained, for methods that keep a weight average (read it, do not
    change it)."""

    adv_pred_counts: torch.Tensor  # C: adversarial training examples predicted as each class
    train_adv_acc: Optional[torch.Tensor] = None  # C: robust accuracy on the epoch's training AEs
    val: Optional[Any] = None  # ValidationStats, or None without a validation split
    model: Optional[nn.Module] = None


@dataclass
class AuxiliaryTraining:
    """A second model the engine trains for a method (:meth:`Method.auxiliary_training`): ``method``
    trains it for round(``epochs`` · the job's epochs) epochs (at least 1) on ``n_per_class`` images
    of each class of the training set (``upsample``: a smaller class repeated up to it, else all of
    it), with the job's optimiser settings and its schedule over those epochs."""

    method: "Method"
    n_per_class: int
    epochs: float = 1.0
    upsample: bool = True


class Method:
    """PGD-AT defaults for every hook; subclasses override what differs."""

    Config: type = NoConfig
    registered_name: str = "?"
    # Images per class a job of this method holds out for validation when the job leaves
    # ``val_n_per_class`` unset (JobConfig); 0: none, the default, so most methods' jobs keep the
    # whole long-tailed training set.
    val_n_per_class: int = 0
    # True: the engine also measures the validation split before the first epoch of a fresh run and
    # hands it to ``on_epoch_end(-1, stats)`` (FRL adapts its first epoch to the initial model).
    val_before_training: bool = False
    # A modifier's settings for this method where its authors set them apart (modifier name → fields),
    # e.g. TRADES-AWP's γ and warm-up; --set and inline flags override them.
    modifier_defaults: dict = {}
    # What the benchmark around a method needs to know of it (a subclass registered under another
    # name inherits these, and says so where it differs):
    # its training step time relative to PGD-AT's (rounded from results/bench, where the CPU and the
    # H100 agree within ~0.1), for the time estimate of a job no timing of its study predicts yet
    # (ltbench.study.estimate);
    cost_factor: float = 1.0
    # a baseline: the report pairs every method with each registered baseline present, in the order
    # of this rank, lowest first (ltbench.method_roles); None: not a baseline;
    baseline_rank: Optional[int] = None
    # a registered method the report shows beside this one, this one first (REAT as written and as
    # its authors coded it); None: none.
    side_by_side: Optional[str] = None
    # ltbench's speed target for this method: its training step time relative to the cost
    # baseline's (the first baseline, PGD-AT), which `ltbench bench` reports as met or missed;
    # None: no target.
    step_cost_target: Optional[float] = None

    def __init__(self, config: Any, num_classes: int, class_counts: torch.Tensor):
        self.config = config
        self.num_classes = num_classes
        self.class_counts = class_counts.float()

    # --- inner maximisation -------------------------------------------------------------
    def attack_start(self, x: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        """Initial perturbation δ₀: uniform in the ε-ball (Madry et al. 2018), per sample when the
        budget is."""
        return uniform_start(x, ctx.eps)

    def attack_budget(self, eps: float, step: float, ctx: BatchContext) -> tuple[Budget, Budget]:
        """(ε, step) of this batch's attack, from the job's. Default: the job's, unchanged. A (B,)
        tensor gives each sample its own; it is this batch's training budget only (the engine
        stores it in ``ctx.eps``/``ctx.step``; the evaluation uses the job's ε)."""
        return eps, step

    def attacks(self, ctx: BatchContext) -> bool:
        """Whether this step computes adversarial examples. False: no attack (and no attack cost):
        ``train_loss`` gets ``x_adv = x``, so the default loss makes a standard step. Decided from
        Python values (``ctx.epoch``, ``ctx.epochs``), never from tensors."""
        return True

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

    def perturb_weights(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                        ctx: BatchContext) -> Any:
        """Called after the attack, before the outer loss: perturb ``model``'s weights in place and
        return what :meth:`restore_weights` needs to undo it after the optimiser step (AWP), or
        None (the default) for no perturbation."""
        return None

    def restore_weights(self, model: nn.Module, handle: Any) -> None:
        """Undo :meth:`perturb_weights` after the optimiser step; ``handle`` is what it returned."""

    def needs_validation(self) -> bool:
        """Whether a job of this method cannot run without a validation split (checked when the job
        starts, before it trains). Default: when the method holds images out by default."""
        return self.val_n_per_class > 0

    def auxiliary_training(self) -> Optional[AuxiliaryTraining]:
        """A second model for the engine to train at the start of the first epoch, or None (the
        default). The engine builds it (the job's architecture, the training method's head) and
        hands it to :meth:`attach_auxiliary_model` before training or resuming."""
        return None

    def attach_auxiliary_model(self, model: nn.Module) -> None:
        """Receive the model :meth:`auxiliary_training` asked for: untrained when the job starts
        (its weights then come from the method's state on resume), frozen in eval mode once trained."""

    def eval_weights(self) -> Optional[dict]:
        """Weights (a model state dict) to evaluate, select and hand to ``--init-from`` in place of
        the trained model's, or None (the default): the trained model. CFA's FAWA average."""
        return None

    # --- state ---------------------------------------------------------------------------
    def observe(self, logits_adv: torch.Tensor, y: torch.Tensor, ctx: BatchContext) -> None:
        """Accumulate per-batch statistics on the device (no host sync)."""

    def on_epoch_end(self, epoch: int, stats: EpochStats) -> None:
        """Turn the epoch's statistics (the method's own, and the engine's ``stats``) into next
        epoch's state."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def config_dict(self) -> dict[str, Any]:
        """The resolved hyper-parameters (defaults plus overrides), JSON-ready."""
        return dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else {}

    def to(self, device: torch.device) -> "Method":
        """Move tensor attributes to ``device``."""
        for k, v in list(vars(self).items()):
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device))
        return self


# --- schedules in epochs ------------------------------------------------------------------


def epoch_field(default: int, paper_epochs: int) -> Any:
    """A Config field that is a number of epochs, ``default`` as the paper states it for a run of
    ``paper_epochs`` epochs (CFA's start, 10 of 200). A job scales it to its own epochs
    (:func:`resolve_schedules`) unless it keeps schedules absolute."""
    return field(default=default, metadata={"paper_epochs": paper_epochs})


def scale_epochs(value: int, paper_epochs: int, epochs: int) -> int:
    """``value`` · ``epochs`` / ``paper_epochs``, rounded half up; a positive value stays ≥ 1 epoch."""
    scaled = int(math.floor(value * epochs / paper_epochs + 0.5))
    return max(scaled, 1) if value > 0 else scaled


def resolve_schedules(method: "Method", epochs: int, scale: bool = True) -> dict[str, dict]:
    """Set every epoch-valued field (:func:`epoch_field`) of ``method`` and of the modifiers around
    it to its value for a job of ``epochs`` epochs: scaled by ``epochs / paper_epochs`` (``scale``)
    or kept as given. Returns the record ``result.json`` keeps, ``{"cfa.begin": {"given": 10,
    "paper_epochs": 200, "job_epochs": 20, "resolved": 1}}`` (empty when the method has none)."""
    record = {}
    m: Optional[Method] = method
    while m is not None:
        config = m.config
        if dataclasses.is_dataclass(config):
            changes = {}
            for f in dataclasses.fields(config):
                paper = f.metadata.get("paper_epochs")
                if paper is None:
                    continue
                given = getattr(config, f.name)
                changes[f.name] = scale_epochs(given, paper, epochs) if scale else given
                record[f"{m.registered_name}.{f.name}"] = {"given": given, "paper_epochs": paper, "job_epochs": epochs,
                                                            "resolved": changes[f.name]}
            if changes:
                m.config = dataclasses.replace(config, **changes)
        m = getattr(m, "inner", None)
    return record


class TradesOrPgdAttack(Method):
    """The attack of a method built on a TRADES or a PGD-AT base (``config.base`` "trades" or "at"):
    TRADES' Gaussian start (σ = ``config.start_std``) and KL to the clean prediction, or PGD-AT's
    uniform start and cross-entropy (CFA, FAAL)."""

    def attack_start(self, x: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        if self.config.base == "trades":
            return small_normal_start(x, self.config.start_std)
        return super().attack_start(x, ctx)

    def attack_loss(self, logits_adv: torch.Tensor, y: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        if self.config.base == "trades":
            return kl_rows(ctx.clean_logits, logits_adv).sum()
        return super().attack_loss(logits_adv, y, ctx)


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
        kwargs[key] = coerce_value(raw, getattr(defaults, key), f"{method}.{key}")
    try:
        config = config_cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a Config's own __post_init__ check
        raise LtbenchError(f"{method}: {exc}") from None
    check_method_config(method, config, kwargs)
    return config


def check_method_config(method: str, config: Any, overridden: dict) -> None:
    """Overridden float values must be finite; then the Config's own ``validate()`` hook, if any."""
    for key, value in overridden.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise LtbenchError(f"{method}.{key} must be a finite number, got {value}")
    hook = getattr(config, "validate", None)
    if callable(hook):
        try:
            hook()
        except LtbenchError as exc:
            raise LtbenchError(f"{method}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise LtbenchError(f"{method}: {exc}") from None


def instantiate(name: str, overrides: dict[str, Any], num_classes: int, class_counts: torch.Tensor) -> Method:
    """The registered method ``name`` with its Config built from ``overrides`` (type-checked).

    The method must be registered already (its module imported); a job's method is built, with
    discovery and modifiers, by :func:`ltbench.method_factory.build_method`. A method that trains
    another one (SD-LT's teacher) builds it with this."""
    cls = METHODS.get(name)
    return cls(parse_overrides(name, cls.Config, overrides), num_classes, class_counts)
