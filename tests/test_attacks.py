"""Sanity checks every attack must pass (issue 4), on a tiny MLP trained for a second on 8×8 data.

The contract tests run over every registered attack (``ltbench.registry.ATTACKS``), each built by
name (``stem`` or ``stem5``), so a new attack file is covered without being listed here; AutoAttack
runs a cheap custom configuration instead (every sub-attack, 3 iterations). Two PGD variants that
no name reaches (restarts, no random start) run beside them.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ltbench.attacks import (CW, FGSM, PGD, Attack, AutoAttack, Clean, LogitScaledPGD, build_attack,
                             parse_attack_name, pgd_perturb, pgd_search, reaching_step)
from ltbench.attacks.autoattack import usable_attacks
from ltbench.errors import LtbenchError
from ltbench.registry import ATTACKS as REGISTERED
from ltbench.registry import register_attack

from host_reads import HostReadMode, cuda_sync_errors

EPS, STEP = 0.1, 0.025


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster


def synthetic(n_per_class: int, seed: int, classes: int = 10, side: int = 8, noise: float = 0.3):
    """Noisy copies of fixed random per-class prototypes in [0, 1]: learnable, not trivially robust."""
    protos = torch.rand(classes, 1, side, side, generator=torch.Generator().manual_seed(123)) * 0.6 + 0.2
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return (protos[y] + noise * torch.randn(len(y), 1, side, side, generator=g)).clamp(0, 1), y


def train_mlp(classes: int = 10, steps: int = 60) -> nn.Module:
    """An MLP with BatchNorm and Dropout (so a forgotten eval mode would show), trained on clean data."""
    x, y = synthetic(30, 0, classes)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(64, classes))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return train_mlp()


@pytest.fixture(scope="module")
def data():
    return synthetic(3, 1)  # 30 test images


def cheap_aa(eps, step):
    return AutoAttack(eps, version="custom", attacks=["apgd-ce", "apgd-t", "fab-t", "square"], iterations=3,
                      target_classes=2, batch_size=64)


CHEAP = {"aa": cheap_aa}  # registered attacks too slow for a unit test at their published settings


def by_name(stem: str):
    """The registered attack ``stem`` as the tests build it: by name, with K = 5 where it takes steps."""
    if stem in CHEAP:
        return CHEAP[stem]
    name = f"{stem}5" if REGISTERED.get(stem).takes_steps else stem
    return lambda eps, step: build_attack(name, eps, step)


ATTACKS = {
    **{stem: by_name(stem) for stem in REGISTERED.names()},
    "pgd3x2": lambda eps, step: PGD(eps, step, steps=3, restarts=2),
    "pgd5-nostart": lambda eps, step: PGD(eps, step, steps=5, random_start=False),
}


def test_every_attack_registered_today_is_under_test():
    assert {"clean", "fgsm", "pgd", "cw", "ls", "aa"} <= set(ATTACKS)


def clean_pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_gives_exactly_clean_accuracy(name, model, data):
    x, y = data
    x_adv = ATTACKS[name](0.0, 0.0)(model, x, y)
    assert torch.equal(x_adv, x)
    assert torch.equal(clean_pred(model, x_adv), clean_pred(model, x))


# FAB-T minimises the perturbation's norm from points outside the ball (Croce & Hein, ICML 2020,
# FAB): AutoAttack's own iterates may leave it; the points it returns may not.
ITERATES_MAY_LEAVE_THE_BALL = {"aa"}


@pytest.mark.parametrize("name", ATTACKS)
def test_points_stay_in_the_eps_ball_and_in_range(name, model, data):
    x, y = data
    seen = []  # every input the model is called on: the attack's iterates
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().float().flatten(1)))
    torch.manual_seed(0)
    try:
        x_adv = ATTACKS[name](EPS, STEP)(model, x, y)
    finally:
        hook.remove()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    assert seen or name == "clean"  # the identity never calls the model
    if seen and name not in ITERATES_MAY_LEAVE_THE_BALL:
        points = torch.cat(seen)  # each within ε of some test image (the images are far apart)
        nearest = (points[:, None, :] - x.flatten(1)[None]).abs().amax(2).amin(1)
        assert nearest.max() <= EPS + 1e-6, nearest.max()
        assert points.min() >= 0 and points.max() <= 1


@pytest.mark.parametrize("name", ATTACKS)
def test_robust_never_exceeds_clean_per_sample(name, model, data):
    x, y = data
    torch.manual_seed(0)
    clean_ok = clean_pred(model, x) == y
    adv_ok = clean_pred(model, ATTACKS[name](EPS, STEP)(model, x, y)) == y
    assert not (adv_ok & ~clean_ok).any()
    if name != "clean":
        assert adv_ok.sum() < clean_ok.sum()  # the attack does something at this budget


@pytest.mark.parametrize("name", ATTACKS)
def test_mode_requires_grad_and_buffers_are_restored(name, data):
    model = train_mlp(steps=1)
    model.train()
    model[1].weight.requires_grad_(False)  # a mix of frozen and trainable parameters
    flags = [p.requires_grad for p in model.parameters()]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data
    ATTACKS[name](EPS, STEP)(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():  # eval mode inside: BatchNorm statistics untouched
        assert torch.equal(v, buffers[k]), k


def test_mode_restored_after_an_exception(data):
    model = train_mlp(steps=1).train()

    def boom(logits, y):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        PGD(EPS, STEP, steps=2, loss_fn=boom)(model, *data)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_more_steps_never_weaker_on_a_fixed_seed(model, data):
    """Same seed ⇒ same start; PGD-40's iterates extend PGD-5's, and any misclassified iterate counts."""
    x, y = data
    fooled = {}
    for steps in (1, 5, 40):
        torch.manual_seed(7)
        fooled[steps] = clean_pred(model, PGD(EPS, STEP, steps=steps)(model, x, y)) != y
    assert (fooled[1] <= fooled[5]).all() and (fooled[5] <= fooled[40]).all()
    assert fooled[40].sum() > fooled[1].sum()


def test_more_restarts_never_weaker(model, data):
    x, y = data
    torch.manual_seed(3)
    one = clean_pred(model, PGD(EPS, STEP, steps=3, restarts=1)(model, x, y)) != y
    torch.manual_seed(3)
    three = clean_pred(model, PGD(EPS, STEP, steps=3, restarts=3)(model, x, y)) != y
    assert (one <= three).all()


def test_pgd_search_reports_what_it_returns(model, data):
    x, y = data
    torch.manual_seed(0)
    x_adv, fooled = pgd_search(model, x, y, eps=EPS, step=STEP, steps=5)
    assert torch.equal(fooled, clean_pred(model, x_adv) != y)


def test_training_pgd_is_unchanged_last_iterate(model, data):
    """pgd_perturb (training) returns the last iterate; pgd_search agrees on samples never fooled."""
    x, y = data
    torch.manual_seed(0)
    last = pgd_perturb(model, x, y, eps=EPS, step=STEP, steps=4)
    torch.manual_seed(0)
    best, fooled = pgd_search(model, x, y, eps=EPS, step=STEP, steps=4)
    assert torch.equal(best[~fooled], last[~fooled])


def test_pgd20_is_close_to_apgd_ce(model):
    """Our PGD-20 within 5 points of AutoAttack's APGD-CE (100 iterations) on a trained model."""
    x, y = synthetic(10, 2)  # 100 images
    torch.manual_seed(0)
    pgd = (clean_pred(model, PGD(EPS, STEP, steps=20)(model, x, y)) == y).float().mean().item()
    apgd = AutoAttack(EPS, version="custom", attacks=["apgd-ce"], batch_size=100)
    apgd_acc = (clean_pred(model, apgd(model, x, y)) == y).float().mean().item()
    clean = (clean_pred(model, x) == y).float().mean().item()
    assert 0.05 < apgd_acc < clean  # a regime where the comparison means something
    assert pgd <= apgd_acc + 0.05, (pgd, apgd_acc)


def test_pgd_at_least_as_strong_as_fgsm_on_a_trained_model(model, data):
    x, y = data
    torch.manual_seed(0)
    fgsm = (clean_pred(model, FGSM(EPS)(model, x, y)) == y).sum()
    pgd = (clean_pred(model, PGD(EPS, STEP, steps=10)(model, x, y)) == y).sum()
    assert pgd <= fgsm


def test_autoattack_leaves_the_callers_random_state_alone(model, data):
    state = torch.get_rng_state()
    cheap_aa(EPS, STEP)(model, *data)
    assert torch.equal(torch.get_rng_state(), state)


def test_autoattack_is_seeded(model, data):
    a = AutoAttack(EPS, version="custom", attacks=["apgd-ce", "square"], iterations=3, seed=3)(model, *data)
    b = AutoAttack(EPS, version="custom", attacks=["apgd-ce", "square"], iterations=3, seed=3)(model, *data)
    assert torch.equal(a, b)


@pytest.mark.parametrize("classes, targets, dropped", [(3, 2, ["apgd-t"]), (5, 4, [])])
def test_autoattack_with_fewer_than_ten_classes(classes, targets, dropped):
    model = train_mlp(classes, steps=30)
    x, y = synthetic(4, 1, classes)
    aa = AutoAttack(EPS, version="custom", attacks=["apgd-ce", "apgd-t", "fab-t"], iterations=1)
    x_adv = aa(model, x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert aa.n_target_classes == targets and aa.dropped == dropped
    assert aa.describe()["n_target_classes"] == targets


def test_standard_autoattack_configuration():
    """The standard version's sub-attacks and target counts, without running it."""
    aa = AutoAttack(8 / 255)
    pkg = aa._build(nn.Sequential(nn.Flatten(), nn.Linear(4, 10)), 10, torch.device("cpu"))
    assert pkg.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert pkg.apgd_targeted.n_target_classes == 9 and pkg.fab.n_target_classes == 9
    assert pkg.apgd.n_iter == 100 and pkg.square.n_queries == 5000 and pkg.seed == 0
    assert usable_attacks(["apgd-ce", "apgd-dlr", "apgd-t"], 3) == (["apgd-ce", "apgd-dlr"], ["apgd-t"])


def test_factory_names():
    assert type(build_attack("clean", EPS, STEP)) is Clean and build_attack("clean", EPS, STEP).describe() == {
        "name": "clean"}
    assert type(build_attack("fgsm", EPS, STEP)) is FGSM
    pgd = build_attack("pgd20", EPS, STEP)
    assert type(pgd) is PGD and pgd.steps == 20 and pgd.step == STEP and pgd.eps == EPS
    assert type(build_attack("cw7", EPS, STEP)) is CW and build_attack("cw7", EPS, STEP).steps == 7
    ls = build_attack("ls20", EPS, STEP)
    assert type(ls) is LogitScaledPGD and ls.alpha == 10 and ls.describe()["loss"] == "ce_of_10x_logits"
    aa = build_attack("aa", EPS, STEP, seed=4)
    assert type(aa) is AutoAttack and aa.seed == 4 and aa.version == "standard"
    half = build_attack("pgd20@0.05", EPS, STEP)
    assert half.eps == 0.05 and abs(half.step - STEP / 2) < 1e-12
    assert abs(build_attack("pgd10@4/255", 8 / 255, 2 / 255).eps - 4 / 255) < 1e-12
    assert parse_attack_name("ls10").iterative and not parse_attack_name("aa").iterative


@pytest.mark.parametrize("bad", ["pgd", "pgd0", "fgsm3", "aa2", "clean@0.1", "pgd20@x", "PGD-20", "pgd20@-1", ""])
def test_factory_rejects_bad_names(bad):
    with pytest.raises(LtbenchError):
        build_attack(bad, EPS, STEP)


def test_logit_scaled_loss_is_ce_of_scaled_logits():
    logits, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    loss = build_attack("ls1", EPS, STEP).loss_fn(logits, y)
    assert torch.allclose(loss, F.cross_entropy(10 * logits, y, reduction="sum"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pgd_loop_never_syncs_with_the_host_on_cuda(model, data):
    m = train_mlp().cuda()
    x, y = (t.cuda() for t in data)
    attack = PGD(EPS, STEP, steps=5)
    attack(m, x, y)  # warm-up (lazy initialisation may sync)
    with cuda_sync_errors():
        attack(m, x, y)


@pytest.mark.parametrize("name", ["pgd5", "cw5", "ls5", "fgsm"])
def test_gradient_attacks_read_nothing_on_the_host_cpu_stand_in(model, data, name):
    """The same on the CPU for the gradient attacks, with tests/host_reads.py's stand-in."""
    x, y = data
    attack = build_attack(name, EPS, STEP)
    attack(model, x, y)
    with HostReadMode():
        attack(model, x, y)


class Flat(nn.Module):
    """Gradient masking in its purest form: the logits do not depend on the input at all."""

    def __init__(self, classes=10):
        super().__init__()
        self.bias = nn.Parameter(torch.arange(classes, dtype=torch.float32).flip(0))

    def forward(self, x):
        return self.bias.expand(len(x), -1) + 0 * x.flatten(1)[:, :1]


def test_autoattack_collects_the_packages_warnings_once_per_kind(data, caplog):
    x, y = data
    aa = AutoAttack(EPS, version="custom", attacks=["apgd-t"], iterations=2, target_classes=1, batch_size=2)
    aa(Flat(), x, y)  # class-0 samples are "robust" with zero gradient, in two batches
    assert len(aa.warnings) == 1 and "zero gradient" in aa.warnings[0] and aa.warnings[0].endswith("(2 times)")
    assert aa.warnings[0].startswith("AutoAttack: ")
    assert not [r for r in caplog.records if r.name == "auto-attack"]  # collected, not printed


def test_an_attack_is_one_registered_class(model, data):
    """A class with @register_attack is an attack by name: parsed, built, labelled, listed."""
    before = REGISTERED.snapshot()
    try:
        @register_attack("nudge")
        class Nudge(Attack):
            """A fixed push of ε · sign(0.5 − x): a test attack."""

            label = "nudge"
            takes_steps = True

            @classmethod
            def from_name(cls, steps, eps, step, **_):
                attack = cls(eps)
                attack.steps = steps
                return attack

            def perturb(self, model, x, y):
                return (x + self.eps * torch.sign(0.5 - x)).clamp(0, 1)

        attack = build_attack("nudge3@0.05", EPS, STEP)
        assert type(attack) is Nudge and attack.eps == 0.05 and attack.steps == 3 and Nudge.name == "nudge"
        assert parse_attack_name("nudge3").iterative
        with pytest.raises(LtbenchError, match="needs a step count"):
            parse_attack_name("nudge")  # its grammar: a step count
        with pytest.raises(LtbenchError, match="nudgeK"):
            parse_attack_name("nudge3x")  # the error lists every registered grammar
        from ltbench.metrics import _label
        assert _label("nudge3") == "nudge-3"
    finally:
        REGISTERED.restore(before)
    with pytest.raises(LtbenchError, match="unknown attack 'nudge3'"):
        parse_attack_name("nudge3")
    with pytest.raises(LtbenchError, match="lower-case letters"):
        register_attack("pgd-2")


@pytest.mark.parametrize("stem", ["pgd", "cw", "ls"])
def test_a_k_step_attack_by_name_can_reach_the_boundary(stem):
    """K · step < ε: the step becomes 2.5 · ε / K and the record keeps the step given; else unchanged."""
    short = build_attack(f"{stem}2", 0.1, 0.01)
    assert short.step == pytest.approx(0.125) and short.describe()["step_given"] == 0.01
    for name, eps, step in ((f"{stem}20", 0.1, 0.01), (f"{stem}10", 0.1, 0.01), (f"{stem}4", 8 / 255, 2 / 255),
                            (f"{stem}20@0.05", 0.1, 0.01), (f"{stem}5", 0.0, 0.0)):
        attack = build_attack(name, eps, step)
        assert attack.steps * attack.step >= attack.eps * (1 - 1e-9)
        assert "step_given" not in attack.describe(), name
    assert build_attack("pgd20", 0.1, 0.01).step == 0.01  # the committed study's setting is untouched
    assert reaching_step(0.1, 0.01, 5) == pytest.approx(0.05) and reaching_step(0.1, 0.03, 5) == 0.03


def test_an_under_powered_step_raises_no_masking_warning():
    """PGD-2 with step 0.01 at ε = 0.1 moves 0.02: on a linear model it is far weaker than FGSM,
    which would read as gradient masking. By name the step reaches, and the warning does not fire."""
    from ltbench.engine.evaluate import run_evaluation

    torch.manual_seed(0)
    x = torch.rand(40, 1, 4, 4)
    w = torch.randn(2, 16)
    y = (x.flatten(1) @ w.T).argmax(1)  # a linear model that is right on every image
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(w)
        model[1].bias.zero_()
    x_u8 = (x * 255).round().to(torch.uint8)
    y = clean_pred(model, x_u8.float() / 255)

    def acc(attack):
        torch.manual_seed(0)
        return (clean_pred(model, attack(model, x_u8.float() / 255, y)) == y).float().mean().item()

    assert acc(PGD(0.1, 0.01, steps=2)) > acc(FGSM(0.1)) + 0.05  # the trap the rule avoids
    out = run_evaluation(model, x_u8, y, [20, 20], ["clean", "pgd2"], eps=0.1, step=0.01,
                         device=torch.device("cpu"), check_samples=40)
    assert out["metrics"]["pgd2"]["attack"]["step"] == pytest.approx(0.125)
    assert not [w for w in out["warnings"] if "weaker than FGSM" in w], out["warnings"]
