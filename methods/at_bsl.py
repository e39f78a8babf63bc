"""AT-BSL: Yue, Mou, Wang, Zhao, "Revisiting Adversarial Training under Long-Tailed Distributions",
CVPR 2024 (NISPLab/AT-BSL).

PGD-AT whose outer loss is the Balanced Softmax Loss (Ren et al., NeurIPS 2020):

    min_θ E [ −log( N_y e^{z_y(x')} / Σ_j N_j e^{z_j(x')} ) ],   x' = argmax_{‖x'−x‖∞≤ε} CE(z(x'), y)

i.e. cross-entropy on the adversarial logits plus the log class prior; the inner maximisation is plain
CE on the unadjusted logits, and inference uses the unadjusted logits. The start is 0.001·N(0, I),
as in the authors' release (which does not clip it to [0, 1]: ``JobConfig.clip_start = false``). The paper's strongest results add RandAugment or AutoAugment: that is a
data option (``JobConfig.augment``), which the ``at-bsl`` preset turns on, not part of this class.
"""
from dataclasses import dataclass

from ltbench.method import Method, balanced_softmax_ce, logit_adjustment, small_normal_start
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

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        self.adjustment = logit_adjustment(self.class_counts, config.tau)  # τ·log N, once per job

    def attack_start(self, x, ctx):
        return small_normal_start(x, self.config.start_std)

    def train_loss(self, model, x, x_adv, y, ctx):
        logits_adv = model(x_adv)
        return balanced_softmax_ce(logits_adv, y, self.adjustment), logits_adv
