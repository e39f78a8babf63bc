"""REAT: Li, Xu, Zhang, "Alleviating the Effect of Data Imbalance on Adversarial Training",
arXiv 2307.10205 (2023). Implemented as DESIGN.md ("REAT, precisely") defines it.

Two switchable parts, with N_i the training count of class i and C classes:

1. RBL — re-balanced inner loss (``rbl``). n_i = how many adversarial examples of the previous
   epoch were *predicted* as class i (before the first epoch n_i = N_i). With β_i = (N_i − 1)/N_i,
   E_i = (1 − β_i^{n_i}) / (1 − β_i) (the effective number), w_i = 1 / (E_i + 10⁻⁵), normalised so
   Σ w_i = C, PGD ascends Σ_b w_{y_b} · CE(z(x'_b), y_b). The counts accumulate on the device in
   :meth:`REAT.observe` and become weights in :meth:`REAT.on_epoch_end`; both live in the state
   dict, so a resumed run uses exactly the weights an uninterrupted one would.
2. Outer loss: Balanced Softmax CE on the adversarial logits, CE(z + log N, y) (``bsl``; plain CE
   without it) + λ·TAIL (``tail``, λ = ``tail_weight``), see :func:`tail_loss`. TAIL works on
   ``model.features(x')``; the logits are ``model.head`` of the same features (one forward pass).

``reat`` computes TAIL per pair as the paper writes it; ``reat-official`` (``per_pair = False``)
reproduces the reduction of the authors' public code. Ablations: ``--set reat.rbl=false``,
``reat.tail=false``, ``reat.bsl=false``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ltbench.method import Method, balanced_softmax_ce, effective_number
from ltbench.registry import register_method


def first_tail_class(num_classes: int) -> int:
    """Tail classes for TAIL are ⌊C/3⌋·2 + 1 … C − 1 (C = 10: 7, 8, 9; C = 100: 67 … 99)."""
    return (num_classes // 3) * 2 + 1


def rbl_weights(ae_counts: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    """RBL class weights from the predicted-class counts n of the AEs and the training counts N.

    β_i = (N_i − 1)/N_i, E_i = (1 − β_i^{n_i})/(1 − β_i), w_i = 1/(E_i + 1e−5), Σ w_i = C.
    """
    N = class_counts.float().clamp_min(1.0)
    E = effective_number(ae_counts.float(), 1.0 / N)
    w = 1.0 / (E + 1e-5)
    return w * (N.numel() / w.sum())


def tail_loss(features: torch.Tensor, labels: torch.Tensor, class_counts: torch.Tensor,
              per_pair: bool = True) -> torch.Tensor:
    """TAIL, the feature-space penalty of REAT, for one batch; one batched computation, no host sync.

    For every tail anchor i (y_i ≥ ⌊C/3⌋·2 + 1) and every sample j of the batch (j = i included):
    s_ij = −1 if y_i = y_j else +1, W_ij = w_{y_i} + w_{y_j} with w_c = sqrt(1/π_c), and
    K_ij = KL(p_i ‖ q_j), p_i = softmax(f_i) detached (a fixed target), q_j = softmax(f_j), softmax
    over the feature dimension D.

    * ``per_pair=True`` (the paper): Σ_{i anchor} Σ_j s_ij·W_ij·K_ij / (#anchors · B).
    * ``per_pair=False`` (the authors' code): per anchor, one KL averaged over all j and all D
      feature elements, (1/(B·D)) Σ_j K_ij, times mean_j(s_ij·W_ij); then the mean over anchors.

    Both are 0 when the batch holds no tail sample. Half-precision features are computed in fp32.
    """
    f = features if features.dtype == torch.float64 else features.float()
    B, D = f.shape
    counts = class_counts.to(f.device, f.dtype).clamp_min(1.0)
    w = (counts.sum() / counts).sqrt()  # sqrt(1 / prior)
    anchor = (labels >= first_tail_class(counts.numel())).to(f.dtype)
    log_q = F.log_softmax(f, dim=1)
    log_p = log_q.detach()
    p = log_p.exp()
    # K_ij = Σ_d p_id log p_id − Σ_d p_id log q_jd
    kl = (p * log_p).sum(1, keepdim=True) - p @ log_q.t()
    same = labels[:, None] == labels[None, :]
    wy = w[labels]
    signed_w = torch.where(same, -1.0, 1.0).to(f.dtype) * (wy[:, None] + wy[None, :])
    n_anchor = anchor.sum().clamp_min(1.0)
    if per_pair:
        return (anchor[:, None] * signed_w * kl).sum() / (n_anchor * B)
    per_anchor = kl.mean(1) / D * signed_w.mean(1)
    return (anchor * per_anchor).sum() / n_anchor


@dataclass
class REATConfig:
    """REAT (Li, Xu, Zhang 2023; DESIGN.md "REAT, precisely"): switches for RBL, TAIL and the
    Balanced Softmax outer loss, the TAIL weight λ (1), and TAIL's reduction (per pair = paper)."""

    rbl: bool = True
    tail: bool = True
    bsl: bool = True
    tail_weight: float = 1.0
    per_pair: bool = True


@register_method("reat")
class REAT(Method):
    """REAT (Li, Xu, Zhang 2023): RBL inner loss, Balanced Softmax + λ·TAIL outer loss (TAIL per pair)."""

    Config = REATConfig

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        # Before the first epoch the "AE counts" are the training counts.
        self.ae_counts = torch.zeros_like(self.class_counts)
        self.rbl_w = rbl_weights(self.class_counts, self.class_counts)

    def attack_loss(self, logits_adv, y, ctx):
        ce = F.cross_entropy(logits_adv.float(), y, reduction="none")
        if self.config.rbl:
            ce = self.rbl_w[y] * ce
        return ce.sum()

    def train_loss(self, model, x, x_adv, y, ctx):
        c = self.config
        feats = model.features(x_adv)
        logits_adv = model.head(feats)
        if c.bsl:
            loss = balanced_softmax_ce(logits_adv, y, self.class_counts)
        else:
            loss = F.cross_entropy(logits_adv.float(), y)
        if c.tail and c.tail_weight:
            loss = loss + c.tail_weight * tail_loss(feats, y, self.class_counts, per_pair=c.per_pair)
        return loss, logits_adv

    def observe(self, logits_adv, y, ctx):
        pred = logits_adv.argmax(1)
        # index_add_, not bincount: CUDA's bincount reads the maximum back to the host.
        self.ae_counts.index_add_(0, pred, torch.ones_like(pred, dtype=self.ae_counts.dtype))

    def on_epoch_end(self, epoch):
        self.rbl_w = rbl_weights(self.ae_counts, self.class_counts)
        self.ae_counts = torch.zeros_like(self.ae_counts)

    def state_dict(self):
        return {"ae_counts": self.ae_counts.clone(), "rbl_weights": self.rbl_w.clone()}

    def load_state_dict(self, state):
        dev = self.class_counts.device
        self.ae_counts = state["ae_counts"].to(dev, torch.float32).clone()
        self.rbl_w = state["rbl_weights"].to(dev, torch.float32).clone()


@register_method("reat-official")
class REATOfficial(REAT):
    """REAT as the authors' public code computes TAIL: each anchor's KL averaged before weighting."""

    @dataclass
    class Config(REATConfig):
        """REAT with TAIL reduced as in the authors' code (``per_pair = False``)."""

        per_pair: bool = False
