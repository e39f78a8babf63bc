"""SD-LT: Cho, Lee, Kim, "Long-tailed Adversarial Training with Self-Distillation", ICLR 2025
(arXiv 2503.06461). The authors' code is in the paper's OpenReview supplementary material, which
could not be read here, nor the paper's method section; this module is written from the abstract and
from the public reviews of the submission (see the departures paragraph).

Two steps:

1. **Balanced self-teacher.** A balanced subset D_B of the long-tailed training set D, the same
   number of images n_B in every class (set by the tail: n_B = round(γ · n_min), n_min the smallest
   class; classes above n_B are down-sampled, classes below it up-sampled by repetition), trains a
   model of the student's architecture adversarially (PGD-AT by default). The engine trains it at
   the start of the job's first epoch (``Method.auxiliary_training``), then freezes it.
2. **Student.** Adversarial training on all of D with a long-tail-aware classification loss, the
   Balanced Softmax of AT-BSL (Yue et al., CVPR 2024), plus the distillation of the teacher's
   predictions on the clean image into the student's on the adversarial example:

       L = −log( N_y e^{z_y(x')} / Σ_j N_j e^{z_j(x')} )  +  λ · KL( softmax t(x) ‖ softmax z(x') ),
       x' = PGD on CE(z(x'), y) from x + 0.001·N(0, I)   (AT-BSL's attack)

   t the frozen teacher (eval mode), z the student, λ = ``distill``.

**Budget rule.** The teacher trains for round(``teacher_epochs`` · E) epochs over D_B (default 1.0:
as many epochs as the student, E), with the job's optimiser settings and learning-rate schedule
over its own epochs, the job's attack (PGD-K, ε, step) and batch size. Its cost is |D_B| / |D| of
a student epoch per epoch — on Fashion-MNIST-LT at ratio 0.01 n_B = 60, 600 images against
14,886 — and it is counted in the job's time: it runs inside epoch 0, whose ``time_s`` includes it
(``metrics.jsonl`` also records it alone as ``auxiliary_s``). Each student step adds one
forward pass of the teacher (no gradient) to AT-BSL's step.

Departures from the authors' code / paper: there is no authors' code, and the paper's method
section could not be read here, so these are ltbench's choices, each a ``Config`` field:

* n_B = round(γ·n_min) with γ = 1 (the review of the paper we could read says n_B is set by the
  tail classes and γ controls up- and down-sampling; its exact rule and default were not read);
* the teacher's method: PGD-AT (``teacher``, any registered method without a validation split);
  its epochs: the student's (``teacher_epochs`` = 1.0; a reviewer reports the teacher phase as
  "e.g., 30 epochs", the student's count was not read); trained once, before the student;
* the distillation term: KL from the teacher's clean prediction to the student's adversarial one,
  weight λ = 1, no temperature (the ARD/RSLAD form); a reviewer names Balanced Softmax and
  "indirect gradient matching" (IGDM, Lee, Cho, Kim, arXiv 2312.03286) as the student's pieces,
  and another asks which loss L_KD is: IGDM is not implemented here. The classification loss:
  Balanced Softmax (τ = 1), AT-BSL's attack and start.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ltbench.errors import LtbenchError
from ltbench.method import AuxiliaryTraining, instantiate
from ltbench.losses import balanced_softmax_ce, kl_rows
from ltbench.registry import METHODS, register_method
from methods.at_bsl import ATBSL, ATBSLConfig

TEACHER = "teacher."  # state keys of the teacher's weights


@dataclass
class SDLTConfig(ATBSLConfig):
    """SD-LT (Cho et al., ICLR 2025), ltbench's defaults (no code was found): ``teacher``, the method
    training the balanced self-teacher (pgd-at); ``gamma``, n_B = round(γ · smallest class) images per
    class for it (1.0); ``teacher_epochs``, its epochs as a fraction of the job's (1.0); ``distill``, λ
    of the distillation KL (1.0); AT-BSL's τ (1) and start σ (0.001)."""

    teacher: str = "pgd-at"
    gamma: float = 1.0
    teacher_epochs: float = 1.0
    distill: float = 1.0

    def __post_init__(self):
        if not self.gamma > 0 or not self.teacher_epochs > 0:
            raise ValueError(f"gamma and teacher_epochs must be > 0, got {self.gamma}, {self.teacher_epochs}")


def balanced_size(class_counts: torch.Tensor, gamma: float) -> int:
    """n_B = round(γ · n_min), n_min the smallest class that has images (at least 1)."""
    present = class_counts[class_counts > 0]
    return max(1, round(gamma * float(present.min()))) if len(present) else 1


@register_method("sd-lt")
class SDLT(ATBSL):
    """SD-LT (Cho et al., ICLR 2025): AT-BSL distilling a frozen self-teacher adversarially trained on a balanced subset."""

    Config = SDLTConfig
    baseline_rank = None  # built on AT-BSL, but no baseline itself

    def __init__(self, config, num_classes, class_counts):
        if issubclass(METHODS.get(config.teacher), SDLT):
            raise LtbenchError(f"sd-lt.teacher cannot be {config.teacher!r}: the teacher trains without a teacher")
        super().__init__(config, num_classes, class_counts)
        self.n_per_class = balanced_size(self.class_counts, config.gamma)
        # the teacher's method sees the balanced counts: n_B in every class that has images
        self.teacher_method = instantiate(config.teacher, {}, num_classes,
                                           torch.where(self.class_counts > 0, float(self.n_per_class), 0.0))
        self.teacher = None  # the engine attaches it (Method.attach_auxiliary_model)

    def auxiliary_training(self):
        return AuxiliaryTraining(self.teacher_method, self.n_per_class, self.config.teacher_epochs, upsample=True)

    def attach_auxiliary_model(self, model):
        self.teacher = model

    def train_loss(self, model, x, x_adv, y, ctx):
        if self.teacher is None:
            raise LtbenchError("sd-lt has no teacher: the engine attaches it to a job (Method.attach_auxiliary_model)")
        logits_adv = model(x_adv)
        with torch.no_grad():
            target = self.teacher(x)
        loss = balanced_softmax_ce(logits_adv, y, self.adjustment) + self.config.distill * kl_rows(target, logits_adv).mean()
        return loss, logits_adv

    def state_dict(self):
        return {TEACHER + k: v for k, v in self.teacher.state_dict().items()} if self.teacher is not None else {}

    def load_state_dict(self, state):
        weights = {k[len(TEACHER):]: v for k, v in state.items() if k.startswith(TEACHER)}
        if weights:
            if self.teacher is None:
                raise LtbenchError("sd-lt: a saved teacher but no model attached to load it into")
            self.teacher.load_state_dict(weights)

    def to(self, device):
        super().to(device)
        self.teacher_method.to(device)
        return self
