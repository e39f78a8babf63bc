"""REAT: Li, Xu, Zhang, "Alleviating the Effect of Data Imbalance on Adversarial Training",
arXiv 2307.10205 (2023). Implemented as DESIGN.md ("REAT") defines it.

Two switchable parts, with N_i the training count of class i and C classes:

1. RBL — re-balanced inner loss (``rbl``). n_i = how many adversarial examples of the previous
   epoch were *predicted* as class i (before the first epoch n_i = N_i). With β_i = (N_i − 1)/N_i,
   E_i = (1 − β_i^{n_i}) / (1 − β_i) (the effective number), w_i = 1 / (E_i + 10⁻⁵), normalised so
   Σ w_i = C, PGD ascends Σ_b w_{y_b} · CE(z(x'_b), y_b). The counts are the engine's (its
   epoch histogram of the adversarial examples' predictions, :class:`~ltbench.method.EpochStats`);
   they become weights in :meth:`REAT.on_epoch_end`, and the weights live in the state dict, so a
   resumed run uses exactly the weights an uninterrupted one would.
2. Outer loss: Balanced Softmax CE on the adversarial logits, CE(z + log N, y) (``bsl``; plain CE
   without it) + λ·TAIL (``tail``, λ = ``tail_weight``), see :class:`TailLoss`. TAIL works on
   ``model.features(x')``; the logits are ``model.head`` of the same features (one forward pass).

``reat`` computes TAIL per pair as the paper writes it; ``reat-official`` (``per_pair = False``)
reproduces the reduction of the authors' public code. Ablations: ``--set reat.rbl=false``,
``reat.tail=false``, ``reat.bsl=false``.

Departures from the authors' code: ``reat`` departs on purpose in TAIL's reduction (per pair, as the
paper writes it; ``reat-official`` is the authors'); the PGD random start is clipped to [0, 1]
(ltbench's default); the authors' uniform start is not (``--no-clip-start`` reproduces it); their
script selects the best epoch on the test set (``select_on = test`` in the paper presets).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ltbench.method import Method
from ltbench.losses import balanced_softmax_ce, effective_number, logit_adjustment
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


def tail_pair_weights(class_counts: torch.Tensor) -> torch.Tensor:
    """TAIL's coefficient for an anchor of class a and a sample of class b, as a C × C matrix G.

    G[a, b] = [a is a tail class] · s_ab · (w_a + w_b), s_ab = −1 if a = b else +1,
    w_c = sqrt(1/π_c) with π the training prior. It depends on the classes only, so TAIL's
    B × B weights s_ij·W_ij of the anchors are G[y_i, y_j]. Computed in fp64; returned in the
    counts' floating dtype (fp32 for integer counts).
    """
    dtype = class_counts.dtype if class_counts.is_floating_point() else torch.float32
    counts = class_counts.double().clamp_min(1.0)
    w = (counts.sum() / counts).sqrt()
    classes = torch.arange(counts.numel(), device=counts.device)
    sign = 1.0 - 2.0 * (classes[:, None] == classes[None, :]).double()
    is_tail = (classes >= first_tail_class(counts.numel())).double()
    return (is_tail[:, None] * sign * (w[:, None] + w[None, :])).to(dtype)


class TailLoss:
    """TAIL, the feature-space penalty of REAT, for fixed training class counts: about fifteen
    batched operations per batch, no host sync, no B × B matrix. Called as ``tail(features, labels)``.

    For every tail anchor i (y_i ≥ ⌊C/3⌋·2 + 1) and every sample j of the batch (j = i included):
    s_ij = −1 if y_i = y_j else +1, W_ij = w_{y_i} + w_{y_j} with w_c = sqrt(1/π_c), and
    K_ij = KL(p_i ‖ q_j), p_i = softmax(f_i) detached (a fixed target), q_j = softmax(f_j), softmax
    over the feature dimension D.

    * ``per_pair=True`` (the paper): Σ_{i anchor} Σ_j s_ij·W_ij·K_ij / (#anchors · B).
    * ``per_pair=False`` (the authors' code): per anchor, one KL averaged over all j and all D
      feature elements, (1/(B·D)) Σ_j K_ij, times mean_j(s_ij·W_ij); then the mean over anchors.

    Both are 0 when the batch holds no tail sample, and both are multiplied by ``weight`` (REAT's λ,
    folded with 1/B into the class-pair weights, see :meth:`scaled_weights`). Features are used in
    fp32 (fp64 with fp64 class counts), outside autocast.

    How it is computed. Both reductions are Σ_ij A_ij·K_ij / (#anchors · B): per pair
    A_ij = G[y_i, y_j] with G = :func:`tail_pair_weights` (zero rows for non-anchors); for the
    authors' reduction A_ij = R_i / (B·D), constant along j. With R_i = Σ_j A_ij,
    M_j = Σ_i A_ij p_i and K_ij = p_i·log p_i − p_i·log q_j,

        Σ_ij A_ij K_ij = Σ_i R_i p_i·log p_i − Σ_j M_j·log q_j = Σ_j (R_j p_j − M_j)·log q_j,

    since p_j = q_j in value. A depends on the classes only, so M_j = (Gᵀ S)[y_j] with S the
    per-class sums of p (C × D) and R_i = (G n)[y_i] with n the batch's class counts: O(B·D + C²·D)
    work. Only log q carries the gradient: as a function of f with p fixed, the last form differs
    from the definition by −Σ_j R_j·KL(p_j ‖ q_j), which is 0 and has zero gradient at q = p, so
    value and gradient are the definition's (a second derivative would not be). A plain object,
    not an ``nn.Module``: it has no parameters, and a module call costs as much as three of its
    operations.
    """

    def __init__(self, class_counts: torch.Tensor, per_pair: bool = True, weight: float = 1.0):
        if not weight:
            raise ValueError("TailLoss weight must be non-zero (leave TAIL out instead)")
        self.per_pair = per_pair
        self.weight = float(weight)
        self.pair_weights = tail_pair_weights(class_counts)  # G
        # The device type as a string: `features.device.type` in every call costs as much as an operation.
        self.device_type = self.pair_weights.device.type
        self._scaled = {}

    def to(self, device: torch.device) -> "TailLoss":
        self.pair_weights = self.pair_weights.to(device)
        self.device_type = self.pair_weights.device.type
        self._scaled = {}
        return self

    def scaled_weights(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(−λ/B)·G with the tail-class indicator as an extra row (one product gives G n and
        #anchors), and (−λ/B)·Gᵀ, for batch size B: built once per batch size (a study has two, the
        full and the last batch), so the step spends no operation on λ and B."""
        weights = self._scaled.get(batch_size)
        if weights is None:
            is_tail = (self.pair_weights.diagonal() != 0).to(self.pair_weights.dtype)  # G's non-zero rows
            G = self.pair_weights * (-self.weight / batch_size)
            weights = self._scaled[batch_size] = (torch.cat([G, is_tail[None]]), G.t().contiguous())
        return weights

    def __call__(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dtype = self.pair_weights.dtype
        f = features if features.dtype == dtype else features.to(dtype)
        if torch.is_autocast_enabled(self.device_type):  # bf16 matrix products would blur the loss
            with torch.autocast(self.device_type, enabled=False):
                return self._loss(f, labels)
        return self._loss(f, labels)

    def _loss(self, f: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        B, D = f.shape
        weights_and_tail, weights_t = self.scaled_weights(B)
        log_q = torch.log_softmax(f, 1)
        p = log_q.detach().exp()  # softmax(f), the fixed target; nothing computed from it is differentiated
        S = p.new_zeros(weights_t.shape[0], D).index_add_(0, labels, p)
        # S.sum(1) = n (rows of p sum to 1); one product gives (−λ/B)·G n and #anchors, as a column.
        Gn = torch.mm(weights_and_tail, S.sum(1, keepdim=True))
        R = Gn.index_select(0, labels)  # B × 1
        if self.per_pair:
            M = torch.mm(weights_t, S).index_select(0, labels)
        else:  # A_ij = R_i / (B·D): R_i / D, and the same M_j = Σ_i R_i p_i / (B·D) for every j
            R = R / D
            M = torch.mm(R.t(), p).div_(B).expand(B, D)
        coef = torch.addcmul(M, R, p, value=-1).div_(Gn[-1].clamp_min(1.0))  # both are scaled by −λ/B
        return torch.vdot(coef.view(-1), log_q.view(-1))  # λ·Σ_j (R_j p_j − M_j)·log q_j / (#anchors·B)


def tail_loss(features: torch.Tensor, labels: torch.Tensor, class_counts: torch.Tensor,
              per_pair: bool = True) -> torch.Tensor:
    """:class:`TailLoss` for one call (the class-pair weights are recomputed, in fp64 for fp64 features)."""
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    return TailLoss(class_counts.to(features.device, dtype), per_pair)(features, labels)


@dataclass
class REATConfig:
    """REAT (Li, Xu, Zhang 2023; DESIGN.md "REAT"): switches for RBL, TAIL and the
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
    cost_factor = 1.03  # the TAIL term over the batch's tail anchors
    side_by_side = "reat-official"  # the report shows REAT as written beside REAT as its authors coded it
    step_cost_target = 1.05  # TAIL vectorised (methods.reat.TailLoss): at most 5 % over PGD-AT's step

    def __init__(self, config, num_classes, class_counts):
        super().__init__(config, num_classes, class_counts)
        # Before the first epoch the "AE counts" are the training counts.
        self.rbl_w = rbl_weights(self.class_counts, self.class_counts)
        self.adjustment = logit_adjustment(self.class_counts)  # log N, once per job
        self.tail_loss = (TailLoss(self.class_counts, per_pair=config.per_pair, weight=config.tail_weight)
                          if config.tail and config.tail_weight else None)

    def attack_loss(self, logits_adv, y, ctx):
        # Σ_i w_{y_i}·CE_i: cross_entropy's class weights with reduction="sum" do it in one kernel.
        return F.cross_entropy(logits_adv.float(), y, weight=self.rbl_w if self.config.rbl else None,
                               reduction="sum")

    def train_loss(self, model, x, x_adv, y, ctx):
        c = self.config
        feats = model.features(x_adv)
        logits_adv = model.head(feats)
        if c.bsl:
            loss = balanced_softmax_ce(logits_adv, y, self.adjustment)
        else:
            loss = F.cross_entropy(logits_adv.float(), y)
        if self.tail_loss is not None:
            loss = loss + self.tail_loss(feats, y)  # λ·TAIL: λ is folded into TailLoss
        return loss, logits_adv

    def to(self, device):
        super().to(device)
        if self.tail_loss is not None:
            self.tail_loss.to(device)
        return self

    def on_epoch_end(self, epoch, stats):
        # The engine's histogram of the epoch's AE predictions: counting them here too would add
        # three operations to every step.
        self.rbl_w = rbl_weights(stats.adv_pred_counts, self.class_counts)

    def state_dict(self):
        return {"rbl_weights": self.rbl_w.clone()}

    def load_state_dict(self, state):  # a checkpoint may also hold "ae_counts" (zeros, not read)
        self.rbl_w = state["rbl_weights"].to(self.class_counts.device, torch.float32).clone()


@register_method("reat-official")
class REATOfficial(REAT):
    """REAT as the authors' public code computes TAIL: each anchor's KL averaged before weighting."""

    cost_factor = 1.1
    side_by_side = None  # shown beside REAT (REAT.side_by_side)
    step_cost_target = None  # the authors' loss, timed as it is

    @dataclass
    class Config(REATConfig):
        """REAT with TAIL reduced as in the authors' code (``per_pair = False``)."""

        per_pair: bool = False
