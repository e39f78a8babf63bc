"""DAFA: Lee, Lee, Jang, Park, Bae, Yoon, "DAFA: Distance-Aware Fair Adversarial Training",
ICLR 2024 (arXiv 2401.12532; code rucy74/DAFA).

TRADES (Zhang et al., ICML 2019) with one weight W_c per class, used twice: as the weight of the
clean cross-entropy of the class's samples and as the scale of their adversarial budget. With
p_i(j) the mean softmax probability of class j over the training images of class i (their
adversarial examples, the model in train mode, as the training forward pass sees them),

    W_i = 1 + λ · Σ_{j ≠ i} ( [p_i(i) < p_j(j)] · p_i(j) · p_j(j)  −  [p_i(i) ≥ p_j(j)] · p_j(i) · p_i(i) )   (the class-weight update)

a hard class (low p_i(i)) takes weight from the easier classes it is confused with, in proportion
to how similar they are (p_i(j), p_j(i)): W rises for the classes that are hard and close to an
easier one, falls for the easy ones. The TRADES step of sample b (class y_b) then is

    PGD on Σ_b KL(p(x_b) ‖ p(x'_b)) with ε_b = W_{y_b}·ε and step α_b = W_{y_b}·α      (the class-wise margin)
    loss = (1/B) Σ_b W_{y_b} · CE(f(x_b), y_b)  +  β · (1/B) Σ_b KL(p(x_b) ‖ p(x'_b))  (the class-wise loss weight)

The weights are all 1 during the warm-up; they are measured once, in the warm-up's last epoch,
and kept to the end. Defaults, the authors' CIFAR-10 settings: λ = 1.0 (1.5 for CIFAR-100 and
STL-10), β = 6, the TRADES start x + 0.001·N(0, I); warm-up = 70 of the authors' 110 epochs, here a
fraction of the job's epochs (round(70/110 · E), at least 1), so the weights are measured, as
theirs, at the initial learning rate, before the first decay of ltbench's default schedule.

The recording costs no pass of its own: the softmax of the training step's adversarial logits,
summed per class in ``observe`` during the recording epoch. Every image is seen exactly once per
epoch, so these class sums divided by the class counts are the class means of the authors'
per-image memory (an N × C array indexed by sample), without it.

Departures from the authors' code / paper:

* The equations above are written from the authors' code (``utils.calculate_class_weights``,
  ``losses.trades_loss``, ``train.py``) and the paper's abstract; the paper's own text, and so its
  equation numbers, could not be read here.
* Only the TRADES base (the paper's method and the authors' default). Their ``--loss pgd``
  variant is not offered: its attack applies the class-wise step and then a second, unweighted one
  in every iteration, which neither the paper nor PGD-AT describes.
* A class with no training image in the recording epoch has p_i(·) = 0: it keeps W = 1 and changes
  no other class's weight (the authors' code would index past its array). A tie p_i(i) = p_j(j)
  subtracts, as the authors' ``if p_ii < p_jj: … else: …`` does.
* A weight below 0 scales the budget as 0 (no perturbation) while the loss weight keeps its sign;
  the authors' code would clip with inverted bounds (x' = x − |W|·ε). On balanced data the weights
  stay near 1; on long-tailed data a head class absorbs the confusions of many tail classes and its
  weight can fall below 0 already at λ = 1 (Fashion-MNIST-LT at ratio 0.01, seed 0 of the committed
  study: W = −0.45, −0.38 and −0.43 for T-shirt/top, the largest class, on seeds 0, 1 and 2). Its
  clean cross-entropy is then maximised and the loss diverges: the model ends as a constant predictor
  (seeds 0 and 1) or the loss reaches NaN and the job stops (seed 2), in the authors' code as here
  (their ``calculate_class_weights`` has no floor). ltbench keeps their formula.
* Outside a job (``ltbench bench``, ``ctx.epochs`` None) the weights count as measured, so the
  bench times DAFA's own step (class-wise budgets and weighted loss).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.losses import kl_rows
from ltbench.registry import register_method
from methods.trades import TRADES, TRADESConfig


@dataclass
class DAFAConfig(TRADESConfig):
    """DAFA (Lee et al., ICLR 2024): TRADES' β (6) and start σ; λ, the scale of the class-weight update
    (1.0 on CIFAR-10, 1.5 on CIFAR-100/STL-10); ``warmup``, the fraction of the epochs trained
    before the weights are measured (the authors' 70 of 110)."""

    lam: float = 1.0
    warmup: float = 70 / 110


def dafa_weights(similarity: torch.Tensor, lam: float) -> torch.Tensor:
    """W (C,) from the class-similarity matrix P, P[i, j] = p_i(j) (DAFA's class-weight update), vectorised:
    W_i = 1 + λ Σ_{j≠i} ([P_ii < P_jj] P_ij P_jj − [P_ii ≥ P_jj] P_ji P_ii)."""
    d = similarity.diagonal()
    harder = d[:, None] < d[None, :]  # [i, j]: class i is harder than class j
    gain = torch.where(harder, similarity * d[None, :], 0.0)
    loss = torch.where(harder, 0.0, similarity.T * d[:, None])
    off = 1.0 - torch.eye(len(d), dtype=similarity.dtype, device=similarity.device)
    return 1.0 + lam * ((gain - loss) * off).sum(1)


def warmup_epochs(fraction: float, epochs: int) -> int:
    """Epochs trained with all weights 1: round(fraction · E), at least 1 (the recording epoch)."""
    return min(max(round(fraction * epochs), 1), epochs)


@register_method("dafa")
class DAFA(TRADES):
    """DAFA (Lee et al., ICLR 2024): TRADES with class weights from inter-class similarity scaling each class's CE and ε."""

    Config = DAFAConfig

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        if not 0.0 <= config.warmup <= 1.0:
            raise LtbenchError(f"dafa.warmup is a fraction of the epochs in [0, 1], got {config.warmup}")
        C = num_classes
        self.class_weights = torch.ones(C)  # W, all 1 until the end of the warm-up
        self.prob_sums = torch.zeros(C, C)  # recording epoch: Σ softmax of the class's training AEs
        self.seen = torch.zeros(C)  # recording epoch: images of each class
        self.recorded = False  # this run recorded an epoch (a Python flag: no tensor is read)

    def weighted(self, ctx) -> bool:
        """The weights act after the warm-up (Python ints, no host read); outside a job always."""
        return ctx.epochs is None or ctx.epoch >= warmup_epochs(self.config.warmup, ctx.epochs)

    def recording(self, ctx) -> bool:
        """The warm-up's last epoch records the class similarities."""
        return ctx.epochs is not None and ctx.epoch == warmup_epochs(self.config.warmup, ctx.epochs) - 1

    def attack_budget(self, eps, step, ctx):
        if not self.weighted(ctx):
            return eps, step
        w = self.class_weights[ctx.y].clamp_min(0.0)
        return eps * w, step * w

    def train_loss(self, model, x, x_adv, y, ctx):
        logits = model(x)
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        if self.weighted(ctx):
            ce = self.class_weights[y] * ce
        loss = ce.mean() + self.config.beta * kl_rows(logits, logits_adv).mean()
        return loss, logits_adv

    def observe(self, logits_adv, y, ctx):
        if self.recording(ctx):
            self.prob_sums.index_add_(0, y, torch.softmax(logits_adv.float(), 1))
            self.seen.index_add_(0, y, torch.ones_like(y, dtype=self.seen.dtype))
            self.recorded = True

    def on_epoch_end(self, epoch, stats):
        if self.recorded:
            similarity = self.prob_sums / self.seen.clamp_min(1.0)[:, None]
            self.class_weights = dafa_weights(similarity, self.config.lam)
            self.prob_sums.zero_()
            self.seen.zero_()
            self.recorded = False

    def state_dict(self):
        return {"class_weights": self.class_weights}

    def load_state_dict(self, state):
        self.class_weights = state["class_weights"].to(self.class_weights.device)
