"""FAAL (Zhang et al., CVPR 2024) against slow references written from the authors' code
(TrustAI/FAAL: ``FAAL.DAW`` and ``ft_prn.py``), through the engine, and exact resume."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ltbench.errors import LtbenchError
from ltbench.method import BatchContext
from ltbench.method_factory import build_method
from methods.faal import class_weights, softmax_margins
from oracles import faal_weights_reference
from test_methods import C, COUNTS, _model_for, _states_equal, straight_and_resumed, tiny_job
from test_wat_frl import _inputs, _per_sample_terms

pytest.importorskip("scipy")
pytestmark = pytest.mark.usefixtures("one_thread")


def _kl_uniform(w):
    return sum(math.log((1 / len(w)) / v) for v in w) / len(w)


def _authors_margins(logits, y):
    """The authors' ``cw``: softmax, then the largest other probability minus the label's."""
    out = []
    for row, c in zip(torch.softmax(logits.double(), 1).tolist(), y.tolist()):
        out.append(max(v for j, v in enumerate(row) if j != c) - row[c])
    return out


@pytest.mark.parametrize("r", [0.0, 0.05, 0.5, 2.0])
def test_class_weights_solve_the_authors_problem(r):
    g = torch.Generator().manual_seed(int(r * 100))
    labels = torch.cat([torch.arange(C - 1), torch.randint(0, 5, (40,), generator=g)])  # class 9 absent
    margins = (torch.rand(len(labels), generator=g) * 2 - 1).tolist()
    sums = torch.zeros(C).index_add_(0, labels, torch.tensor(margins))
    w = class_weights(sums, r).tolist()
    ref = faal_weights_reference(margins, labels.tolist(), C, r)
    assert sum(w) == pytest.approx(1.0, abs=1e-6) and _kl_uniform(w) <= r + 1e-4
    value = sum(w[c] * m for m, c in zip(margins, labels.tolist()))
    ref_value = sum(ref[c] * m for m, c in zip(margins, labels.tolist()))
    assert value == pytest.approx(ref_value, abs=1e-4 * max(1.0, abs(ref_value)))  # the same optimum
    assert w == pytest.approx(ref, abs=2e-3)
    if r == 0.0:
        assert w == pytest.approx([1 / C] * C, abs=1e-5)  # the ball is the uniform distribution


def test_margins_are_the_authors_cw():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(30, C, generator=g) * 3
    y = torch.randint(0, C, (30,), generator=g)
    assert softmax_margins(logits, y).tolist() == pytest.approx(_authors_margins(logits, y), abs=1e-6)


@pytest.mark.parametrize("base", ["at", "trades"])
def test_loss_matches_the_authors_weighted_loss(base):
    """(C / B) Σ_b w[y_b] ℓ_b with w from the per-class mean margins (``ft_prn.py``), per sample."""
    method = build_method("faal", {"base": base, "r": "0.5"}, C, COUNTS)
    model = _model_for(method).eval()
    x, x_adv, y = _inputs()
    y = torch.where(torch.arange(len(y)) < 6, torch.zeros_like(y), y)  # uneven classes in the batch
    loss, _ = method.train_loss(model, x, x_adv, y, BatchContext(model, x, y, COUNTS, 0.1))
    with torch.no_grad():
        logits_adv = model(x_adv)
    margins = _authors_margins(logits_adv, y)
    w = faal_weights_reference(margins, y.tolist(), C, 0.5)
    terms = _per_sample_terms(model, x, x_adv, y)
    if base == "at":
        per_sample = F.cross_entropy(logits_adv.double(), y, reduction="none").tolist()
    else:
        per_sample = [ce + 6.0 * kl for ce, kl in terms]
    expected = C / len(y) * sum(w[int(c)] * v for c, v in zip(y, per_sample))
    assert loss.item() == pytest.approx(expected, rel=2e-3)
    plain = sum(per_sample) / len(per_sample)
    assert loss.item() != pytest.approx(plain, rel=1e-3)  # the weights act


def test_gradient_holds_the_weights_fixed():
    """The weights are a constant of the update (the authors' solver returns numbers)."""
    method = build_method("faal", {}, C, COUNTS)
    model = _model_for(method).eval()
    x, x_adv, y = _inputs()
    loss, _ = method.train_loss(model, x, x_adv, y, BatchContext(model, x, y, COUNTS, 0.1))
    (g,) = torch.autograd.grad(loss, model.head.weight)
    logits = model(x_adv)
    ce = F.cross_entropy(logits.float(), y, reduction="none")
    m = softmax_margins(logits.detach(), y)
    w = class_weights(torch.zeros(C).index_add_(0, y, m), 0.5)
    (g_ref,) = torch.autograd.grad(C / len(y) * (w[y] * ce).sum(), model.head.weight)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


def test_bad_config_is_one_line_error():
    with pytest.raises(LtbenchError, match="faal.base"):
        build_method("faal", {"base": "mart"}, C, COUNTS)
    with pytest.raises(LtbenchError, match="faal.r"):
        build_method("faal", {"r": "-1"}, C, COUNTS)


def test_faal_resume_is_exact(tmp_path, monkeypatch):
    cfg = tiny_job("faal", epochs=3)
    a, b = straight_and_resumed(cfg, tmp_path, monkeypatch, kill_epoch=1)
    assert a["epoch"] == b["epoch"] == 3
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["optimizer"], b["optimizer"])
