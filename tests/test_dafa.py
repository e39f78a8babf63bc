"""DAFA (Lee et al., ICLR 2024) against a slow reference written from the paper, against the
authors' attack and loss as their code defines them (rucy74/DAFA, ``losses.trades_loss``), through
the engine, and exact resume."""
from __future__ import annotations

import math

import pytest
import torch

from ltbench.engine.train import adversarial_examples, train_step
from ltbench.errors import LtbenchError
from ltbench.method import BatchContext, EpochStats
from ltbench.losses import kl_rows
from ltbench.method_factory import build_method
from methods.dafa import warmup_epochs
from oracles import dafa_weights_loop
from test_methods import C, COUNTS, _batch, _model_for, _states_equal, no_host_reads, straight_and_resumed, tiny_job
from test_wat_frl import _inputs, _per_sample_terms

pytestmark = pytest.mark.usefixtures("one_thread")


def _recording_ctx(model, x, y, epochs=10):
    """A batch of the recording epoch (the warm-up's last) of a job of ``epochs`` epochs."""
    return BatchContext(model, x, y, COUNTS, 0.1, warmup_epochs(70 / 110, epochs) - 1, step=0.02, epochs=epochs)


def test_warmup_is_the_authors_share_of_the_epochs():
    assert warmup_epochs(70 / 110, 110) == 70  # the authors' 70 of 110
    assert warmup_epochs(70 / 110, 20) == 13  # fmnist-lt: measured before the first decay (epoch 15)
    assert warmup_epochs(0.0, 5) == 1 and warmup_epochs(1.0, 5) == 5
    with pytest.raises(LtbenchError, match="dafa.warmup"):
        build_method("dafa", {"warmup": "1.5"}, C, COUNTS)


@pytest.mark.parametrize("lam", [1.0, 1.5, 4.0])
def test_weights_from_the_recording_epoch_match_the_paper(lam):
    """Batches of an epoch, shuffled (each image once), through observe → on_epoch_end: the weights
    of a loop over images and class pairs; a class absent from the epoch keeps W = 1."""
    method = build_method("dafa", {"lam": str(lam)}, C, COUNTS)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(C - 1).repeat_interleave(torch.tensor([30, 20, 12, 9, 7, 5, 4, 3, 2]))  # class 9 absent
    logits = torch.randn(len(y), C, generator=g) * 2 + 3 * torch.nn.functional.one_hot(y, C)
    perm = torch.randperm(len(y), generator=g)
    with no_host_reads():
        for b in range(0, len(y), 16):
            idx = perm[b:b + 16]
            method.observe(logits[idx], y[idx], _recording_ctx(None, None, y[idx]))
        method.on_epoch_end(5, EpochStats(torch.zeros(C)))
    probs = torch.softmax(logits.double(), 1).tolist()
    expected = dafa_weights_loop(probs, y.tolist(), C, lam)
    assert method.class_weights.tolist() == pytest.approx(expected, abs=1e-6)
    assert expected[C - 1] == 1.0 and min(expected) < 1.0 < max(expected)
    # measured once: a later epoch neither records nor changes them
    later = BatchContext(None, None, y[:16], COUNTS, 0.1, 8, step=0.02, epochs=10)
    method.observe(logits[:16], y[:16], later)
    method.on_epoch_end(8, EpochStats(torch.zeros(C)))
    assert method.class_weights.tolist() == pytest.approx(expected, abs=1e-6)


def test_budget_and_loss_match_a_per_sample_reference():
    method = build_method("dafa", {}, C, COUNTS)
    method.class_weights = torch.linspace(-0.2, 1.6, C)  # a negative weight: budget 0, loss weight kept
    model = _model_for(method).eval()
    x, x_adv, y = _inputs()
    w = method.class_weights.tolist()
    warm = BatchContext(model, x, y, COUNTS, 0.1, 3, step=0.02, epochs=10)  # epoch 3 < 6: the warm-up
    assert method.attack_budget(0.1, 0.02, warm) == (0.1, 0.02)
    ctx = BatchContext(model, x, y, COUNTS, 0.1, 6, step=0.02, epochs=10)
    eps, step = method.attack_budget(0.1, 0.02, ctx)
    for i, c in enumerate(y.tolist()):
        assert eps[i].item() == pytest.approx(0.1 * max(w[c], 0.0), abs=1e-7)
        assert step[i].item() == pytest.approx(0.02 * max(w[c], 0.0), abs=1e-7)
    terms = _per_sample_terms(model, x, x_adv, y)
    for context, weights in ((warm, [1.0] * C), (ctx, w)):
        loss, _ = method.train_loss(model, x, x_adv, y, context)
        expected = sum(weights[int(y[i])] * ce + 6.0 * kl for i, (ce, kl) in enumerate(terms)) / len(y)
        assert loss.item() == pytest.approx(expected, rel=1e-5)


def _authors_trades_attack(model, x, y, class_weights, eps, step, steps, start):
    """The attack of the authors' ``trades_loss`` as their code defines it: the mask W_{y_b}; from
    x + 0.001·N(0, I) (not clipped), ``steps`` times x' ← x' + W_{y_b}·α·sign(∇ KL), clipped to
    [x − W_{y_b}·ε, x + W_{y_b}·ε], then to [0, 1]; the clean target in eval mode."""
    model.eval()
    mask = torch.zeros(len(y))
    for c in range(len(class_weights)):
        mask[y == c] = class_weights[c]
    m = mask.view(-1, 1, 1, 1)
    with torch.no_grad():
        target = model(x)
    x_adv = x + start
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(kl_rows(target, model(x_adv)).sum(), x_adv)
        x_adv = x_adv.detach() + m * step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - m * eps), x + m * eps).clamp(0.0, 1.0)
    return x_adv.detach()


def test_attack_and_loss_match_the_authors_definitions():
    """ltbench's step (attack budget, PGD with the TRADES start unclipped, weighted loss) against the
    authors' trades_loss written from their code, on the same model, batch, weights and start."""
    method = build_method("dafa", {}, C, COUNTS)
    method.class_weights = torch.linspace(0.7, 1.3, C)
    model = _model_for(method)
    x, y = _batch()
    torch.manual_seed(5)
    start = 0.001 * torch.randn(x.shape)
    theirs = _authors_trades_attack(model, x, y, method.class_weights, 0.1, 0.02, 5, start)
    ctx = BatchContext(model, x, y, COUNTS, 0.1, step=0.02)
    eps, step = method.attack_budget(0.1, 0.02, ctx)
    ctx.eps, ctx.step = eps, step
    torch.manual_seed(5)  # the same draw: ltbench's TRADES start is 0.001·randn_like(x)
    ours = adversarial_examples(model, model, method, x, y, ctx, eps=eps, step=step, steps=5, clip_start=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert (ours - x).abs().amax((1, 2, 3)).max() > 0.1  # the heaviest classes went beyond the job's ε
    model.train()
    loss, _ = method.train_loss(model, x, ours, y, ctx)
    logits_nat, logits_adv = model(x), model(theirs)
    mask = method.class_weights[y]
    their_loss = (torch.nn.functional.cross_entropy(logits_nat, y, reduction="none") * mask).mean() \
        + 6.0 * torch.nn.functional.kl_div(torch.log_softmax(logits_adv, 1), torch.softmax(logits_nat, 1),
                                           reduction="sum") / len(y)
    assert loss.item() == pytest.approx(their_loss.item(), rel=1e-5)


def test_recording_step_has_no_host_reads():
    method = build_method("dafa", {}, C, COUNTS)
    model = _model_for(method)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _batch()
    with no_host_reads():
        for epoch in (5, 6):  # the recording epoch of 10, then the first weighted one
            ctx = BatchContext(model, x, y, method.class_counts, 0.1, epoch, step=0.05, epochs=10)
            train_step(model, model, method, opt, x, y, ctx, eps=0.1, step=0.05, steps=2)
            method.on_epoch_end(epoch, EpochStats(torch.zeros(C)))
    assert not torch.equal(method.class_weights, torch.ones(C))
    assert math.isfinite(method.class_weights.sum().item())


@pytest.mark.parametrize("kill_epoch", [1, 2])
def test_dafa_resume_is_exact(kill_epoch, tmp_path, monkeypatch):
    """Killed at the start of the recording epoch (1) or after it (2) of 3; warm-up 2 epochs."""
    cfg = tiny_job("dafa", epochs=3, method_params={"warmup": "0.5"})
    a, b = straight_and_resumed(cfg, tmp_path, monkeypatch, kill_epoch=kill_epoch)
    assert a["epoch"] == b["epoch"] == 3
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["method"], b["method"])
    assert set(a["method"]) == {"class_weights"} and not torch.equal(a["method"]["class_weights"], torch.ones(C))
