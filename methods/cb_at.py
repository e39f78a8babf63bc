"""Class-balanced adversarial training: PGD-AT (Madry et al., ICLR 2018) whose outer loss is the
class-balanced loss of Cui, Jia, Lin, Song, Belongie, "Class-Balanced Loss Based on Effective
Number of Samples", CVPR 2019.

Effective number of class i (Cui et al., Sec. 3): E_{N_i} = (1 − β^{N_i}) / (1 − β); class-balanced
loss (Sec. 4): CB(z, y) = w_y · CE(z, y) with w_i ∝ 1 / E_{N_i}, normalised so Σ_i w_i = C. Here z
are the logits of the PGD adversarial examples (inner loss: plain CE); the loss is the batch mean of
w_y · CE. β = 0.9999 is the paper's usual choice for CIFAR-LT; β = 0 gives plain PGD-AT, β → 1
inverse-frequency weighting.

Departures from the authors' code: none known. Cui et al. released the loss, not adversarial
training: the PGD part is PGD-AT's (uniform start, clipped to [0, 1]); RoBal's authors' code, which
runs this loss as its ``outer_CB`` configuration, was not compared with it number by number.
"""
from dataclasses import dataclass

import torch.nn.functional as F

from ltbench.method import Method
from ltbench.losses import class_balanced_weights
from ltbench.registry import register_method


@dataclass
class CBATConfig:
    """Class-balanced AT (Cui et al., CVPR 2019): β of the effective number, in [0, 1)."""

    beta: float = 0.9999

    def validate(self) -> None:
        """Checked before a study is written (``ltbench.method.check_method_config``): E_n needs 0 ≤ β < 1."""
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")


@register_method("cb-at")
class CBAT(Method):
    """Class-balanced AT (Cui et al., CVPR 2019): effective-number class weights on the outer CE."""

    Config = CBATConfig

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        self.cb_weights = class_balanced_weights(self.class_counts, config.beta)

    def train_loss(self, model, x, x_adv, y, ctx):
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits_adv.float(), y, reduction="none")
        return (self.cb_weights[y] * ce).mean(), logits_adv
