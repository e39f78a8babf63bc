"""Every registered method through the engine's own code paths, on a tiny model and tiny data."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import io
import json
import math
import re

import pytest
import torch

from ltbench.config import JobConfig
from ltbench.data.base import DatasetInfo, RawData
from ltbench.engine.train import EpochAccumulator, Trainer, attach_auxiliary_copy, run_job, train_step
from ltbench.errors import LtbenchError
from ltbench.method import BatchContext, EpochStats, Method, parse_overrides, resolve_schedules
from ltbench.method_factory import build_method
from ltbench.models import build_model
from ltbench.plugins import load_methods
from ltbench.registry import DATASETS, METHODS, MODIFIERS, register_dataset
from methods.reat import rbl_weights, tail_loss


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster


@pytest.fixture(autouse=True, scope="module")
def _forget_tiny_dataset():
    """Other test modules see the registries as they were."""
    yield
    DATASETS._items.pop("tiny-test", None)


ALL_METHODS = load_methods().names()
ALL_MODIFIERS = MODIFIERS.names()
C = 10
COUNTS = torch.tensor([60.0, 40, 30, 20, 14, 10, 7, 5, 3, 2])


# --- a tiny synthetic dataset: 1×8×8 images whose brightness pattern depends on the class ---------


def _tiny_images(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(C).repeat_interleave(n_per_class)
    base = torch.linspace(20, 235, C)[y].view(-1, 1, 1, 1)
    stripe = (torch.arange(8).view(1, 1, 1, 8) % (y.view(-1, 1, 1, 1) % 4 + 1) == 0).float() * 40
    noise = torch.randn(len(y), 1, 8, 8, generator=g) * 25
    x = (base + stripe + noise).clamp(0, 255).to(torch.uint8)
    return x, y


def _load_tiny(root=None) -> RawData:
    x_train, y_train = _tiny_images(30, 0)
    x_test, y_test = _tiny_images(6, 1)
    return RawData(x_train, y_train, x_test, y_test, [f"c{i}" for i in range(C)])


TINY = DatasetInfo(name="tiny-test", description="tiny synthetic 1×8×8 images for tests", num_classes=C,
                   image_shape=(1, 8, 8), load=_load_tiny, flip=False, crop_padding=1, eps=0.1, step=0.05)


def register_tiny_dataset() -> str:
    """Register ``tiny-test`` (idempotent); returns its name."""
    if "tiny-test" not in DATASETS:
        register_dataset("tiny-test")(TINY)
    return "tiny-test"


def tiny_job(method: str, **overrides) -> JobConfig:
    fields = dict(method=method, dataset=register_tiny_dataset(), ratio=0.1, epochs=1, model="small-cnn",
                  model_params={"width": 4}, batch_size=128, train_attack_steps=2, eval_attacks=("clean", "pgd2"),
                  device="cpu", eval_batch_size=128)
    fields.update(overrides)
    return JobConfig(**fields)


# --- helpers --------------------------------------------------------------------------------------


def _model_for(method: Method, width: int = 8):
    """The tiny model with the method's head; a method that asks for an auxiliary model (SD-LT's
    teacher) gets a frozen copy of it."""
    torch.manual_seed(0)
    model = build_model("small-cnn", C, 1, (0.5,), (0.5,), width=width)
    head = method.build_head(model.feature_dim, C, method.class_counts)
    if head is not None:
        model.head = head
    attach_auxiliary_copy(method, model)
    return model


def _batch(n: int = 40):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % C  # every class, tail included


def straight_and_resumed(cfg, tmp_path, monkeypatch, kill_epoch: int) -> tuple[dict, dict]:
    """Train ``cfg`` straight through, and again interrupted at the start of ``kill_epoch`` (0-based)
    then resumed; returns both final checkpoints."""
    Trainer(cfg, tmp_path / "straight").fit()
    original = Trainer.train_epoch

    def killed(self, epoch):
        if epoch == kill_epoch:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "resumed").fit()
    monkeypatch.setattr(Trainer, "train_epoch", original)
    Trainer(cfg, tmp_path / "resumed").fit()
    return (torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True),
            torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True))


def _states_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_states_equal(u, v) for u, v in zip(a, b))
    return a == b


HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def no_host_reads():
    """Any Python-level read of a tensor's value (``.item()``, ``if t:``, ``float(t)`` …) raises.

    On CUDA each of these is a host synchronisation, which the training step must not have."""
    saved = {n: getattr(torch.Tensor, n) for n in HOST_READS}

    def refuse(n):
        def read(self, *args, **kwargs):
            raise AssertionError(f"host read of a tensor value: Tensor.{n}")
        return read

    for n in HOST_READS:
        setattr(torch.Tensor, n, refuse(n))
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.Tensor, n, fn)


def test_no_host_reads_guard_catches_reads():
    t = torch.ones(2)
    for read in (lambda: t.sum().item(), lambda: bool(t[0]), lambda: float(t[0]), lambda: t.tolist()):
        with no_host_reads(), pytest.raises(AssertionError, match="host read"):
            read()
    assert t.sum().item() == 2.0


def _two_steps(name: str):
    method = build_method(name, {}, C, COUNTS)
    model = _model_for(method)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    before = copy.deepcopy(model.state_dict())
    x, y = _batch()
    losses = []
    acc = EpochAccumulator(C, torch.device("cpu"))
    with no_host_reads():  # the hooks (and the engine's step around them) never read values back
        for _ in range(2):
            ctx = BatchContext(model, x, y, method.class_counts, eps=0.1)
            loss, logits_adv = train_step(model, model, method, opt, x, y, ctx, acc, eps=0.1, step=0.05, steps=2)
            assert logits_adv.shape == (len(y), C)
            losses.append(loss)
        method.on_epoch_end(0, EpochStats(acc.pred_hist))
    return method, model, before, [float(v) for v in losses]


# --- the parametrised test over every registered method -----------------------------------------


@pytest.mark.parametrize("name", ALL_METHODS)
def test_two_steps_change_weights_and_state_round_trips(name):
    method, model, before, losses = _two_steps(name)
    assert all(math.isfinite(v) for v in losses), losses
    after = model.state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert changed, "no weight changed"
    assert any(k.startswith("head") for k in changed) and any(k.startswith("body") for k in changed)

    # The method's state survives a checkpoint (torch.save / weights-only load) into a fresh instance.
    state = method.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = build_method(name, {}, C, COUNTS)
    _model_for(fresh)  # SD-LT: the teacher its state loads into
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert _states_equal(fresh.state_dict(), state)
    x, y = _batch()
    logits = torch.randn(len(y), C, generator=torch.Generator().manual_seed(3))
    ctx = BatchContext(model, x, y, method.class_counts, eps=0.1)
    torch.testing.assert_close(fresh.attack_loss(logits, y, ctx), method.attack_loss(logits, y, ctx))


@pytest.mark.parametrize("name", ALL_METHODS)
def test_one_epoch_writes_valid_result(name, tmp_path):
    cfg = tiny_job(name)
    result = run_job(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["config"]["method"] == name
    expected = METHODS.get(name)(METHODS.get(name).Config(), C, torch.ones(C))
    resolve_schedules(expected, cfg.epochs)  # epoch-valued defaults scaled to the job's epochs
    assert on_disk["method_config"] == expected.config_dict()
    assert on_disk["dataset"]["name"] == "tiny-test" and len(on_disk["dataset"]["train_counts"]) == C
    assert set(on_disk["metrics"]) == {"clean", "pgd2"}
    for rec in on_disk["metrics"].values():
        assert 0.0 <= rec["overall"] <= 1.0 and len(rec["per_class"]) == C
        assert all(0.0 <= a <= 1.0 for a in rec["per_class"])
    assert on_disk["metrics"]["pgd2"]["overall"] <= on_disk["metrics"]["clean"]["overall"] + 1e-9
    assert result["metrics"]["clean"]["overall"] == on_disk["metrics"]["clean"]["overall"]
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(record["loss"])
    assert json.loads((tmp_path / "config.json").read_text())["method"] == name


# --- REAT: its RBL state in checkpoints makes a resumed run exact ---------------------------------


def test_reat_resume_is_exact(tmp_path, monkeypatch):
    cfg = tiny_job("reat", epochs=2)
    Trainer(cfg, tmp_path / "straight").fit()

    original = Trainer.train_epoch

    def killed_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "resumed").fit()
    mid = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert mid["epoch"] == 1 and set(mid["method"]) == {"rbl_weights"}
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = Trainer(cfg, tmp_path / "resumed")
    resumed.fit()

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert _states_equal(a["method"], b["method"])
    assert _states_equal(a["model"], b["model"])
    # The weights after epoch 1 came from the AEs' predicted classes, not the training counts.
    initial = build_method("reat", {}, C, torch.tensor(resumed.class_counts, dtype=torch.float32))
    assert not torch.allclose(mid["method"]["rbl_weights"], initial.rbl_w)


def test_reat_rbl_weights_come_from_the_epochs_adversarial_predictions():
    """RBL's n_i: how many of the epoch's adversarial examples the model predicted as class i — the
    logits train_step returns, counted by the engine's accumulator and handed to on_epoch_end."""
    method = build_method("reat", {}, C, COUNTS)
    model = _model_for(method)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    acc = EpochAccumulator(C, torch.device("cpu"))
    predicted = torch.zeros(C)
    x, y = _batch()
    for _ in range(3):  # the model changes between steps, so do its predictions
        ctx = BatchContext(model, x, y, method.class_counts, eps=0.1)
        _, logits_adv = train_step(model, model, method, opt, x, y, ctx, acc, eps=0.1, step=0.05, steps=2)
        predicted += torch.bincount(logits_adv.argmax(1), minlength=C)
    assert acc.pred_hist.tolist() == predicted.tolist() and predicted.sum() == 3 * len(y)
    method.on_epoch_end(0, EpochStats(acc.pred_hist))
    torch.testing.assert_close(method.rbl_w, rbl_weights(predicted, method.class_counts))
    assert not torch.allclose(method.rbl_w, rbl_weights(method.class_counts, method.class_counts))


# --- configuration: dataclasses with paper defaults, flags, subclasses ----------------------------


@pytest.mark.parametrize("name", ALL_METHODS)
def test_config_is_documented_dataclass(name):
    cls = METHODS.get(name)
    assert dataclasses.is_dataclass(cls.Config)
    assert cls.__doc__ and cls.__doc__.strip()
    parse_overrides(name, cls.Config, {})  # defaults construct


def cited_paper(doc: str | None) -> tuple[str, int] | None:
    """The paper the first paragraph of a module docstring cites, ``("Title", year)``: a quoted title
    and a year from 2015 (the first adversarial-training papers ltbench follows) to this year."""
    first = (doc or "").strip().split("\n\n", 1)[0]
    title = re.search(r'"([^"]{10,})"', first)
    years = [int(y) for y in re.findall(r"\b(20\d\d)\b", first) if 2015 <= int(y) <= datetime.date.today().year]
    return (title.group(1), years[0]) if title and years else None


@pytest.mark.parametrize("kind, name", [*(("method", n) for n in ALL_METHODS), *(("modifier", n) for n in ALL_MODIFIERS)])
def test_every_method_and_modifier_cites_its_paper_and_year(kind, name):
    cls = (METHODS if kind == "method" else MODIFIERS).get(name)
    assert cited_paper(__import__(cls.__module__, fromlist=["_"]).__doc__), f"{kind} {name}: no paper and year"


def test_the_paper_check_fails_without_a_title_or_a_year_and_takes_this_year():
    this_year = datetime.date.today().year
    assert cited_paper(f'X: Doe, "A Paper About Training", CVPR {this_year} (code).') == ("A Paper About Training", this_year)
    assert cited_paper('X: Doe, "A Paper About Training", CVPR 2026.')[1] == 2026 <= this_year
    assert cited_paper("X: Doe, A Paper About Training, CVPR 2024.") is None  # no quoted title
    assert cited_paper('X: Doe, "A Paper About Training".') is None  # no year
    assert cited_paper(f'X: Doe, "A Paper About Training", CVPR {this_year + 5}.') is None  # not yet written
    assert cited_paper('X: our own idea.\n\nSee Doe, "A Paper About Training", CVPR 2024.') is None  # not the first paragraph


def test_paper_defaults_and_variants():
    assert METHODS.get("trades").Config().beta == 6.0
    assert METHODS.get("mart").Config().lam == 5.0
    assert METHODS.get("cb-at").Config().beta == 0.9999
    reat = METHODS.get("reat").Config()
    assert (reat.rbl, reat.tail, reat.bsl, reat.tail_weight, reat.per_pair) == (True, True, True, 1.0, True)
    official = METHODS.get("reat-official")
    assert issubclass(official, METHODS.get("reat")) and official.Config().per_pair is False
    m = build_method("reat", {"tail": "false", "rbl": "no", "bsl": "0", "tail_weight": "0.5"}, C, COUNTS)
    assert (m.config.tail, m.config.rbl, m.config.bsl, m.config.tail_weight) == (False, False, False, 0.5)
    assert m.config_dict()["tail_weight"] == 0.5


def test_reat_ablation_flags_change_the_losses():
    x, y = _batch()
    logits = torch.randn(len(y), C, generator=torch.Generator().manual_seed(0))
    full = build_method("reat", {}, C, COUNTS)
    full.rbl_w = torch.linspace(0.2, 1.8, C)
    no_rbl = build_method("reat", {"rbl": "false"}, C, COUNTS)
    no_rbl.rbl_w = full.rbl_w.clone()
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    torch.testing.assert_close(no_rbl.attack_loss(logits, y, None), ce)
    assert not torch.allclose(full.attack_loss(logits, y, None), ce)
    # RBL's inner loss, written from the paper: Σ_i w_{y_i} · (−log softmax(z_i)[y_i]).
    weighted = sum(full.rbl_w[y[i]] * -torch.log_softmax(logits[i], 0)[y[i]] for i in range(len(y)))
    torch.testing.assert_close(full.attack_loss(logits, y, None), weighted)

    model = _model_for(full)
    model.eval()
    values = {}
    for flags in ({}, {"tail": "false"}, {"bsl": "false"}, {"tail": "false", "bsl": "false"}, {"per_pair": "false"}):
        m = build_method("reat", flags, C, COUNTS)
        values[tuple(sorted(flags.items()))] = float(m.train_loss(model, x, x, y, None)[0].detach())
    base_ce = float(torch.nn.functional.cross_entropy(model(x), y).detach())
    assert values[(("bsl", "false"), ("tail", "false"))] == pytest.approx(base_ce, rel=1e-5)
    assert len({round(v, 7) for v in values.values()}) == len(values)

    # REAT's outer loss, written out: CE(z + log N, y) + λ·TAIL(features, y), for several λ.
    feats = model.features(x)
    bsl = torch.nn.functional.cross_entropy(model.head(feats) + COUNTS.log(), y)
    for lam in (1.0, 0.5, 2.0, 0.0):
        m = build_method("reat", {"tail_weight": str(lam)}, C, COUNTS)
        expected = bsl + lam * tail_loss(feats, y, COUNTS) if lam else bsl
        torch.testing.assert_close(m.train_loss(model, x, x, y, None)[0], expected)


def test_robal_head_adjusts_boundary_in_eval_mode_only():
    method = build_method("robal", {}, C, COUNTS)
    head = method.build_head(16, C, COUNTS)
    f = torch.randn(5, 16)
    head.train()
    z_train = head(f)
    head.eval()
    z_eval = head(f)
    torch.testing.assert_close(z_eval, z_train - method.config.tau_p * method.log_prior)
    assert z_train.abs().max() <= method.config.scale + 1e-5  # a scaled cosine
    # The training attack (eval mode) ascends CE on the unadjusted s·cos.
    y = torch.arange(5)
    torch.testing.assert_close(method.attack_loss(z_eval, y, None),
                               torch.nn.functional.cross_entropy(z_train, y, reduction="sum"))


def test_robal_train_loss_matches_the_paper_per_sample():
    """RoBal's outer loss without the TRADES term, one sample at a time (Wu et al. 2021, Sec. 4):
    −log softmax(s·cos − s·m_y·e_y + τ_b·log π)[y], with m_c = m + τ_m·log(N_c / N_min) / s."""
    method = build_method("robal", {"trades_beta": "0", "tau_m": "0.5"}, C, COUNTS)
    model = _model_for(method).train()
    x, y = _batch()
    c = method.config
    pi = COUNTS / COUNTS.sum()
    expected = 0.0
    with torch.no_grad():
        cos = model.head.cosine(model.features(x))  # the whole batch: BatchNorm in train mode
        for i in range(len(y)):
            z = c.scale * cos[i]
            m = c.margin + c.tau_m * math.log(COUNTS[y[i]] / COUNTS.min()) / c.scale
            z[y[i]] -= c.scale * m
            z += c.tau_b * pi.log()
            expected += -torch.log_softmax(z, 0)[y[i]] / len(y)
        torch.testing.assert_close(method.train_loss(model, x, x, y, None)[0], expected)


def test_bad_overrides_are_errors():
    with pytest.raises(LtbenchError, match="no parameter 'tail_wieght'"):
        build_method("reat", {"tail_wieght": "0.5"}, C, COUNTS)
    with pytest.raises(LtbenchError, match="not a valid float"):
        build_method("reat", {"tail_weight": "half"}, C, COUNTS)
    with pytest.raises(LtbenchError, match="not a valid bool"):
        build_method("reat", {"tail": "maybe"}, C, COUNTS)
    with pytest.raises(LtbenchError, match="beta"):
        build_method("cb-at", {"beta": "1.5"}, C, COUNTS)


def test_method_flags_parse_into_config_overrides():
    from ltbench.modifier import parse_spec

    assert (parse_spec("reat").name, parse_spec("reat").overrides) == ("reat", {})
    assert parse_spec("reat --no-tail --no-rbl").overrides == {"tail": "false", "rbl": "false"}
    assert parse_spec("reat --per-pair --tail-weight=0.5").overrides == {"per_pair": "true", "tail_weight": "0.5"}
    with pytest.raises(LtbenchError):
        parse_spec("reat tail")
    spec = parse_spec("reat --no-bsl")
    assert build_method(spec.name, spec.overrides, C, COUNTS).config.bsl is False


# --- schedules in epochs (issue 27) ------------------------------------------------------------------


def _scaled_reference(value, paper, epochs):
    """value · epochs / paper rounded half up, a positive value at least 1 epoch."""
    exact = value * epochs / paper
    whole = int(exact) + (1 if exact - int(exact) >= 0.5 else 0)
    return max(whole, 1) if value > 0 else whole


@pytest.mark.parametrize("epochs", [1, 3, 20, 100, 200, 400])
def test_epoch_hyperparameters_scale_with_the_job(epochs):
    cases = [("cfa", {}, None, "cfa.begin", 10, 200), ("trades", {}, {"awp": {}}, "awp.warmup", 9, 200),
             ("frl", {}, None, "frl.halve_every", 40, 40), ("cfa", {"begin": "50"}, None, "cfa.begin", 50, 200)]
    for name, params, modifiers, key, given, paper in cases:
        method = build_method(name, params, C, COUNTS, modifiers)
        record = resolve_schedules(method, epochs)
        want = _scaled_reference(given, paper, epochs)
        assert record[key] == {"given": given, "paper_epochs": paper, "job_epochs": epochs, "resolved": want}
        owner, field_name = key.split(".")
        assert getattr(method.config, field_name) == want  # the outermost config: awp's wraps trades
        kept = build_method(name, params, C, COUNTS, modifiers)
        assert resolve_schedules(kept, epochs, scale=False)[key]["resolved"] == given
        assert getattr(kept.config, field_name) == given
    assert resolve_schedules(build_method("pgd-at", {}, C, COUNTS), 20) == {}
    # the committed study's 20 epochs: CFA from epoch 1 (not 10), TRADES-AWP from 1, FRL halves at 20
    assert _scaled_reference(10, 200, 20) == 1 and _scaled_reference(9, 200, 20) == 1


def test_old_configs_read_as_absolute_schedules_and_new_ones_say_so():
    old = tiny_job("cfa").to_dict()
    del old["scale_schedules"]  # a config.json written before the scaling
    assert JobConfig.from_dict(old).scale_schedules is False
    assert tiny_job("cfa").to_dict()["scale_schedules"] is True
    assert JobConfig.from_dict(tiny_job("cfa", scale_schedules=False).to_dict()).scale_schedules is False
    with pytest.raises(LtbenchError, match="scale_schedules"):
        tiny_job("cfa", scale_schedules="no").validate()


def test_every_method_module_says_where_it_departs_from_its_authors_code():
    """Each module in methods/ has a "Departures from the authors' code" paragraph: a list, a
    sentence, or an explicit "none" (issue 27)."""
    import ast
    import pathlib
    import re

    folder = pathlib.Path(__file__).resolve().parents[1] / "methods"
    modules = sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")
    assert len(modules) >= 13
    lacking = []
    for path in modules:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        m = re.search(r"^Departures from the authors' code[^:]*:\s*(\S.*)", doc, re.MULTILINE | re.DOTALL)
        if m is None or not m.group(1).strip():
            lacking.append(path.name)
    assert not lacking, f"no 'Departures from the authors' code:' paragraph in {lacking}"
