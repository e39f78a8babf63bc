"""The method-API hooks (per-sample budgets, steps without attack, weight perturbations), the
modifiers built on them (AWP, RobustLT) and TAET: each checked against a slow reference written
from its paper, plus the plumbing (``'reat +awp'`` specs, config.json, checkpoints)."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from ltbench.attacks.pgd import pgd_perturb, uniform_start
from ltbench.engine.train import Trainer, adversarial_examples, run_job, train_step
from ltbench.errors import LtbenchError
from ltbench.method import BatchContext
from ltbench.method_factory import build_method
from ltbench.modifier import parse_spec
from ltbench.registry import DATASETS, MODIFIERS
from ltbench.study.grid import build_jobs
from methods.awp import AWP
from methods.robustlt import class_budget_factors, ramp
from methods.taet import harl_loss
from test_methods import C, COUNTS, _batch, _model_for, _states_equal, no_host_reads, straight_and_resumed, tiny_job

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True, scope="module")
def _forget_tiny_dataset():
    yield
    DATASETS._items.pop("tiny-test", None)


def _ctx(model, x, y, method, **kw):
    return BatchContext(model, x, y, method.class_counts, 0.1, step=0.05, **kw)


# --- per-sample budgets in the training PGD ------------------------------------------------------


def test_uniform_start_for_a_float_is_the_draw_pgd_at_always_made():
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(0)
    a = uniform_start(x, 0.1)
    torch.manual_seed(0)
    b = torch.empty_like(x).uniform_(-0.1, 0.1)
    assert torch.equal(a, b)


def test_per_sample_pgd_equals_the_scalar_path_for_equal_budgets():
    model = _model_for(build_method("pgd-at", {}, C, COUNTS)).eval()
    x, y = _batch(12)
    zero = torch.zeros_like  # a deterministic start: both paths see the same iterates
    scalar = pgd_perturb(model, x, y, eps=0.1, step=0.03, steps=3, start=zero)
    per = pgd_perturb(model, x, y, eps=torch.full((12,), 0.1), step=torch.full((12,), 0.03), steps=3, start=zero)
    assert torch.equal(scalar, per)


def test_per_sample_pgd_stays_in_each_samples_ball():
    model = _model_for(build_method("pgd-at", {}, C, COUNTS)).eval()
    x, y = _batch(20)
    eps = torch.linspace(0.0, 0.2, 20)
    torch.manual_seed(0)
    x_adv = pgd_perturb(model, x, y, eps=eps, step=eps / 4, steps=5)
    dist = (x_adv - x).abs().flatten(1).amax(1)
    assert torch.all(dist <= eps + 1e-6) and x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv[0], x[0])  # ε = 0: the sample itself
    assert torch.all(dist[5:] > 0.5 * eps[5:])  # and the larger budgets are used


# --- modifier specs, jobs, configuration ---------------------------------------------------------


def test_parse_spec_labels_and_targets():
    s = parse_spec("reat --no-tail")
    assert (s.name, s.overrides, s.modifiers, s.label) == ("reat", {"tail": "false"}, {}, "reat+no-tail")
    assert parse_spec("pgd-at").label is None
    s = parse_spec("at-bsl --tau=1.5 +awp --gamma=0.005 +robustlt")
    assert s.overrides == {"tau": "1.5"}
    assert s.modifiers == {"awp": {"gamma": "0.005"}, "robustlt": {}}
    assert list(s.modifiers) == ["awp", "robustlt"]
    assert s.label == "at-bsl+tau=1.5+awp+gamma=0.005+robustlt"
    for bad in ("+awp", "pgd-at +", "pgd-at +awp +awp", "pgd-at awp", "pgd-at ++awp"):
        with pytest.raises(LtbenchError):
            parse_spec(bad)


def _spec(methods, **params):
    return {"methods": methods, "datasets": ["fmnist"], "ratios": [0.01], "seeds": [0],
            "method_params": params, "model_params": {}}


def test_build_jobs_names_and_records_modifiers():
    jobs = build_jobs(_spec(["reat --no-tail", "reat +robustlt", "at-bsl +awp", "pgd-at"], awp={"gamma": "0.005"}))
    by_name = {j.job_name: j for j in jobs}
    assert set(by_name) == {"reat+no-tail__fmnist__r0.01__s0", "reat+robustlt__fmnist__r0.01__s0",
                            "at-bsl+awp__fmnist__r0.01__s0", "pgd-at__fmnist__r0.01__s0"}
    awp = by_name["at-bsl+awp__fmnist__r0.01__s0"]
    assert awp.method == "at-bsl" and awp.modifiers == {"awp": {"gamma": "0.005"}}
    assert awp.to_dict()["modifiers"] == {"awp": {"gamma": "0.005"}}
    assert by_name["reat+no-tail__fmnist__r0.01__s0"].method_params == {"tail": "false"}
    assert "modifiers" not in by_name["pgd-at__fmnist__r0.01__s0"].to_dict()  # config.json as before


@pytest.mark.parametrize("methods, params, match", [
    (["pgd-at +nope"], {}, "unknown modifier 'nope'"),
    (["pgd-at +awp"], {"awp": {"gama": "1"}}, "has no parameter 'gama'"),
    (["pgd-at +awp --gamma=abc"], {}, "not a valid float"),
    (["pgd-at"], {"awp": {"gamma": "0.1"}}, "not in this study: awp"),
])
def test_bad_modifiers_fail_before_anything_runs(methods, params, match):
    with pytest.raises(LtbenchError, match=match):
        build_jobs(_spec(methods, **params))


def test_modifier_state_and_config_round_trip():
    method = build_method("reat", {}, C, COUNTS, {"robustlt": {"alpha": "0.5"}, "awp": {}})
    assert isinstance(method, AWP) and method.inner.inner.registered_name == "reat"
    cfg = method.config_dict()
    assert cfg["+robustlt"] == {"alpha": 0.5, "beta": 0.8} and cfg["+awp"] == {"gamma": 0.01, "warmup": 0}
    assert cfg["tail_weight"] == 1.0  # the method's own configuration is all there
    assert set(method.state_dict()) == {"rbl_weights"}  # the modifiers carry no state of their own
    method.load_state_dict({"rbl_weights": torch.ones(C)})
    assert torch.equal(method.inner.inner.rbl_w, torch.ones(C))
    assert sorted(MODIFIERS.names()) == ["awp", "robustlt"]


# --- RobustLT ----------------------------------------------------------------------------------


def robustlt_budgets_reference(counts: list[float], eps: float, alpha: float) -> list[float]:
    """ε_c = (1 − α)ε + τ·sqrt(log(n_max/n_c))·ε, τ = α / Σ π_c sqrt(log(n_max/n_c)), written as loops."""
    n_max, total = max(counts), sum(counts)
    r = [math.sqrt(math.log(n_max / n)) for n in counts]
    tau = alpha / sum(n / total * rc for n, rc in zip(counts, r))
    return [(1 - alpha) * eps + tau * rc * eps for rc in r]


@pytest.mark.parametrize("alpha", [0.3, 0.7])
def test_robustlt_budgets_match_the_paper(alpha):
    counts = COUNTS.tolist()
    eps = 8 / 255
    ref = robustlt_budgets_reference(counts, eps, alpha)
    got = (class_budget_factors(COUNTS, alpha).double() * eps).tolist()
    assert got == pytest.approx(ref, rel=1e-6)
    prior = COUNTS.double() / COUNTS.sum()
    assert float((prior * torch.tensor(got)).sum()) == pytest.approx(eps, rel=1e-6)  # prior-weighted mean is ε
    assert got[0] == pytest.approx((1 - alpha) * eps) and got[-1] == max(got)
    assert class_budget_factors(torch.full((C,), 7.0), alpha).tolist() == [1.0] * C  # balanced: ε for all


def test_robustlt_ramp_and_per_sample_budget():
    assert [ramp(e, 10, 0.8) for e in (0, 4, 8, 9)] == [0.0, 0.5, 1.0, 1.0]
    assert ramp(0, 10, 0.0) == 1.0 and ramp(3, None, 0.8) == 1.0
    method = build_method("trades", {}, C, COUNTS, {"robustlt": {}})
    x, y = _batch()
    ref = robustlt_budgets_reference(COUNTS.tolist(), 0.1, 0.3)
    for epoch, intensity in ((0, 0.0), (2, 2 / 8), (9, 1.0)):
        ctx = _ctx(None, x, y, method, epoch=epoch, epochs=10)
        eps, step = method.attack_budget(0.1, 0.05, ctx)
        want = torch.tensor([ref[c] * intensity for c in y.tolist()])
        torch.testing.assert_close(eps.double(), want.double(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(step.double(), want.double() / 0.1 * 0.05, rtol=1e-6, atol=1e-9)


def test_robustlt_attack_uses_the_class_budgets_and_evaluation_keeps_eps(tmp_path):
    method = build_method("pgd-at", {}, C, COUNTS, {"robustlt": {"beta": "0"}})
    model = _model_for(method)
    x, y = _batch()
    ctx = _ctx(model, x, y, method, epoch=0, epochs=4)
    eps, step = method.attack_budget(0.1, 0.05, ctx)
    ctx.eps, ctx.step = eps, step
    torch.manual_seed(0)
    x_adv = adversarial_examples(model, model, method, x, y, ctx, eps=eps, step=step, steps=3)
    dist = (x_adv - x).abs().flatten(1).amax(1)
    assert torch.all(dist <= eps + 1e-6) and dist.max() > 0.1  # rare classes go beyond the job's ε

    result = run_job(tiny_job("pgd-at", label="pgd-at+robustlt", modifiers={"robustlt": {}}), tmp_path)
    assert result["attack"]["eps"] == 0.1  # the dataset's ε, not a training budget
    assert result["method_config"]["+robustlt"] == {"alpha": 0.3, "beta": 0.8}
    assert json.loads((tmp_path / "config.json").read_text())["modifiers"] == {"robustlt": {}}


# --- AWP ---------------------------------------------------------------------------------------


def awp_step_reference(model, method, opt, x, x_adv, y, ctx, gamma):
    """Algorithm 1 of Wu et al. as the authors run it: a proxy copy in train mode takes one SGD step
    ascending the method's loss; its per-layer difference, scaled to ‖w‖ and times γ, is added to
    the weights, the step is taken there, and the perturbation is subtracted again."""
    proxy = copy.deepcopy(model)
    proxy.train()
    proxy_opt = torch.optim.SGD(proxy.parameters(), lr=0.01)
    loss, _ = method.train_loss(proxy, x, x_adv, y, ctx)
    proxy_opt.zero_grad()
    (-loss).backward()
    proxy_opt.step()
    diff = {}
    for (k, old), (_, new) in zip(model.state_dict().items(), proxy.state_dict().items()):
        if old.dim() > 1 and "weight" in k:
            d = new - old
            diff[k] = old.norm() / (d.norm() + 1e-20) * d
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, d in diff.items():
            params[k].add_(gamma * d)
    loss, _ = method.train_loss(model, x, x_adv, y, ctx)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        for k, d in diff.items():
            params[k].sub_(gamma * d)
    return diff


@pytest.mark.parametrize("name", ["pgd-at", "trades"])
def test_awp_step_matches_the_papers_algorithm(name):
    plain = build_method(name, {}, C, COUNTS)
    awp = build_method(name, {}, C, COUNTS, {"awp": {"gamma": "0.01", "warmup": "0"}})
    model = _model_for(plain)
    ref_model = copy.deepcopy(model)
    untouched = copy.deepcopy(model)
    x, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        torch.manual_seed(1)
        ctx = _ctx(model, x, y, awp)
        train_step(model, model, awp, opt, x, y, ctx, eps=0.1, step=0.05, steps=2)
        torch.manual_seed(1)
        ref_ctx = _ctx(ref_model, x, y, plain)
        x_adv = adversarial_examples(ref_model, ref_model, plain, x, y, ref_ctx, eps=0.1, step=0.05, steps=2)
        ref_model.train()
        diff = awp_step_reference(ref_model, plain, ref_opt, x, x_adv, y, ref_ctx, 0.01)
    assert diff and all(v.abs().sum() > 0 for v in diff.values())
    for (k, a), b in zip(model.state_dict().items(), ref_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)  # weights and BatchNorm statistics

    # mutation check: the same two steps without AWP end elsewhere
    opt = torch.optim.SGD(untouched.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        torch.manual_seed(1)
        train_step(untouched, untouched, plain, opt, x, y, _ctx(untouched, x, y, plain), eps=0.1, step=0.05, steps=2)
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(untouched.state_dict().values(),
                                                                   model.state_dict().values()))


def test_awp_defaults_are_the_authors_for_at_and_for_trades():
    assert build_method("pgd-at", {}, C, COUNTS, {"awp": {}}).config_dict()["+awp"] == {"gamma": 0.01, "warmup": 0}
    assert build_method("trades", {}, C, COUNTS, {"awp": {}}).config_dict()["+awp"] == {"gamma": 0.005, "warmup": 9}
    assert build_method("trades", {}, C, COUNTS, {"awp": {"warmup": "0"}}).config.warmup == 0  # overrides win


def test_awp_warmup_epochs_are_the_plain_method_bit_for_bit():
    plain = build_method("pgd-at", {}, C, COUNTS)
    awp = build_method("pgd-at", {}, C, COUNTS, {"awp": {"warmup": "3"}})
    a = _model_for(plain)
    b = copy.deepcopy(a)
    x, y = _batch()
    for model, method in ((a, plain), (b, awp)):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        torch.manual_seed(2)
        train_step(model, model, method, opt, x, y, _ctx(model, x, y, method, epoch=2, epochs=5),
                   eps=0.1, step=0.05, steps=2)
    assert _states_equal(a.state_dict(), b.state_dict())


# --- TAET --------------------------------------------------------------------------------------


def harl_reference(logits, y, num_classes, alpha, beta, gamma, absent):
    """HARL (TAET) with a loop over classes, from the paper's definitions."""
    ce = F.cross_entropy(logits.double(), y, reduction="none")
    L, present = [], []
    for c in range(num_classes):
        mask = y == c
        present.append(bool(mask.any()))
        L.append(ce[mask].mean() if mask.any() else ce.new_zeros(()))
    L = torch.stack(L)
    keep = L if absent == "zero" else L[torch.tensor(present)]
    mean = keep.mean()
    var = ((keep - mean) ** 2).mean()
    return alpha * mean + beta * var + gamma * ((L / L.sum()) ** 2).sum()


@pytest.mark.parametrize("absent", ["zero", "present"])
def test_harl_matches_the_reference(absent):
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 0, 1, 3, 3, 3, 7, 9])  # classes 2, 4, 5, 6, 8 absent
    logits = torch.randn(len(y), C, generator=g, requires_grad=True)
    got = harl_loss(logits, y, C, 0.1, 0.2, 0.3, absent)
    ref = harl_reference(logits, y, C, 0.1, 0.2, 0.3, absent)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-7)
    (g1,) = torch.autograd.grad(got, logits)
    (g2,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g1.double(), g2.double(), rtol=1e-4, atol=1e-7)
    other = harl_loss(logits, y, C, 0.1, 0.2, 0.3, "present" if absent == "zero" else "zero")
    assert not torch.allclose(got, other)  # the option matters when classes are absent


def test_taet_stage1_is_a_standard_step_without_attack(monkeypatch):
    import ltbench.engine.train as T

    calls = []
    real = T.adversarial_examples
    monkeypatch.setattr(T, "adversarial_examples", lambda *a, **k: calls.append(1) or real(*a, **k))
    taet = build_method("taet", {}, C, COUNTS)
    a = _model_for(taet)
    b = copy.deepcopy(a)
    x, y = _batch()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    train_step(a, a, taet, opt_a, x, y, _ctx(a, x, y, taet, epoch=3, epochs=10), eps=0.1, step=0.05, steps=2)
    assert calls == []  # epoch 3 of 10 is in the first 40 %
    opt_b = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    loss = F.cross_entropy(b(x), y)  # the standard step, by hand
    opt_b.zero_grad()
    loss.backward()
    opt_b.step()
    assert _states_equal(a.state_dict(), b.state_dict())
    train_step(a, a, taet, opt_a, x, y, _ctx(a, x, y, taet, epoch=4, epochs=10), eps=0.1, step=0.05, steps=2)
    assert calls == [1]  # stage 2 attacks


@pytest.mark.parametrize("spec", ["taet +robustlt +awp", "reat +awp"])
def test_hooks_have_no_host_reads(spec):
    s = parse_spec(spec)
    method = build_method(s.name, s.overrides, C, COUNTS, s.modifiers)
    model = _model_for(method)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _batch()
    with no_host_reads():
        for epoch in (0, 9):
            train_step(model, model, method, opt, x, y, _ctx(model, x, y, method, epoch=epoch, epochs=10),
                       eps=0.1, step=0.05, steps=2)


# --- resume: a killed run ends exactly like an uninterrupted one ---------------------------------


@pytest.mark.parametrize("method, modifiers", [("pgd-at", {"robustlt": {}, "awp": {}}), ("taet", {})])
def test_resume_is_exact_with_hooks(tmp_path, monkeypatch, method, modifiers):
    cfg = tiny_job(method, epochs=3, modifiers=modifiers, method_params={"stage1": "0.34"} if method == "taet" else {})
    a, b = straight_and_resumed(cfg, tmp_path, monkeypatch, kill_epoch=2)
    assert a["epoch"] == b["epoch"] == 3
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["method"], b["method"])


# --- options where ltbench differs from an authors' script, and the peer presets ----------------------


@pytest.mark.parametrize("clip", [True, False])
def test_clip_start_option(clip):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return x.flatten(1)[:, :C] * 10

    x, y = torch.zeros(6, 1, 8, 8), torch.arange(6)
    torch.manual_seed(0)
    x_adv = pgd_perturb(Recorder(), x, y, eps=0.1, step=0.05, steps=2, clip_start=clip)
    assert (seen[0].min() >= 0) == clip  # the first forward pass: clipped start or not
    assert x_adv.min() >= 0 and x_adv.max() <= 0.1 + 1e-7  # the iterates are clipped either way
    torch.manual_seed(0)
    per = pgd_perturb(Recorder(), x, y, eps=torch.full((6,), 0.1), step=0.05, steps=2, clip_start=clip)
    assert len(seen) == 4 and (seen[2].min() >= 0) == clip and per.min() >= 0  # [2]: its first forward


def _preset_jobs(name, *flags):
    import argparse

    from ltbench.study.cli import add_arguments
    from ltbench.study.grid import study_spec

    p = argparse.ArgumentParser()
    add_arguments(p)
    return build_jobs(study_spec(p.parse_args(["--preset", name, *flags])))


def test_at_bsl_preset_is_the_authors_script():
    from ltbench.data import PolicyAugment
    from ltbench.engine.train import make_optimizer

    jobs = _preset_jobs("cifar10-lt-at-bsl-paper")
    j = next(j for j in jobs if j.method == "at-bsl")
    assert (j.model, j.epochs, j.batch_size, j.lr, j.momentum, j.weight_decay, j.ratio) == \
        ("resnet18", 100, 128, 0.1, 0.9, 5e-4, 0.02)
    opt, sched = make_optimizer(torch.nn.Linear(1, 1), j, 1)
    lrs = []
    for _ in range(j.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # train_at_bsl_cifar10.py: 0.1, ×0.1 from epoch 75, ×0.01 from 90, ×0.001 at 100 (1-based)
    want = [0.1] * 74 + [0.01] * 15 + [0.001] * 10 + [0.0001]
    assert lrs == pytest.approx(want)
    assert j.augment == "randaugment" and PolicyAugment(j.augment, **j.augment_params).transform.magnitude == 8
    assert j.clip_start is False and (j.select_best, j.select_from, j.select_n_per_class) == ("pgd20", 75, 1000)
    assert j.select_on == "test"  # the script selects on the test set
    assert j.to_dict()["clip_start"] is False and "modifiers" not in j.to_dict()


def test_robustlt_preset_runs_each_method_with_and_without_robustlt():
    jobs = {j.job_name.split("__")[0]: j for j in _preset_jobs("cifar10-lt-robustlt") if j.seed == 0}
    assert set(jobs) == {"pgd-at", "pgd-at+robustlt", "at-bsl", "at-bsl+robustlt", "pgd-at+awp",
                         "pgd-at+robustlt+awp", "reat", "reat+robustlt", "robal", "robal+robustlt", "taet",
                         "taet+robustlt+beta=1.0"}
    epochs = {k: (j.epochs, [round(f * j.epochs) for f in j.lr_milestones]) for k, j in jobs.items()}
    assert epochs["pgd-at"] == epochs["taet+robustlt+beta=1.0"] == (100, [75, 90])
    assert epochs["pgd-at+robustlt+awp"] == (200, [100, 150]) and epochs["reat+robustlt"] == (80, [60, 75])
    assert jobs["robal+robustlt"].batch_size == 64 and jobs["robal"].train_attack_steps == 5
    assert jobs["pgd-at+awp"].modifiers == {"awp": {"gamma": "0.005", "warmup": "0"}}
    assert all(j.model == "wrn-28-10" and j.nesterov and j.ratio == 0.02 for j in jobs.values())
    assert jobs["at-bsl+robustlt"].augment == "autoaugment" and jobs["pgd-at"].augment is None
    # a flag beats the preset's per-method settings
    short = {j.job_name.split("__")[0]: j for j in _preset_jobs("cifar10-lt-robustlt", "--epochs", "2")}
    assert {j.epochs for j in short.values()} == {2}


def test_select_from_after_the_last_epoch_is_refused_and_a_flag_lowers_it():
    """The AT-BSL paper preset selects from epoch 75: a short run of it must say so, not silently
    evaluate the last epoch."""
    with pytest.raises(LtbenchError, match="select_from 75 is after the last epoch"):
        _preset_jobs("cifar10-lt-at-bsl-paper", "--epochs", "2")
    jobs = _preset_jobs("cifar10-lt-at-bsl-paper", "--epochs", "2", "--select-from", "2")
    assert {(j.epochs, j.select_from) for j in jobs} == {(2, 2)}
    with pytest.raises(LtbenchError, match="after the last epoch"):
        tiny_job("pgd-at", epochs=2, select_best="pgd2", select_from=3).validate()
    tiny_job("pgd-at", epochs=2, select_from=3).validate()  # without select_best it is inert


def test_select_from_skips_earlier_epochs(tmp_path):
    cfg = tiny_job("pgd-at", epochs=2, select_best="pgd2", select_n_per_class=2, select_from=2)
    t = Trainer(cfg, tmp_path)
    t.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "select_acc" not in records[0] and "select_acc" in records[1]
    assert t.load_best()["epoch"] == 2 and t.load_best()["from_epoch"] == 2


def test_modifier_jobs_run_from_the_cli(tmp_path, tiny_fmnist, monkeypatch):
    """`ltbench run --methods 'pgd-at +awp --gamma=0.02' 'taet +robustlt'`: worker processes rebuild the
    wrapped methods from config.json; folders, config.json and result.json name the modifiers."""
    from ltbench.cli import main as cli_main
    from ltbench.runner import local

    monkeypatch.setattr(local, "available_cores", lambda: 1, raising=False)
    out = tmp_path / "study"
    args = ["run", "--methods", "pgd-at +awp --gamma=0.02", "taet +robustlt", "--datasets", "fmnist", "--ratios",
            "0.2", "--epochs", "2", "--model", "small-cnn", "--set", "model.width=4", "--batch-size", "64",
            "--train-attack-steps", "2", "--attacks", "clean", "pgd2", "--device", "cpu", "--out", str(out),
            "--quiet", "--set", "robustlt.alpha=0.5"]
    assert cli_main(args) == 0
    awp, taet = out / "pgd-at+awp+gamma=0.02__fmnist__r0.2__s0", out / "taet+robustlt__fmnist__r0.2__s0"
    assert json.loads((awp / "config.json").read_text())["modifiers"] == {"awp": {"gamma": "0.02"}}
    assert json.loads((taet / "config.json").read_text())["modifiers"] == {"robustlt": {"alpha": "0.5"}}
    result = json.loads((taet / "result.json").read_text())
    assert result["method_config"]["+robustlt"] == {"alpha": 0.5, "beta": 0.8}
    assert result["method_config"]["absent"] == "zero" and result["attack"]["eps"] == 0.1
    assert json.loads((awp / "result.json").read_text())["method_config"]["+awp"] == {"gamma": 0.02, "warmup": 0}
