"""AT-BSL: Yue, Mou, Wang, Zhao, "Revisiting Adversarial Training under Long-Tailed Distributions",
CVPR 2024 (NISPLab/AT-BSL).

PGD-AT whose outer loss is the Balanced Softmax Loss (Ren et al., NeurIPS 2020):

    min_θ E [ −log( N_y e^{z_y(x')} / Σ_j N_j e^{z_j(x')} ) ],   x' = argmax_{‖x'−x‖∞≤ε} CE(z(x'), y)

i.e. cross-entropy on the adversarial logits plus the log class prior; the inner maximisation is plain
CE on the unadjusted logits, and inference uses the unadjusted logits. The start is 0.001·N(0, I),
as in the authors' release. The paper's strongest results add RandAugment or AutoAugment: that is a
data option (``JobConfig.augment``), which the ``cifar10-lt-at-bsl-paper`` preset turns on, not part
of this class. The loss and the attack's step agree with the authors' ``at_bsl_loss.py`` to 1e-7 on
the same batch, weights and noise.

Departures from the authors' code (NISPLab/AT-BSL, ``train_at_bsl_cifar10.py``):

* the PGD random start is clipped to [0, 1] (ltbench's default, ``JobConfig.clip_start``); the authors' start is not (``--no-clip-start`` reproduces it) (the paper preset sets ``clip_start = false``);
* the script's loader drops the last partial batch of each epoch (``drop_last=True``) and feeds the
  model unnormalised [0, 1] inputs; ltbench trains on every image every epoch and every model
  normalises inside itself (the model contract, so that every attack works in pixel space): no
  preset option does either;
* the script selects the best epoch on the test set (``select_on = test`` in the paper preset;
  ltbench's default selects on a held-out validation split).
"""
from dataclasses import dataclass

from ltbench.method import Method
from ltbench.losses import balanced_softmax_ce, logit_adjustment, small_normal_start
from ltbench.registry import register_method


@dataclass
class ATBSLConfig:
    """AT-BSL (Yue et al., CVPR 2024): ``tau`` scales the log prior (1 = Balanced Softmax, the
    paper's loss); ``start_std`` is the σ of the Gaussian PGD start (0.001)."""

    tau: float = 1.0
    start_std: float = 0.001


@register_method("at-bsl")
class ATBSL(Method):
    """AT-BSL (Yue et al., CVPR 2024): PGD with CE, Balanced Softmax outer loss."""

    Config = ATBSLConfig
    baseline_rank = 1  # and with AT-BSL, the long-tailed baseline

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        self.adjustment = logit_adjustment(self.class_counts, config.tau)  # τ·log N, once per job

    def attack_start(self, x, ctx):
        return small_normal_start(x, self.config.start_std)

    def train_loss(self, model, x, x_adv, y, ctx):
        logits_adv = model(x_adv)
        return balanced_softmax_ce(logits_adv, y, self.adjustment), logits_adv
