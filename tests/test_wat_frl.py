"""WAT (Li & Liu, AAAI 2023) and FRL (Xu et al., ICML 2021) against slow references written from
the papers, through the engine, and exact resume."""
from __future__ import annotations

import math

import pytest
import torch

from ltbench.engine.train import Trainer, run_job
from ltbench.engine.validation import ValidationStats
from ltbench.errors import LtbenchError
from ltbench.method import BatchContext, EpochStats
from ltbench.method_factory import build_method
from test_methods import C, COUNTS, _batch, _model_for, _states_equal, no_host_reads, straight_and_resumed, tiny_job

pytestmark = pytest.mark.usefixtures("one_thread")


def _val(seed, counts=None, **fixed):
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.rand(C, generator=g)  # noqa: E731
    n = torch.full((C,), 5.0) if counts is None else torch.tensor(counts, dtype=torch.float32)
    clean = r()
    adv = clean * r()
    fields = dict(counts=n, clean_acc=clean, adv_acc=adv, clean_loss=2 * r(), adv_loss=3 * r(), kl=r(),
                  boundary_err=clean - adv)
    fields.update(fixed)
    return ValidationStats(**fields)


def _per_sample_terms(model, x, x_adv, y):
    with torch.no_grad():
        z, z_adv = model(x).double(), model(x_adv).double()
    out = []
    for i in range(len(y)):
        p = torch.softmax(z[i], 0).tolist()
        q = torch.softmax(z_adv[i], 0).tolist()
        out.append((-math.log(p[int(y[i])]), sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q))))
    return out


def _inputs():
    x, y = _batch(20)
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    return x, x_adv, y


# --- WAT -------------------------------------------------------------------------------------------


def test_wat_weights_follow_the_hedge_rule():
    method = build_method("wat", {"eta": "0.3"}, C, COUNTS)
    assert torch.equal(method.weights, torch.ones(C + 1))  # before any measurement
    counts = [5] * (C - 1) + [0]  # the last class has no validation image
    sums = [0.0] * (C + 1)
    for epoch in range(3):
        val = _val(epoch, counts)
        with no_host_reads():
            method.on_epoch_end(epoch, EpochStats(torch.zeros(C), None, val))
        costs = [(val.clean_loss[c] + 6.0 * val.kl[c]).item() if counts[c] else 0.0 for c in range(C)]
        costs.append(sum(costs[:C - 1]) / (C - 1))  # mean over the classes that have images
        sums = [s + v for s, v in zip(sums, costs)]
        e = [math.exp(0.3 * s) for s in sums]
        ref = [C * v / sum(e) for v in e]
        assert method.weights.tolist() == pytest.approx(ref, rel=1e-5)
    assert method.weights.sum().item() == pytest.approx(C, rel=1e-6)


def test_wat_loss_matches_a_per_sample_reference():
    method = build_method("wat", {}, C, COUNTS)
    method.on_epoch_end(0, EpochStats(torch.zeros(C), None, _val(1)))
    model = _model_for(method).eval()
    x, x_adv, y = _inputs()
    loss, _ = method.train_loss(model, x, x_adv, y, BatchContext(model, x, y, COUNTS, 0.1))
    w = method.weights.tolist()
    terms = _per_sample_terms(model, x, x_adv, y)
    weighted = sum(w[int(y[i])] * (ce + 6.0 * kl) for i, (ce, kl) in enumerate(terms)) / len(y)
    expected = weighted + w[C] * sum(ce + 6.0 * kl for ce, kl in terms) / len(y)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# --- FRL -------------------------------------------------------------------------------------------


def _frl_reference(vals, epochs, *, remargin=True, rate1=0.05, rate2=0.2, b0=0.07, b1=0.07, lim=0.5, halve=40):
    """Algorithm 1 of the paper, one class at a time with Python floats; ``vals[k]`` is measured
    after 0-based epoch ``epochs[k]`` (−1: the initial model) and sets the next epoch's weights.
    The defaults are the authors' ``frlrmrw.py`` (remargin)."""
    l0, l1, l2 = [0.0] * C, [0.0] * C, [0.0] * C
    out = []

    def proj(v):
        v = [max(0.0, a) for a in v]
        s = sum(v)
        return [lim * a / s for a in v] if s > lim else v

    for val, epoch in zip(vals, epochs):
        n_next = epoch + 2  # the 1-based epoch these weights are for
        a1 = rate1 / 2 ** (n_next // halve)
        ce = [1 - a for a in val.clean_acc.tolist()]
        be = val.boundary_err.tolist()
        g0 = [e - sum(ce) / C - b0 for e in ce]
        g1 = [e - sum(be) / C - b1 for e in be]
        l0 = proj([a + a1 * g for a, g in zip(l0, g0)])
        l1 = proj([a + 2 * a1 * g for a, g in zip(l1, g1)])
        if remargin:
            l2 = [a + rate2 * g for a, g in zip(l2, g1)]
        w0 = [1 / C + (C - 1) / C * l0[i] - sum(l0[j] for j in range(C) if j != i) / C for i in range(C)]
        w1 = [1 / C + (C - 1) / C * l1[i] - sum(l1[j] for j in range(C) if j != i) / C for i in range(C)]
        eps = [min(3.0, max(0.98, math.exp(2 * a))) for a in l2]
        out.append((w0, w1, eps))
    return out


@pytest.mark.parametrize("remargin", [True, False])
def test_frl_multipliers_weights_and_margins_follow_algorithm_1(remargin):
    method = build_method("frl", {"remargin": str(remargin), "halve_every": "2", "lim": "0.3"}, C, COUNTS)
    # large gaps, so the projection onto Σλ ≤ lim and the ε clip both act
    vals = [_val(s, boundary_err=torch.linspace(0, 0.9, C) * (s + 1)) for s in range(4)]
    epochs = [-1, 0, 1, 2]
    bound = 0.07 if remargin else 0.1  # frlrmrw.py, frlrw.py
    ref = _frl_reference(vals, epochs, remargin=remargin, halve=2, lim=0.3, b0=bound, b1=bound)
    for val, epoch, (w0, w1, eps) in zip(vals, epochs, ref):
        with no_host_reads():
            method.on_epoch_end(epoch, EpochStats(torch.zeros(C), None, val))
        assert method.w_clean.tolist() == pytest.approx(w0, abs=1e-6)
        assert method.w_bndy.tolist() == pytest.approx(w1, abs=1e-6)
        assert method.eps_factor.tolist() == pytest.approx(eps, abs=1e-6)
    assert method.lmbda[1].sum().item() <= 0.3 + 1e-6 and (method.w_bndy > 0).all()
    if remargin:
        assert method.eps_factor.max().item() > 1.0


def test_frl_defaults_are_each_variants_scripts():
    remargin, reweight = build_method("frl", {}, C, COUNTS).config, build_method("frl", {"remargin": "false"}, C, COUNTS).config
    assert (remargin.beta, remargin.bound0, remargin.bound1, remargin.rate1, remargin.rate2) == (1.5, 0.07, 0.07, 0.05, 0.2)
    assert (reweight.beta, reweight.bound0, reweight.bound1, reweight.rate1) == (1.5, 0.1, 0.1, 0.05)
    assert build_method("frl", {"remargin": "false", "bound1": "0.2"}, C, COUNTS).config.bound1 == 0.2
    with pytest.raises(LtbenchError, match="halve_every"):
        build_method("frl", {"halve_every": "0"}, C, COUNTS)


def test_frl_loss_and_budget_match_a_per_sample_reference():
    """utils_frl.train_model: Σ w⁰·CE / Σ w⁰ + β·Σ w¹·KL / Σ w¹, each term by its own weights; and
    utils_frl2.trades_adv: ε_c per sample, step max ε_c / 4. At these weights the old form
    Σ (w⁰·CE + β·w¹·KL) / Σ (w⁰ + w¹) and the job's step differ from them."""
    method = build_method("frl", {}, C, COUNTS)
    for epoch in range(-1, 3):  # a few updates, so the weights move well away from 1/C
        method.on_epoch_end(epoch, EpochStats(torch.zeros(C), None, _val(3, boundary_err=torch.linspace(0, 0.9, C))))
    model = _model_for(method).eval()
    x, x_adv, y = _inputs()
    ctx = BatchContext(model, x, y, COUNTS, 0.1, step=0.02)
    loss, _ = method.train_loss(model, x, x_adv, y, ctx)
    w0, w1 = method.w_clean.tolist(), method.w_bndy.tolist()
    assert max(w1) > 1.5 * min(w1)  # the weights moved
    terms = _per_sample_terms(model, x, x_adv, y)
    ws0, ws1 = [w0[int(c)] for c in y], [w1[int(c)] for c in y]
    clean = sum(w * ce for w, (ce, _) in zip(ws0, terms)) / sum(ws0)
    bndy = sum(w * kl for w, (_, kl) in zip(ws1, terms)) / sum(ws1)
    assert loss.item() == pytest.approx(clean + 1.5 * bndy, rel=1e-5)
    old = sum(a * ce + 1.5 * b * kl for a, b, (ce, kl) in zip(ws0, ws1, terms)) / (sum(ws0) + sum(ws1))
    assert abs(loss.item() - old) > 0.1 * old

    with no_host_reads():
        eps, step = method.attack_budget(0.1, 0.02, ctx)
    factors = method.eps_factor.tolist()
    eps_ref = [0.1 * factors[int(c)] for c in y]
    assert eps.tolist() == pytest.approx(eps_ref, rel=1e-6)
    assert step.tolist() == pytest.approx([max(eps_ref) / 4] * len(y), rel=1e-6) and max(eps_ref) / 4 > 0.03
    eps, step = build_method("frl", {"max_eps_step": "false"}, C, COUNTS).attack_budget(0.1, 0.02, ctx)
    assert step == 0.02
    assert build_method("frl", {"remargin": "false"}, C, COUNTS).attack_budget(0.1, 0.02, ctx) == (0.1, 0.02)


def test_methods_need_the_validation_split_in_a_job():
    for name in ("wat", "frl"):
        method = build_method(name, {}, C, COUNTS)
        with pytest.raises(LtbenchError, match="validation split"):
            method.on_epoch_end(0, EpochStats(torch.zeros(C), torch.zeros(C), None, torch.nn.Linear(1, 1)))


@pytest.mark.parametrize("name", ["wat", "frl"])
def test_resume_is_exact(name, tmp_path, monkeypatch):
    cfg = tiny_job(name, epochs=3, val_attack_steps=1)
    a, b = straight_and_resumed(cfg, tmp_path, monkeypatch, kill_epoch=2)
    assert a["epoch"] == b["epoch"] == 3
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["method"], b["method"])
    moved = a["method"]["weights"] if name == "wat" else a["method"]["lmbda"]
    assert not torch.equal(moved, torch.ones_like(moved) if name == "wat" else torch.zeros_like(moved))


def test_frl_measures_the_initial_model(tmp_path, monkeypatch):
    from methods.frl import FRL

    seen = []
    original = FRL.on_epoch_end

    def spy(self, epoch, stats):
        seen.append((epoch, stats.val is not None))
        return original(self, epoch, stats)

    monkeypatch.setattr(FRL, "on_epoch_end", spy)
    run_job(tiny_job("frl", epochs=2, val_attack_steps=1), tmp_path)
    assert seen == [(-1, True), (0, True), (1, True)]  # the initial model, then each epoch


def test_init_from_is_filled_in_per_job_and_kept_as_written(tmp_path, monkeypatch):
    import argparse

    from ltbench.study.cli import add_arguments
    from ltbench.study.grid import build_jobs, study_spec

    monkeypatch.chdir(tmp_path)
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--methods", "frl", "--seeds", "0", "1", "--init-from", "s/pgd-at__{dataset}__r{ratio:g}__s{seed}"])
    jobs = build_jobs(study_spec(args))
    # relative stays relative: the same config.json in every clone of a committed study
    assert [j.init_from for j in jobs] == [f"s/pgd-at__fmnist__r0.01__s{s}" for s in (0, 1)]
    with pytest.raises(LtbenchError, match="only {dataset}"):
        build_jobs(study_spec(p.parse_args(["--methods", "frl", "--init-from", "s/{model}"])))


@pytest.mark.parametrize("name, params, fails", [("wat", {}, True), ("frl", {}, True), ("cfa", {}, True),
                                                  ("cfa", {"fawa": "false"}, False)])
def test_a_job_without_the_validation_split_it_needs_fails_before_training(name, params, fails, tmp_path):
    cfg = tiny_job(name, val_n_per_class=0, method_params=params)
    if fails:
        with pytest.raises(LtbenchError, match="needs a validation split"):
            Trainer(cfg, tmp_path)
    else:
        assert Trainer(cfg, tmp_path).x_val is None
