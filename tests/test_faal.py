"""FAAL (Zhang et al., CVPR 2024) against slow references written from its min-max-max
formulation, through the engine, and exact resume."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.method import BatchContext, build_method
from methods.faal import worst_class_distribution
from oracles import kl_ball_worst_distribution
from test_methods import C, COUNTS, _model_for, _states_equal, straight_and_resumed, tiny_job
from test_wat_frl import _inputs, _per_sample_terms

pytestmark = pytest.mark.usefixtures("one_thread")


def _kl(q, p):
    return sum(a * math.log(a / b) for a, b in zip(q, p) if a > 0)


@pytest.mark.parametrize("rho", [0.0, 0.05, 0.5, 1.5, 5.0])
def test_middle_max_matches_the_kl_ball_solution(rho):
    g = torch.Generator().manual_seed(int(rho * 100))
    losses = (torch.rand(C, generator=g) * 3).tolist()
    prior = torch.tensor([30.0, 20, 15, 10, 9, 7, 4, 3, 2, 0])  # a batch without class 9
    prior = (prior / prior.sum()).tolist()
    q = worst_class_distribution(torch.tensor(losses), torch.tensor(prior), rho).tolist()
    ref = kl_ball_worst_distribution(losses, prior, rho)
    assert q == pytest.approx(ref, abs=2e-4)
    assert q[9] == 0.0 and sum(q) == pytest.approx(1.0, abs=1e-6)
    assert _kl(q, prior) <= rho + 1e-4
    # no distribution of the ball does better: random ones, pulled into the ball towards the prior
    value = sum(a * b for a, b in zip(q, losses))
    d = torch.distributions.Dirichlet(torch.ones(C - 1))
    torch.manual_seed(0)
    for _ in range(300):
        r = d.sample().tolist() + [0.0]
        t = 1.0
        while _kl([t * a + (1 - t) * b for a, b in zip(r, prior)], prior) > rho:
            t /= 2
        cand = [t * a + (1 - t) * b for a, b in zip(r, prior)]
        assert sum(a * b for a, b in zip(cand, losses)) <= value + 1e-4


def test_loss_is_the_tilted_class_mean_and_rho_zero_is_pgd_at():
    x, x_adv, y = _inputs()
    y = torch.where(torch.arange(len(y)) < 8, torch.zeros_like(y), y)  # uneven classes in the batch
    for rho in (0.0, 0.7):
        method = build_method("faal", {"rho": str(rho)}, C, COUNTS)
        model = _model_for(method).eval()
        loss, _ = method.train_loss(model, x, x_adv, y, BatchContext(model, x, y, COUNTS, 0.1))
        with torch.no_grad():
            ce = F.cross_entropy(model(x_adv).double(), y, reduction="none").tolist()
        labels = y.tolist()
        counts = [labels.count(c) for c in range(C)]
        class_loss = [sum(v for v, c in zip(ce, labels) if c == k) / counts[k] if counts[k] else 0.0 for k in range(C)]
        q = kl_ball_worst_distribution(class_loss, [n / len(y) for n in counts], rho)
        assert loss.item() == pytest.approx(sum(a * b for a, b in zip(q, class_loss)), rel=1e-4)
        if rho == 0.0:
            assert loss.item() == pytest.approx(sum(ce) / len(ce), rel=1e-4)  # conventional AT
        else:
            assert loss.item() > sum(ce) / len(ce) + 1e-3


def test_gradient_holds_the_weights_fixed():
    """Danskin: ∇ max_q Σ q_c L_c = Σ q*_c ∇L_c, q* not differentiated."""
    method = build_method("faal", {"rho": "0.7"}, C, COUNTS)
    model = _model_for(method).eval()
    x, x_adv, y = _inputs()
    loss, _ = method.train_loss(model, x, x_adv, y, BatchContext(model, x, y, COUNTS, 0.1))
    (g,) = torch.autograd.grad(loss, model.head.weight)
    logits = model(x_adv)
    ce = F.cross_entropy(logits.float(), y, reduction="none")
    n = torch.bincount(y, minlength=C).float()
    q = worst_class_distribution(torch.zeros(C).index_add_(0, y, ce.detach()) / n.clamp_min(1), n / len(y), 0.7)
    (g_ref,) = torch.autograd.grad((q[y] / n[y] * ce).sum(), model.head.weight)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


def test_trades_base_weighs_the_trades_terms():
    method = build_method("faal", {"base": "trades", "rho": "0.3"}, C, COUNTS)
    model = _model_for(method).eval()
    x, x_adv, y = _inputs()
    loss, _ = method.train_loss(model, x, x_adv, y, BatchContext(model, x, y, COUNTS, 0.1))
    terms = [ce + 6.0 * kl for ce, kl in _per_sample_terms(model, x, x_adv, y)]
    labels = y.tolist()
    counts = [labels.count(c) for c in range(C)]
    class_loss = [sum(v for v, c in zip(terms, labels) if c == k) / counts[k] for k in range(C)]
    q = kl_ball_worst_distribution(class_loss, [n / len(y) for n in counts], 0.3)
    assert loss.item() == pytest.approx(sum(a * b for a, b in zip(q, class_loss)), rel=1e-4)


def test_bad_config_is_one_line_error():
    with pytest.raises(LtbenchError, match="faal.base"):
        build_method("faal", {"base": "mart"}, C, COUNTS)
    with pytest.raises(LtbenchError, match="faal.rho"):
        build_method("faal", {"rho": "-1"}, C, COUNTS)


def test_faal_resume_is_exact(tmp_path, monkeypatch):
    cfg = tiny_job("faal", epochs=3)
    a, b = straight_and_resumed(cfg, tmp_path, monkeypatch, kill_epoch=1)
    assert a["epoch"] == b["epoch"] == 3
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["optimizer"], b["optimizer"])
