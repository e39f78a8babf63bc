"""SD-LT (Cho et al., ICLR 2025) against a slow reference written from its loss, the engine's
auxiliary-model training (balanced subset, budget, time counted in the job's), and exact resume."""
from __future__ import annotations

import json
import math

import pytest
import torch

import ltbench.engine.train as engine
from ltbench.engine.evaluate import balanced_subset
from ltbench.engine.train import Trainer, run_job
from ltbench.errors import LtbenchError
from ltbench.method import BatchContext
from ltbench.method_factory import build_method
from test_methods import C, COUNTS, _model_for, _states_equal, straight_and_resumed, tiny_job
from test_wat_frl import _inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_balanced_subset_upsamples_small_classes_evenly():
    y = torch.arange(4).repeat_interleave(torch.tensor([20, 7, 3, 2]))
    idx = balanced_subset(y, 7, seed=3, upsample=True)
    assert torch.bincount(y[idx], minlength=4).tolist() == [7, 7, 7, 7]
    head = idx[y[idx] == 0]
    assert len(set(head.tolist())) == 7  # a larger class: 7 distinct images
    for c, k in ((1, 7), (2, 3), (3, 2)):  # a smaller one: each image ⌊7/k⌋ or ⌈7/k⌉ times
        times = torch.bincount(idx[y[idx] == c]).tolist()
        assert set(t for t in times if t) <= {7 // k, -(-7 // k)} and sum(times) == 7
    assert torch.equal(balanced_subset(y, 7, seed=3), balanced_subset(y, 7, seed=3, upsample=False))
    assert torch.bincount(y[balanced_subset(y, 7, seed=3)]).tolist() == [7, 7, 3, 2]


def test_teacher_subset_and_config():
    method = build_method("sd-lt", {"gamma": "2"}, C, COUNTS)
    aux = method.auxiliary_training()
    assert aux.n_per_class == 4 and aux.upsample and aux.epochs == 1.0  # round(2 · 2), the smallest class has 2
    assert aux.method.registered_name == "pgd-at" and aux.method.class_counts.tolist() == [4.0] * C
    bad = [({"gamma": "0"}, "sd-lt: gamma and teacher_epochs must be > 0"),
           ({"teacher": "sd-lt"}, "sd-lt.teacher cannot be 'sd-lt'"), ({"teacher": "nope"}, "unknown method 'nope'")]
    for params, message in bad:
        with pytest.raises(LtbenchError, match=message):
            build_method("sd-lt", params, C, COUNTS)
    with pytest.raises(LtbenchError, match="no teacher"):
        x, x_adv, y = _inputs()
        build_method("sd-lt", {}, C, COUNTS).train_loss(None, x, x_adv, y, None)


def test_loss_matches_a_per_sample_reference():
    method = build_method("sd-lt", {"distill": "0.7"}, C, COUNTS)
    model = _model_for(method).eval()
    torch.manual_seed(1)
    for p in method.teacher.parameters():  # a teacher unlike the student
        p.add_(0.3 * torch.randn_like(p))
    x, x_adv, y = _inputs()
    loss, _ = method.train_loss(model, x, x_adv, y, BatchContext(model, x, y, COUNTS, 0.1))
    with torch.no_grad():
        z_adv, t = model(x_adv).double(), method.teacher(x).double()
    total, n = 0.0, COUNTS.double().tolist()
    for i in range(len(y)):
        c = int(y[i])
        e = [n[j] * math.exp(z_adv[i, j].item()) for j in range(C)]
        bsl = -math.log(e[c] / sum(e))
        pt = torch.softmax(t[i], 0).tolist()
        ps = torch.softmax(z_adv[i], 0).tolist()
        total += bsl + 0.7 * sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps))
    assert loss.item() == pytest.approx(total / len(y), rel=1e-5)


def test_teacher_trains_first_on_the_balanced_subset_and_its_time_counts(tmp_path, monkeypatch):
    seen = []
    original = engine.train_step

    def spy(model, forward_model, method, *args, **kwargs):
        if method.registered_name == "pgd-at":  # the teacher's steps
            seen.append((len(seen), args[2].clone()))  # y
        return original(model, forward_model, method, *args, **kwargs)

    monkeypatch.setattr(engine, "train_step", spy)
    cfg = tiny_job("sd-lt", epochs=2, method_params={"teacher_epochs": "1.5", "gamma": "1.5"})
    trainer = Trainer(cfg, tmp_path)
    teacher0 = {k: v.clone() for k, v in trainer.aux_model.state_dict().items()}
    trainer.fit()
    counts = torch.tensor(trainer.class_counts)
    n_b = round(1.5 * counts[counts > 0].min().item())
    labels = torch.cat([y for _, y in seen])
    assert n_b > counts.min().item()  # the smallest classes were up-sampled
    assert torch.bincount(labels, minlength=C).tolist() == [3 * n_b] * C  # round(1.5 · 2) = 3 teacher epochs
    assert not _states_equal(teacher0, trainer.aux_model.state_dict())
    assert not trainer.aux_model.training and not any(p.requires_grad for p in trainer.aux_model.parameters())
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["auxiliary_s"] > 0 and lines[0]["time_s"] >= lines[0]["auxiliary_s"]
    assert "auxiliary_s" not in lines[1]
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert _states_equal({k[len("teacher."):]: v for k, v in ck["method"].items()}, trainer.aux_model.state_dict())


def test_job_time_includes_the_teacher(tmp_path):
    result = run_job(tiny_job("sd-lt", epochs=1), tmp_path)
    (line,) = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert result["timing"]["epochs_s"] == pytest.approx(line["time_s"]) and line["time_s"] >= line["auxiliary_s"] > 0


def test_sd_lt_resume_is_exact(tmp_path, monkeypatch):
    """Killed after epoch 0 (the teacher in the checkpoint): the resumed run does not train it again."""
    cfg = tiny_job("sd-lt", epochs=3)
    a, b = straight_and_resumed(cfg, tmp_path, monkeypatch, kill_epoch=1)
    assert a["epoch"] == b["epoch"] == 3
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["method"], b["method"])
    assert any(k.startswith("teacher.") for k in a["method"])
    lines = [json.loads(s) for s in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [("auxiliary_s" in r) for r in lines] == [True, False, False]
