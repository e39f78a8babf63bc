"""The training engine: one job from config to ``result.json``.

The engine owns the loop and calls the method's hooks (:mod:`ltbench.method`); it never branches
on a method's name. Per batch: augment on the device → PGD with the method's start and loss (model
in eval mode) → the method's outer loss (train mode) → SGD step. Statistics (loss, accuracy, the
histogram of labels predicted on the training AEs) accumulate in device tensors that are read once
per epoch — and, when a progress listener is given, at most once a second for the running loss and
accuracy (:meth:`Trainer.report_batch`) — so the step itself has no host sync. A job with a validation
split (``val_n_per_class``, :mod:`ltbench.engine.validation`) measures it at each epoch's end for the
method. Every epoch ends with an atomic checkpoint, from which a re-run resumes exactly. A method
that asks for an auxiliary model (SD-LT's teacher) has it trained at the start of epoch 0, inside
that epoch's time, on a balanced subset of the training set (:meth:`Trainer.train_auxiliary`).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ltbench.attacks.base import attack_mode, autocast_for
from ltbench.attacks.pgd import pgd_perturb
from ltbench.config import JobConfig
from ltbench.data import DeviceAugment, LongTailSplit, PolicyAugment, get_dataset, load_split
from ltbench.engine.checkpoint import check_weights_only, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ltbench.attacks import build_attack
from ltbench.engine.evaluate import balanced_subset, eval_batch_size, predict, run_evaluation, job_test_set
from ltbench.data.validation import hold_out, MAX_FRACTION
from ltbench.engine import validation
from ltbench.env import environment, resolve_device
from ltbench.errors import LtbenchError
from ltbench.io import quarantine, save_torch
from ltbench.method import AuxiliaryTraining, BatchContext, EpochStats, Method, resolve_schedules
from ltbench.method_factory import build_method
from ltbench.models import build_model
from ltbench.progress import batch_message, epoch_message
from ltbench.plugins import load_all, plugin_files
from ltbench import study_folder as sf
from ltbench.study_folder import BEST, CHECKPOINT, EVAL_WEIGHTS, METRICS, SPLIT

Progress = Callable[["str | dict"], None]  # see ltbench.progress
AUX_SEED_OFFSET = 7_919  # the auxiliary model's subset and order: seeded apart from the job's other draws


class TrainingDiverged(LtbenchError):
    """The training loss became NaN or infinite; ``epoch`` (1-based) says in which epoch."""

    def __init__(self, message: str, epoch: Optional[int] = None):
        super().__init__(message)
        self.epoch = epoch


def make_optimizer(model: nn.Module, cfg: JobConfig, steps_per_epoch: int):
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=cfg.nesterov)
    milestones = sorted({max(1, round(f * cfg.epochs)) for f in cfg.lr_milestones if round(f * cfg.epochs) < cfg.epochs})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    return opt, sched


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` for the engine: the compiled module, whose ``features`` is compiled too.

    Methods call ``model(x)`` or ``model.features(x)`` then ``model.head(f)``; a plain compiled
    module would forward ``features`` to the uncompiled original. Parameters, buffers and the
    state dict stay those of ``model`` (checkpoints are unchanged); eval/train mode and frozen
    parameters in the attack are guarded, so each combination compiles once.
    """
    compiled = torch.compile(model)
    if hasattr(model, "features"):
        object.__setattr__(compiled, "features", torch.compile(model.features))
    return compiled


class EpochAccumulator:
    """An epoch's training statistics, accumulated in device tensors (no host sync until read)."""

    def __init__(self, num_classes: int, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.pred_hist = torch.zeros(num_classes, device=device)
        self.correct_per_class = torch.zeros(num_classes, device=device)  # AEs classified right, per true class

    @torch.no_grad()
    def update(self, loss: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor) -> None:
        pred = logits_adv.argmax(1)
        self.loss_sum += loss.detach().float() * len(y)
        hit = pred == y
        self.correct += hit.sum()
        # index_add_, not bincount: CUDA's bincount reads the maximum back to the host.
        self.pred_hist.index_add_(0, pred, torch.ones_like(pred, dtype=self.pred_hist.dtype))
        self.correct_per_class.index_add_(0, y, hit.to(self.correct_per_class.dtype))


def adversarial_examples(model: nn.Module, forward_model: nn.Module, method: Method, x: torch.Tensor,
                         y: torch.Tensor, ctx: BatchContext, *, eps: float, step: float, steps: int,
                         clip_start: bool = True) -> torch.Tensor:
    """Inner maximisation with the method's start and loss: eval mode, parameters frozen, so each PGD
    iteration is one forward pass plus a backward pass for the input gradient only."""
    with attack_mode(model):
        return pgd_perturb(forward_model, x, y, eps=eps, step=step, steps=steps,
                           loss_fn=lambda logits, yy: method.attack_loss(logits, yy, ctx),
                           start=lambda xx: method.attack_start(xx, ctx), clip_start=clip_start)


def prepare_batch(x_u8: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, augment: DeviceAugment,
                  aug_gen: torch.Generator, device: torch.device,
                  policy: Optional[PolicyAugment] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch as the engine feeds it: the images ``idx`` gathered from the
    device-resident uint8 set, the policy augmentation (on the CPU) if any, crop/flip on the
    device, channels_last; and their labels."""
    x = x_u8[idx]
    if policy is not None:
        x = policy(x.cpu()).to(device)
    x = augment(x.float().div_(255), generator=aug_gen)
    x = x.contiguous(memory_format=torch.channels_last)
    return x, y[idx]


def train_step(model: nn.Module, forward_model: nn.Module, method: Method, optimizer: torch.optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor, ctx: BatchContext, acc: Optional[EpochAccumulator] = None, *,
               eps: float, step: float, steps: int, clip_start: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One adversarial-training step, free of host syncs: PGD → the method's outer loss under autocast
    (bf16 on CUDA; parameters and BatchNorm statistics stay fp32) → SGD step → ``observe`` and the
    device accumulators. ``ltbench bench`` times exactly this function. Returns (loss, adversarial logits).

    The method's hooks shape it: ``attacks(ctx)`` False skips PGD (``x_adv = x``: a standard step);
    ``attack_budget`` gives the attack's ε and step (``eps``/``step`` are the job's; per-sample
    budgets are for this attack only); ``perturb_weights`` perturbs the weights after the attack and
    ``restore_weights`` undoes it after the SGD step (AWP)."""
    if method.attacks(ctx):
        eps, step = method.attack_budget(eps, step, ctx)
        ctx.eps, ctx.step = eps, step
        x_adv = adversarial_examples(model, forward_model, method, x, y, ctx, eps=eps, step=step, steps=steps,
                                     clip_start=clip_start)
    else:
        x_adv = x
    perturbation = method.perturb_weights(forward_model, x, x_adv, y, ctx)
    with autocast_for(x.device):
        loss, logits_adv = method.train_loss(forward_model, x, x_adv, y, ctx)
    if logits_adv.shape != (len(y), ctx.num_classes):  # shapes are known on the host: no sync
        raise LtbenchError(f"{method.registered_name}.train_loss returned logits of shape "
                           f"{tuple(logits_adv.shape)}; expected ({len(y)}, {ctx.num_classes}): one row of "
                           f"{ctx.num_classes} class logits per image of the batch")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if perturbation is not None:
        method.restore_weights(forward_model, perturbation)
    with torch.no_grad():
        logits_adv = logits_adv.detach().float()
        method.observe(logits_adv, y, ctx)
        if acc is not None:
            acc.update(loss, logits_adv, y)
    return loss.detach(), logits_adv


def build_job_model(cfg: JobConfig, info, class_counts: torch.Tensor) -> tuple[Method, nn.Module]:
    """The job's method and model, the model carrying the method's head if it has one."""
    method = build_method(cfg.method, cfg.method_params, info.num_classes, class_counts, cfg.modifiers)
    return method, model_for(cfg, info, method)


def model_for(cfg: JobConfig, info, method: Method) -> nn.Module:
    """A fresh model of the job's architecture carrying ``method``'s head if it has one."""
    model = build_model(cfg.model, info.num_classes, info.image_shape[0], info.mean, info.std, **cfg.model_params)
    head = method.build_head(model.feature_dim, info.num_classes, method.class_counts)
    if head is not None:
        model.head = head
    return model


def auxiliary_training(method: Method) -> tuple[Optional[Method], Optional[AuxiliaryTraining]]:
    """The method (through its modifiers) that asks for an auxiliary model, and what it asks; (None, None)."""
    for m in method_chain(method):
        aux = m.auxiliary_training()
        if aux is not None:
            return m, aux
    return None, None


def attach_auxiliary_copy(method: Method, model: nn.Module) -> None:
    """Outside a job (``ltbench bench``, tests): give a method that asks for an auxiliary model a
    frozen copy of ``model``, untrained, so its step runs and costs what it costs in a job."""
    owner, aux = auxiliary_training(method)
    if aux is not None:
        owner.attach_auxiliary_model(freeze(copy.deepcopy(model)))


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients: a model used, not trained."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def result_header(cfg: JobConfig, device: torch.device, class_names: list[str], train_counts: list[int],
                  test_size: int, eps: float, step: float) -> dict:
    """The part of ``result.json`` that says what was evaluated: config, environment, data, budget."""
    return {
        "config": cfg.to_dict(),
        "env": environment(device),
        "dataset": {"name": cfg.dataset, "class_names": class_names, "train_counts": train_counts,
                    "test_size": int(test_size)},
        "attack": {"eps": eps, "step": step, "train_steps": cfg.train_attack_steps},
    }


def method_chain(method: Method) -> list[Method]:
    """The method and, for a modifier, the methods it wraps, outermost first."""
    chain = [method]
    while getattr(chain[-1], "inner", None) is not None:
        chain.append(chain[-1].inner)
    return chain


def method_eval_weights(method: Method) -> Optional[dict]:
    """The method's :meth:`~ltbench.method.Method.eval_weights`, looked up through its modifiers
    (``cfa +awp``: AWP does not override the hook, so the wrapped CFA's average counts)."""
    for m in method_chain(method):
        weights = m.eval_weights()
        if weights is not None:
            return weights
    return None


def load_job_weights(job_dir: Path, cfg: Optional[JobConfig] = None) -> dict:
    """The weights a finished job evaluated (``--init-from``): ``best.pt`` when it selected an epoch,
    the method's own (``eval_weights.pt``, CFA's FAWA average) when it had them, else the model of
    its last checkpoint. With ``cfg``, the job's dataset and model must be the same. Every way this
    fails is one line saying which: no such folder, not finished, another dataset / model / width,
    no weights (a committed study), damaged weights."""
    job_dir = Path(job_dir)
    if not job_dir.is_dir():
        raise LtbenchError(f"init_from {job_dir}: no such job folder")
    result_path = job_dir / sf.RESULT
    if not result_path.exists():
        raise LtbenchError(f"init_from {job_dir}: no {sf.RESULT} there (not a finished job)")
    try:
        result = sf.load_result(result_path)
    except ValueError as exc:
        raise LtbenchError(f"init_from {job_dir}: its {sf.RESULT} does not read as a result ({exc})") from None
    if cfg is not None:
        src = result.get("config", {})
        for key in ("dataset", "model", "model_params"):
            if src.get(key) != getattr(cfg, key):
                raise LtbenchError(f"init_from {job_dir}: its {key} is {src.get(key)!r}, this job's {getattr(cfg, key)!r}")
    if (result.get("selection") or {}).get("epoch") is not None:
        name = BEST
    else:
        name = result.get("evaluated_weights") or CHECKPOINT
    try:
        state = load_checkpoint(job_dir / name)
    except LtbenchError as exc:
        raise LtbenchError(f"init_from {job_dir}: its {name} is damaged ({exc})") from None
    if state is None:
        raise LtbenchError(f"init_from {job_dir}: no {name} there (a committed study holds no weights): "
                           f"move its {sf.RESULT} away and re-run, which retrains it to the same numbers")
    weights = state["model"] if name == CHECKPOINT and isinstance(state, dict) else state
    if not isinstance(weights, dict):
        raise LtbenchError(f"init_from {job_dir}: its {name} is damaged (no model state dict in it)")
    return weights


class Trainer:
    """Holds one job's data, model, method and optimiser on the training device."""

    def __init__(self, cfg: JobConfig, job_dir: Path, progress: Optional[Progress] = None):
        self.cfg = cfg.validate()
        load_all()
        self.job_dir = Path(job_dir)
        self.progress = progress or (lambda msg: None)
        self.reporting = progress is not None  # without a listener, no accumulator is read before the epoch's end
        self._t_fit, self._last_read = time.perf_counter(), -math.inf  # (re)set by fit
        self.device = resolve_device(cfg.device)
        self.info = get_dataset(cfg.dataset)
        self.eps = cfg.eps if cfg.eps is not None else self.info.eps
        self.step = cfg.step if cfg.step is not None else self.info.step

        saved = self.job_dir / SPLIT
        self.damaged: Optional[str] = None  # a resume file that did not read as what it claims
        saved_split = None
        if saved.exists():
            try:
                saved_split = LongTailSplit.load(saved)
            except LtbenchError as exc:  # damaged: drawn again from its seed; training starts over
                self.damaged = f"{exc} (moved to {quarantine(saved).name})"
        raw, split = load_split(self.info, cfg.ratio, cfg.profile, cfg.lt_split_seed, split=saved_split,
                                n_max=cfg.train_per_class)
        split.seed_source = "run seed" if cfg.split_seed is None else "split_seed"
        self.split = split
        self.class_names = raw.class_names
        self.class_counts = list(split.counts)
        self.x_test, self.y_test = job_test_set(raw.x_test, raw.y_test, cfg.test_per_class, cfg.seed)
        dev = self.device
        self.val_n = (cfg.val_n_per_class if cfg.val_n_per_class is not None
                      else validation.default_n_per_class(cfg.method, cfg.modifiers))
        if cfg.select_best and cfg.select_on == "validation" and cfg.val_n_per_class is None:
            self.val_n = max(self.val_n, cfg.select_n_per_class)  # the split the epoch is selected on
        self.x_val = self.y_val = None
        if self.val_n:
            x_all, y_all = raw.x_train, raw.y_train
            train_pos, val_pos = self.validation_split(y_all)
            raw.x_train, raw.y_train = x_all[train_pos], y_all[train_pos]
            self.x_val, self.y_val = x_all[val_pos].to(dev), y_all[val_pos].to(dev)
            self.class_counts = torch.bincount(raw.y_train, minlength=self.info.num_classes).tolist()
        elif split.validation is not None:
            raise LtbenchError(f"the saved split {saved} holds a validation split but the job asks for none")
        # The whole long-tailed training set lives on the device as uint8.
        self.x_train = raw.x_train.to(dev)
        self.y_train = raw.y_train.to(dev)
        self.augment = DeviceAugment(self.info.crop_padding, self.info.flip)
        self.policy = PolicyAugment(cfg.augment, **cfg.augment_params) if cfg.augment else None

        torch.manual_seed(cfg.seed)
        counts = torch.tensor(self.class_counts, dtype=torch.float32, device=dev)
        method, model = build_job_model(cfg, self.info, counts)
        self.schedules = resolve_schedules(method, cfg.epochs, cfg.scale_schedules)
        self.method: Method = method.to(dev)
        if not self.val_n and any(m.needs_validation() for m in method_chain(method)):
            raise LtbenchError(f"{cfg.label or cfg.method} needs a validation split: leave val_n_per_class unset "
                               f"or set it above 0")
        # channels_last is faster on CUDA and, measured for the small CNN, on the CPU too.
        self.model = model.to(dev, memory_format=torch.channels_last)
        # A second model the method asks the engine to train (SD-LT's balanced self-teacher): built
        # now, so that a resumed job loads its weights from the method's state; trained in epoch 0.
        owner, self.aux = auxiliary_training(self.method)
        self.aux_model = None
        if self.aux is not None:
            if self.aux.method.needs_validation():
                raise LtbenchError(f"{cfg.method}: the auxiliary model's method cannot need a validation split")
            self.aux.method.to(dev)
            self.aux_model = model_for(cfg, self.info, self.aux.method).to(dev, memory_format=torch.channels_last)
            owner.attach_auxiliary_model(self.aux_model)
        if cfg.init_from:  # fine-tuning: another job's evaluated weights; optimiser and schedule fresh
            try:
                self.model.load_state_dict(load_job_weights(Path(cfg.init_from), cfg))
            except RuntimeError as exc:  # another method's head, another architecture
                raise LtbenchError(f"init_from {cfg.init_from}: its weights do not fit this model "
                                   f"({str(exc).splitlines()[0]})") from None
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.forward_model = compile_model(self.model) if cfg.compile else self.model
        self.steps_per_epoch = math.ceil(len(self.y_train) / cfg.batch_size)
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg, self.steps_per_epoch)
        self.perm_gen = torch.Generator().manual_seed(cfg.seed)
        self.aug_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 1)
        self.start_epoch = 0
        # Model selection (REAT recipe: "best checkpoint by PGD-20") on the validation split, or on a
        # fixed balanced test subset as the AT-BSL and REAT scripts do (select_on = test).
        self.best = {"epoch": None, "acc": None}
        if cfg.select_best:
            self.select_attack = build_attack(cfg.select_best, self.eps, self.step, seed=cfg.seed)
            if cfg.select_on == "test":
                idx = balanced_subset(self.y_test, cfg.select_n_per_class, cfg.seed)
                self.x_select, self.y_select = self.x_test[idx], self.y_test[idx]
            else:
                self.x_select, self.y_select = self.x_val, self.y_val

    def validation_split(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (in the long-tailed training set) of the training and the validation images:
        those of the saved split when it has them, else a fresh seeded hold-out recorded in
        ``self.split.validation`` (saved with the split). Classes capped are said in the log."""
        split, n = self.split, self.val_n
        saved = split.validation
        if saved is not None:
            if int(saved["n_per_class"]) != n:
                raise LtbenchError(f"the saved split holds {saved['n_per_class']} validation images per class, "
                                   f"the job asks for {n}")
            val_idx = torch.tensor(saved["indices"], dtype=torch.int64)
            val_pos = torch.searchsorted(split.indices, val_idx).clamp_max(len(split.indices) - 1)
            if not torch.equal(split.indices[val_pos], val_idx):
                raise LtbenchError("the saved split's validation indices are not images of its long-tailed split")
            keep = torch.ones(len(y), dtype=torch.bool)
            keep[val_pos] = False
            train_pos = torch.nonzero(keep).flatten()
        else:
            h = hold_out(y, n, split.seed, self.info.num_classes)
            train_pos, val_pos = h.train_pos, h.val_pos
            split.validation = {"n_per_class": n, "max_fraction": MAX_FRACTION,
                                "indices": split.indices[val_pos].tolist(), "counts": h.val_counts,
                                "capped": h.capped}
        v = split.validation
        if v["capped"]:
            self.progress(f"validation: {n} images per class asked, classes {v['capped']} capped to "
                          f"{[v['counts'][c] for c in v['capped']]} (at most {MAX_FRACTION:.0%} of a class)")
        return train_pos, val_pos

    # --- checkpointing -----------------------------------------------------------------
    def state(self, epoch: int, log: Optional[dict] = None) -> dict:
        """Everything an exact resume needs; ``log`` is the epoch's ``metrics.jsonl`` line, kept so a
        run killed between the checkpoint and the log line writes the line on resume."""
        return {
            "epoch": epoch,
            "log": log,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": {},  # bf16 autocast needs no loss scaling
            "method": self.method_state(),
            "rng": rng_state(self.device),
            "perm_gen": self.perm_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            "best": dict(self.best),
        }

    def method_state(self) -> dict:
        """The method's ``state_dict()``, checked to load back weights-only (one line naming the key if not)."""
        state = self.method.state_dict()
        check_weights_only(state, f"{self.method.registered_name}.state_dict()")
        return state

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        if self.aux_model is not None:  # a checkpoint comes after epoch 0, which trained it
            freeze(self.aux_model)
        set_rng_state(state["rng"], self.device)
        self.perm_gen.set_state(state["perm_gen"])
        self.aug_gen.set_state(state["aug_gen"])
        self.start_epoch = int(state["epoch"])
        self.best = dict(state.get("best", self.best))

    def resume(self) -> int:
        """Load the last checkpoint if there is one; returns the epoch to start from.

        A damaged resume file (split, checkpoint, selected-epoch weights, or a ``metrics.jsonl``
        that does not match the checkpoint) is never used: the resume files are moved aside
        (``NAME.corrupt-TIME``) and training starts over, which gives the same numbers as an
        uninterrupted run. A readable checkpoint that does not fit the model is a one-line error."""
        ckpt, metrics = self.job_dir / CHECKPOINT, self.job_dir / METRICS
        state, lines = None, []
        if self.damaged is None and ckpt.exists():
            state = self._read_checkpoint(ckpt)
        if state is not None:
            start = int(state["epoch"])
            lines = [r for r in sf.read_metrics(self.job_dir) if r["epoch"] < start]
            log = state.get("log")
            if [r["epoch"] for r in lines] == list(range(start - 1)) and isinstance(log, dict) \
                    and log.get("epoch") == start - 1:
                lines.append(log)  # killed between the checkpoint and its log line
            if [r["epoch"] for r in lines] != list(range(start)):
                self.damaged = f"{metrics} does not hold the {start} epochs of {ckpt.name}"
                state = None
        if self.damaged is not None:
            self._start_over()
        if state is not None:
            try:
                self.load_state(state)
            except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
                raise LtbenchError(f"{ckpt} does not fit this job ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it to start over") from None
            # Drop log lines of an epoch that ran after the checkpoint (killed before saving).
            sf.write_metrics(self.job_dir, lines)
        elif metrics.exists():  # killed before the first checkpoint
            sf.write_metrics(self.job_dir, [])
        return self.start_epoch

    def _read_checkpoint(self, ckpt: Path) -> Optional[dict]:
        """The checkpoint's state if it reads (weights-only) as a training state of this job; else
        None, with ``self.damaged`` saying why."""
        # Loaded on the CPU: RNG states must stay CPU byte tensors (for a CUDA generator too), and
        # load_state_dict copies weights, optimiser and method state onto the training device.
        try:
            state = load_checkpoint(ckpt)
        except Exception as exc:  # truncated, zero-filled, garbage, or not weights-only
            self.damaged = f"{ckpt} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})"
            return None
        keys = ("epoch", "model", "optimizer", "scheduler", "method", "rng", "perm_gen", "aug_gen")
        epoch = state.get("epoch") if isinstance(state, dict) else None
        if not isinstance(state, dict) or any(k not in state for k in keys) or isinstance(epoch, bool) \
                or not isinstance(epoch, int) or not 0 <= epoch <= self.cfg.epochs:
            self.damaged = f"{ckpt} is not a training state of this job"
            return None
        best = state.get("best") or {}
        if self.cfg.select_best and isinstance(best, dict) and best.get("epoch") is not None:
            try:
                load_checkpoint(self.job_dir / BEST)
            except Exception as exc:  # the selected epoch's weights are needed at the end
                self.damaged = f"{self.job_dir / BEST} is damaged ({type(exc).__name__})"
                return None
        return state

    def _start_over(self) -> None:
        """Move the resume files aside and train from the first epoch (the split is drawn again from its seed)."""
        kept = []
        for name in (CHECKPOINT, METRICS, BEST):
            if (self.job_dir / name).exists():
                kept.append(quarantine(self.job_dir / name).name)
        print(f"warning: {self.damaged}; starting over; moved aside: {', '.join(kept) or 'nothing'}", flush=True)

    # --- training ----------------------------------------------------------------------
    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return prepare_batch(self.x_train, self.y_train, idx, self.augment, self.aug_gen, self.device, self.policy)

    def train_epoch(self, epoch: int) -> dict:
        cfg, dev, C = self.cfg, self.device, self.info.num_classes
        self.model.train()
        perm = torch.randperm(len(self.y_train), generator=self.perm_gen).to(dev)
        acc = EpochAccumulator(C, dev)
        loss_sum, correct, pred_hist = acc.loss_sum, acc.correct, acc.pred_hist
        t0 = time.perf_counter()
        aux_s = self.train_auxiliary() if epoch == 0 and self.aux is not None else None  # part of epoch 0's time
        counts = self.method.class_counts
        for b in range(self.steps_per_epoch):
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x, y = self.batch(idx)
            ctx = BatchContext(self.forward_model, x, y, counts, self.eps, epoch, step=self.step, epochs=cfg.epochs)
            train_step(self.model, self.forward_model, self.method, self.optimizer, x, y, ctx, acc,
                       eps=self.eps, step=self.step, steps=cfg.train_attack_steps, clip_start=cfg.clip_start)
            if self.reporting and (b % 10 == 0 or b == self.steps_per_epoch - 1):
                self.report_batch(epoch, b, acc, t0)
        train_adv_acc = acc.correct_per_class / self.method.class_counts.clamp_min(1.0)
        val = self.validate(epoch) if self.val_n else None
        self.method.on_epoch_end(epoch, EpochStats(acc.pred_hist, train_adv_acc, val, self.model))
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        n = len(self.y_train)
        loss_value = loss_sum.item() / n  # the epoch's one host sync
        elapsed = time.perf_counter() - t0
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"training loss is {loss_value} in epoch {epoch + 1}", epoch=epoch + 1)
        return {
            "epoch": epoch,
            "loss": loss_value,
            "train_adv_acc": correct.item() / n,
            "lr": lr,
            "time_s": elapsed,
            "images_per_s": n / elapsed,
            "adv_pred_hist": pred_hist.long().tolist(),
            "train_adv_acc_per_class": train_adv_acc.tolist(),
            **({"val": val.record()} if val is not None else {}),
            **({"auxiliary_s": aux_s} if aux_s is not None else {}),
        }

    def train_auxiliary(self) -> float:
        """Train the method's auxiliary model (:class:`~ltbench.method.AuxiliaryTraining`) with its
        own method on a balanced subset of the training set — seeded per job, the engine's batches,
        attack and step, the job's optimiser settings with the schedule over its epochs — then
        freeze it. Returns its seconds (counted in epoch 0's ``time_s``)."""
        t0 = time.perf_counter()
        cfg, aux, model = self.cfg, self.aux, self.aux_model
        epochs = max(1, round(aux.epochs * cfg.epochs))
        seed = cfg.seed * 100_003 + AUX_SEED_OFFSET
        idx = balanced_subset(self.y_train, aux.n_per_class, seed, upsample=aux.upsample).to(self.device)
        gen = torch.Generator().manual_seed(seed)
        steps = math.ceil(len(idx) / cfg.batch_size)
        optimizer, scheduler = make_optimizer(model, dataclasses.replace(cfg, epochs=epochs), steps)
        zeros = torch.zeros(self.info.num_classes, device=self.device)
        self.progress(f"auxiliary model ({aux.method.registered_name}): {epochs} epochs on a balanced subset "
                      f"of {len(idx)} images, before epoch 1")
        model.train()
        for epoch in range(epochs):
            order = idx[torch.randperm(len(idx), generator=gen).to(self.device)]
            for b in range(steps):
                x, y = self.batch(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
                ctx = BatchContext(model, x, y, aux.method.class_counts, self.eps, epoch, step=self.step, epochs=epochs)
                train_step(model, model, aux.method, optimizer, x, y, ctx, eps=self.eps, step=self.step,
                           steps=cfg.train_attack_steps, clip_start=cfg.clip_start)
            aux.method.on_epoch_end(epoch, EpochStats(zeros, None, None, model))
            scheduler.step()
        freeze(model)
        return time.perf_counter() - t0

    # --- progress ----------------------------------------------------------------------
    PROGRESS_READ_S = 1.0  # the accumulators are read (one host sync) at most once a second

    def report_batch(self, epoch: int, b: int, acc: "EpochAccumulator", t0: float) -> None:
        """Report batch ``b`` (0-based) of ``epoch`` with the epoch's running loss and accuracy.

        Called every 10 batches; reads the device accumulators — the only host sync outside the
        epoch's end — only when a second has passed since the last read, or at the epoch's last
        batch, so a fast GPU loop waits for the device about once a second, never per batch.
        """
        now = time.perf_counter()
        last = b == self.steps_per_epoch - 1
        if not last and now - self._last_read < self.PROGRESS_READ_S:
            return
        self._last_read = now
        seen = min((b + 1) * self.cfg.batch_size, len(self.y_train))
        loss, correct = (float(v) for v in torch.stack([acc.loss_sum, acc.correct.float()]).tolist())
        total = self.cfg.epochs * self.steps_per_epoch
        done_batches = epoch * self.steps_per_epoch + b + 1
        per_batch = (now - self._t_fit) / (done_batches - self.start_epoch * self.steps_per_epoch)  # this run's pace
        self.progress(batch_message(epoch + 1, self.cfg.epochs, b + 1, self.steps_per_epoch, loss / seen,
                                    correct / seen, seen / max(now - t0, 1e-9), per_batch * (total - done_batches),
                                    done_batches / total))

    def validation_record(self) -> dict:
        """What ``result.json`` says of the validation split: images per class, counts, capped classes, attack."""
        v = self.split.validation
        return {"n_per_class": v["n_per_class"], "max_fraction": v["max_fraction"], "counts": v["counts"],
                "capped": v["capped"], "attack": {"name": "pgd", "steps": self.cfg.val_attack_steps, "eps": self.eps,
                                                  "step": validation.attack_step(self.eps, self.cfg.val_attack_steps)}}

    def validate(self, epoch: int) -> "validation.ValidationStats":
        """The epoch-end measurement on the validation split (seeded per job and epoch)."""
        return validation.measure(self.model, self.x_val, self.y_val, self.info.num_classes, eps=self.eps,
                                  steps=self.cfg.val_attack_steps,
                                  batch_size=eval_batch_size(self.cfg.eval_batch_size, self.device),
                                  seed=self.cfg.seed * 100_003 + validation.SEED_OFFSET + epoch)

    def fit(self) -> None:
        start = self.resume()
        self._t_fit, self._last_read = time.perf_counter(), -math.inf
        if start == 0 and self.val_n and validation.before_training(self.cfg.method, self.cfg.modifiers):
            # the initial model measured (FRL): its state then goes into the first checkpoint
            zeros = torch.zeros(self.info.num_classes, device=self.device)
            self.method.on_epoch_end(-1, EpochStats(zeros, None, self.validate(-1), self.model))
        for epoch in range(start, self.cfg.epochs):
            record = self.train_epoch(epoch)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            if self.cfg.select_best and epoch + 1 >= self.cfg.select_from:
                with self.evaluated_model():
                    record["select_acc"] = self.selection_accuracy()
                    if self.best["acc"] is None or record["select_acc"] > self.best["acc"]:
                        save_torch(self.job_dir / BEST, self.model.state_dict())
                        self.best = {"epoch": epoch + 1, "acc": record["select_acc"]}
            # The checkpoint first, then its log line: the log never claims an epoch the checkpoint lacks.
            save_checkpoint(self.job_dir / CHECKPOINT, self.state(epoch + 1, record))
            sf.append_metrics(self.job_dir, record)
            if self.reporting:
                done = (epoch + 1) / self.cfg.epochs
                elapsed = time.perf_counter() - self._t_fit
                eta = elapsed / (epoch + 1 - start) * (self.cfg.epochs - epoch - 1)
                self.progress(epoch_message(record, self.cfg.epochs, done, eta))

    @contextlib.contextmanager
    def evaluated_model(self):
        """Inside, ``self.model`` holds the weights the method wants evaluated (CFA's FAWA average),
        when it has any; the trained weights are back afterwards."""
        weights = method_eval_weights(self.method)
        if weights is None:
            yield
            return
        trained = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(weights)
        try:
            yield
        finally:
            self.model.load_state_dict(trained)

    def load_eval_weights(self) -> Optional[str]:
        """Put the method's evaluated weights (if any) in the model for good and save them to
        :data:`EVAL_WEIGHTS`; returns that file name, or None."""
        weights = method_eval_weights(self.method)
        if weights is None:
            return None
        self.model.load_state_dict(weights)
        save_torch(self.job_dir / EVAL_WEIGHTS, self.model.state_dict())
        return EVAL_WEIGHTS

    def selection_accuracy(self) -> float:
        """Accuracy under ``select_best`` on the selection images: on the balanced test subset the
        overall accuracy; on the validation split, capped per class, the mean of the per-class
        accuracies over the classes it holds. Its random starts draw from a forked RNG, so training
        continues exactly as it would without model selection."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            pred = predict(self.model, self.x_select, self.y_select, self.select_attack, self.device,
                           eval_batch_size(self.cfg.eval_batch_size, self.device))
        y = self.y_select.cpu()
        hit = (pred == y).double()
        if self.cfg.select_on == "test":
            return hit.mean().item()
        n = torch.bincount(y, minlength=self.info.num_classes).double()
        right = torch.bincount(y, weights=hit, minlength=self.info.num_classes)
        return (right[n > 0] / n[n > 0]).mean().item()

    def load_best(self) -> Optional[dict]:
        """Put the selected epoch's weights in the model; returns the selection record (or None)."""
        if not self.cfg.select_best or self.best["epoch"] is None:
            return None
        try:
            weights = load_checkpoint(self.job_dir / BEST, map_location=self.device)
        except Exception as exc:
            raise LtbenchError(f"{self.job_dir / BEST} is damaged ({type(exc).__name__}); delete it and "
                               f"{CHECKPOINT} to start the job over") from None
        self.model.load_state_dict(weights)
        record = {"attack": self.cfg.select_best, "on": self.cfg.select_on,
                  "n_per_class": self.cfg.select_n_per_class if self.cfg.select_on == "test" else self.val_n, **self.best}
        if self.cfg.select_from != 1:
            record["from_epoch"] = self.cfg.select_from
        return record

    def evaluate(self) -> dict:
        """Everything the evaluation writes to ``result.json``: metrics under the job's attacks,
        gradient-masking checks and warnings, evaluation settings."""
        return run_evaluation(self.model, self.x_test, self.y_test, self.class_counts, list(self.cfg.eval_attacks),
                              eps=self.eps, step=self.step, device=self.device, batch_size=self.cfg.eval_batch_size,
                              seed=self.cfg.seed, aa_n_per_class=self.cfg.aa_n_per_class, state_dir=self.job_dir,
                              progress=self.progress)


TEST_SELECTION_WARNING = ("epoch {epoch} was selected on the test set ({attack} on {n_per_class} test images per class, "
                          "as the paper did): the test accuracies are optimistic")


def run_job(cfg: JobConfig, job_dir: Path, progress: Optional[Progress] = None) -> dict:
    """Train (resuming if a checkpoint exists), evaluate, and write ``result.json``; returns it."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, job_dir, progress)
    sf.write_config(job_dir, cfg.to_dict())
    if not (job_dir / SPLIT).exists():
        trainer.split.save(job_dir / SPLIT)
    t0 = time.perf_counter()
    trainer.fit()
    train_s = time.perf_counter() - t0
    epochs_s = sum(r.get("time_s", 0.0) for r in sf.read_metrics(job_dir))  # every epoch's, across resumes
    selection = trainer.load_best()
    own_weights = trainer.load_eval_weights() if selection is None else None
    t0 = time.perf_counter()
    evaluation = trainer.evaluate()  # metrics, checks, warnings, evaluation settings
    if selection is not None and selection["on"] == "test":  # the report lists the job's warnings
        evaluation["warnings"] = [*evaluation.get("warnings", []), TEST_SELECTION_WARNING.format(**selection)]
    result = {
        **result_header(cfg, trainer.device, trainer.class_names, trainer.class_counts, len(trainer.y_test),
                        trainer.eps, trainer.step),
        "method_config": trainer.method.config_dict(),  # defaults resolved: tells reat from reat-official
        # the epoch-valued hyper-parameters as given and as run (scaled to the job's epochs or not)
        **({"schedules": trainer.schedules} if trainer.schedules else {}),
        # the file each plugin method or modifier of the job came from (left out without plugins)
        **({"plugin_files": files} if (files := plugin_files(type(m) for m in method_chain(trainer.method))) else {}),
        "selection": selection,  # which epoch's model was evaluated (None: the last)
        # the method's own weights were evaluated (CFA's FAWA average), saved in this file
        **({"evaluated_weights": own_weights} if own_weights else {}),
        **({"validation": trainer.validation_record()} if trainer.val_n else {}),
        # train_s: this run's training; epochs_s: the job's, across resumes
        "timing": {"train_s": train_s, "epochs_s": epochs_s, "resumed_at_epoch": trainer.start_epoch,
                   "eval_s": time.perf_counter() - t0},
        **evaluation,
    }
    return sf.write_result(job_dir, result)
