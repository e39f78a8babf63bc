"""CFA (Wei et al., CVPR 2023) against slow references written from the paper, through the engine,
exact resume, and --init-from (a job started from another job's evaluated weights)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from ltbench.engine.train import EVAL_WEIGHTS, Trainer, load_job_weights, run_job, train_step
from ltbench.engine.validation import ValidationStats
from ltbench.errors import LtbenchError
from ltbench.method import BatchContext, EpochStats
from ltbench.method_factory import build_method
from methods.cfa import worst_class
from test_methods import C, COUNTS, _batch, _model_for, _states_equal, no_host_reads, straight_and_resumed, tiny_job

pytestmark = pytest.mark.usefixtures("one_thread")


def _per_class_acc_reference(pred: list[int], y: list[int]) -> list[float]:
    """True per-class accuracy, one sample at a time."""
    right, n = [0] * C, [0] * C
    for p, t in zip(pred, y):
        n[t] += 1
        right[t] += p == t
    return [r / k if k else 0.0 for r, k in zip(right, n)]


def test_ccm_budgets_follow_last_epochs_per_class_robust_accuracy():
    method = build_method("cfa", {"begin": "3"}, C, COUNTS)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(C).repeat_interleave(torch.tensor([30, 20, 10, 8, 6, 5, 4, 3, 2, 1]))  # long-tailed
    pred = torch.where(torch.rand(len(y), generator=g) < 0.6, y, (y + 1) % C)
    acc = _per_class_acc_reference(pred.tolist(), y.tolist())
    method.on_epoch_end(1, EpochStats(torch.zeros(C), torch.tensor(acc)))  # epoch 2 < begin: unchanged
    x = torch.zeros(C, 1, 8, 8)
    yb = torch.arange(C)
    ctx = BatchContext(None, x, yb, COUNTS, 0.1, epoch=2, step=0.02, epochs=20)
    assert method.attack_budget(0.1, 0.02, ctx) == (0.1, 0.02)
    method.on_epoch_end(2, EpochStats(torch.zeros(C), torch.tensor(acc)))  # feeds epoch 3 = begin
    ctx = BatchContext(None, x, yb, COUNTS, 0.1, epoch=3, step=0.02, epochs=20)
    eps, step = method.attack_budget(0.1, 0.02, ctx)
    assert step == 0.02  # CCM leaves the step alone (the authors' fixed α)
    for c in range(C):
        assert eps[c].item() == pytest.approx((0.5 + acc[c]) * 0.1, rel=1e-6)  # ε_c = (λ₁ + t_c)·ε


def test_ccr_loss_matches_a_per_sample_reference():
    method = build_method("cfa", {"begin": "0", "lambda2": "0.3"}, C, COUNTS)
    acc = torch.linspace(0.0, 0.9, C)
    method.on_epoch_end(0, EpochStats(torch.zeros(C), acc))
    model = _model_for(method).eval()  # eval: logits per sample do not depend on the batch
    x, y = _batch(20)
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    ctx = BatchContext(model, x, y, COUNTS, 0.1, epoch=1)
    loss, _ = method.train_loss(model, x, x_adv, y, ctx)
    with torch.no_grad():
        z, z_adv = model(x).double(), model(x_adv).double()
    total = 0.0
    for i in range(len(y)):
        c = int(y[i])
        p = [math.exp(v) for v in torch.log_softmax(z[i], 0).tolist()]
        q = [math.exp(v) for v in torch.log_softmax(z_adv[i], 0).tolist()]
        ce = -math.log(p[c])
        kl = sum(pk * (math.log(pk) - math.log(qk)) for pk, qk in zip(p, q))
        b = (0.3 + acc[c].item()) * 6.0
        beta_c = b / (1 + b)
        total += (1 - beta_c) * ce + beta_c * kl
    assert loss.item() == pytest.approx(total / len(y), rel=1e-5)
    # before CCR starts, β'_c = β / (1 + β): TRADES divided by 1 + β
    plain = build_method("cfa", {}, C, COUNTS)
    trades = build_method("trades", {}, C, COUNTS)
    a, _ = plain.train_loss(model, x, x_adv, y, ctx)
    b, _ = trades.train_loss(model, x, x_adv, y, ctx)
    assert a.item() == pytest.approx(b.item() / 7.0, rel=1e-5)


def _val(adv_acc, counts=None):
    adv = torch.tensor(adv_acc, dtype=torch.float32)
    n = torch.ones(C) if counts is None else torch.tensor(counts, dtype=torch.float32)
    z = torch.zeros(C)
    return ValidationStats(n, z, adv, z, z, z, z)


def test_fawa_averages_only_when_the_worst_class_passes():
    method = build_method("cfa", {"threshold": "0.2", "decay": "0.5"}, C, COUNTS)
    model = torch.nn.Linear(3, 2)
    worst = [0.1, 0.3, 0.15, 0.25]  # passes in the 2nd and 4th epochs
    ref, snapshots = None, []
    for epoch, w in enumerate(worst):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0 + epoch)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        accs = [w] + [0.9] * (C - 1)
        method.on_epoch_end(epoch, EpochStats(torch.zeros(C), torch.zeros(C), _val(accs), model))
        if w >= 0.2:  # the paper's rule, one tensor at a time
            ref = ({k: v.clone() for k, v in snapshots[-1].items()} if ref is None else
                   {k: 0.5 * ref[k] + 0.5 * snapshots[-1][k] for k in ref})
        if ref is None:
            assert method.eval_weights() is None
        else:
            got = method.eval_weights()
            assert all(torch.allclose(got[k], ref[k]) for k in ref)
    # a class without validation images does not count as the worst
    assert worst_class(torch.tensor([0.0, 0.5]), torch.tensor([0.0, 3.0])).item() == 0.5


def test_step_has_no_host_reads_with_ccm_and_ccr_active():
    method = build_method("cfa", {"begin": "0"}, C, COUNTS)
    method.on_epoch_end(0, EpochStats(torch.zeros(C), torch.linspace(0, 1, C)))
    model = _model_for(method)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _batch()
    with no_host_reads():
        ctx = BatchContext(model, x, y, method.class_counts, 0.1, epoch=1, epochs=3)
        train_step(model, model, method, opt, x, y, ctx, eps=0.1, step=0.05, steps=2)
        method.on_epoch_end(1, EpochStats(torch.zeros(C), torch.linspace(0, 1, C), _val([0.5] * C), model))


def _cfa_job(**kw):
    return tiny_job("cfa", epochs=3, method_params={"begin": "1", "threshold": "0"}, val_attack_steps=1, **kw)


def test_cfa_job_evaluates_and_saves_the_average(tmp_path):
    job = tmp_path / "cfa"
    result = run_job(_cfa_job(), job)
    assert result["evaluated_weights"] == EVAL_WEIGHTS and result["validation"]["n_per_class"] == 100
    # begin is in the authors' 200 epochs: 1 · 3 / 200 rounds to 0, a positive start stays ≥ 1 epoch
    assert result["schedules"] == {"cfa.begin": {"given": 1, "paper_epochs": 200, "job_epochs": 3, "resolved": 1}}
    assert result["method_config"]["begin"] == 1 and result["config"]["scale_schedules"] is True
    ck = torch.load(job / "checkpoint.pt", weights_only=True)
    avg = {k[len("fawa."):]: v for k, v in ck["method"].items() if k.startswith("fawa.")}
    saved = torch.load(job / EVAL_WEIGHTS, weights_only=True)
    assert _states_equal(saved, avg) and not _states_equal(saved, ck["model"])
    # the Python API loads the evaluated weights, with the counts trained on (validation images excluded)
    from ltbench.api import load_model

    loaded = load_model(job)
    assert loaded.weights.name == EVAL_WEIGHTS and list(loaded.class_counts) == result["dataset"]["train_counts"]
    assert _states_equal({k: v.contiguous() for k, v in loaded.model.state_dict().items()},
                         {k: v.contiguous() for k, v in saved.items()})
    # --init-from: a job starts from those weights (fine-tuning), recorded in config.json
    cfg = tiny_job("pgd-at", epochs=1, init_from=str(job))
    fine = Trainer(cfg, tmp_path / "fine")
    assert _states_equal({k: v for k, v in fine.model.state_dict().items()}, saved)
    run_job(cfg, tmp_path / "fine")
    assert json.loads((tmp_path / "fine" / "config.json").read_text())["init_from"] == str(job)


def test_init_from_needs_a_finished_compatible_job(tmp_path):
    with pytest.raises(LtbenchError, match="not a finished job"):
        load_job_weights(tmp_path)
    run_job(tiny_job("pgd-at"), tmp_path / "a")
    with pytest.raises(LtbenchError, match="model_params"):
        Trainer(tiny_job("pgd-at", init_from=str(tmp_path / "a"), model_params={"width": 6}), tmp_path / "b")
    assert not (tmp_path / "b" / "config.json").exists()
    (tmp_path / "a" / "checkpoint.pt").unlink()  # as in a fresh clone of a committed study
    with pytest.raises(LtbenchError, match="no checkpoint.pt there .*move its result.json away"):
        load_job_weights(tmp_path / "a")


def test_cfa_resume_is_exact(tmp_path, monkeypatch):
    cfg = _cfa_job()
    a, b = straight_and_resumed(cfg, tmp_path, monkeypatch, kill_epoch=2)
    assert a["epoch"] == b["epoch"] == 3
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["method"], b["method"])
    assert any(k.startswith("fawa.") for k in a["method"])
    assert not torch.equal(a["method"]["eps_factor"], torch.ones(C))  # CCM did act
