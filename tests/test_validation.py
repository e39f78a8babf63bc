"""The validation split: held out of the long-tailed training set, seeded, capped, recorded, measured
every epoch and handed to the method; per-class robust accuracy on the training AEs."""
import json

import pytest
import torch
import torch.nn.functional as F

from ltbench.config import JobConfig
from ltbench.data.longtail import LongTailSplit
from ltbench.data.validation import class_cap, hold_out
from ltbench.engine import validation
from ltbench.engine.train import EpochAccumulator, Trainer, run_job
from ltbench.errors import LtbenchError
from ltbench.method import Method
from ltbench.models import build_model
from ltbench.registry import METHODS

TINY = dict(dataset="fmnist", ratio=0.1, epochs=2, model="small-cnn", model_params={"width": 4},
            batch_size=64, eval_attacks=("clean",), train_attack_steps=1, device="cpu")


def test_hold_out_is_seeded_disjoint_and_capped():
    y = torch.tensor([0] * 30 + [1] * 10 + [2] * 3 + [3] * 1)[torch.randperm(44, generator=torch.Generator().manual_seed(1))]
    h = hold_out(y, 4, seed=5, num_classes=4)
    assert h.val_counts == [4, 2, 1, 0] and h.capped == [1, 2, 3]  # ⌊0.2·10⌋ = 2, 3 → 1, 1 → 0
    assert torch.bincount(y[h.val_pos], minlength=4).tolist() == h.val_counts
    assert sorted(h.val_pos.tolist() + h.train_pos.tolist()) == list(range(44))
    again = hold_out(y, 4, seed=5, num_classes=4)
    assert torch.equal(again.val_pos, h.val_pos)
    assert not torch.equal(hold_out(y, 4, seed=6, num_classes=4).val_pos, h.val_pos)
    assert [class_cap(n) for n in (0, 1, 2, 9, 10, 60, 6000)] == [0, 0, 1, 1, 2, 12, 1200]
    with pytest.raises(LtbenchError):
        hold_out(y, 0, seed=0, num_classes=4)


def test_measure_matches_a_per_sample_reference_without_attack(one_thread):
    torch.manual_seed(0)
    model = build_model("small-cnn", 10, 1, (0.5,), (0.5,), width=4).eval()
    x = torch.randint(0, 256, (37, 1, 28, 28), dtype=torch.uint8)
    y = torch.tensor([i % 7 for i in range(37)])  # classes 7–9 have no image
    s = validation.measure(model, x, y, 10, eps=0.0, steps=2, batch_size=16, seed=0)
    with torch.no_grad():
        logits = model(x.float() / 255)
    for c in range(10):
        m = y == c
        assert s.counts[c] == m.sum()
        if not m.any():
            assert s.clean_acc[c] == 0 and s.clean_loss[c] == 0
            continue
        assert s.clean_acc[c] == pytest.approx((logits[m].argmax(1) == c).float().mean().item())
        assert s.clean_loss[c] == pytest.approx(F.cross_entropy(logits[m], y[m]).item(), rel=1e-5)
    # ε = 0: the "adversarial" point is the clean one
    assert torch.equal(s.adv_acc, s.clean_acc) and s.boundary_err.abs().max() == 0
    assert s.kl.abs().max() < 1e-6


def test_measure_boundary_error_is_clean_minus_robust_accuracy(one_thread):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()  # varied predictions
    x = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        pred = model(x.float() / 255).argmax(1)
    y = torch.where(torch.arange(40) % 4 == 0, (pred + 1) % 10, pred)  # right on 3 images in 4
    from test_methods import no_host_reads

    with no_host_reads():  # on the device from start to end: the engine reads it once per epoch
        a = validation.measure(model, x, y, 10, eps=0.01, steps=3, batch_size=16, seed=3)
    b = validation.measure(model, x, y, 10, eps=0.01, steps=3, batch_size=16, seed=3)
    assert torch.equal(a.adv_acc, b.adv_acc) and torch.equal(a.kl, b.kl)  # seeded
    # The definition, per class: the share of images with f(x) right and f(x') wrong, x' the same
    # seeded PGD points, recomputed here image by image (0 for a class without images).
    right, right_adv = _predictions_right(model, x, y, eps=0.01, steps=3, batch_size=16, seed=3)
    per_class = lambda m: torch.zeros(10).index_add_(0, y, m.float()) / torch.bincount(y, minlength=10).clamp_min(1)  # noqa: E731
    assert torch.allclose(a.clean_acc, per_class(right)) and torch.allclose(a.adv_acc, per_class(right_adv))
    assert torch.allclose(a.boundary_err, per_class(right & ~right_adv))
    assert (right & ~right_adv).any() and (right & right_adv).any()  # the attack flips some right images, not all
    assert (a.adv_loss >= 0).all() and (a.kl >= -1e-6).all()


def _predictions_right(model, x_u8, y, *, eps, steps, batch_size, seed):
    """Per image: is the clean prediction right, is the prediction on the validation PGD's point
    right (the attack of :func:`ltbench.engine.validation.measure`, same seed, same batches)."""
    from ltbench.attacks.base import attack_mode
    from ltbench.attacks.pgd import pgd_perturb

    right, right_adv = [], []
    with torch.random.fork_rng(devices=[]), attack_mode(model):
        torch.manual_seed(seed)
        for i in range(0, len(y), batch_size):
            x = x_u8[i:i + batch_size].float().div_(255).contiguous(memory_format=torch.channels_last)
            yb = y[i:i + batch_size]
            x_adv = pgd_perturb(model, x, yb, eps=eps, step=validation.attack_step(eps, steps), steps=steps)
            with torch.no_grad():
                right.append(model(x).argmax(1) == yb)
                right_adv.append(model(x_adv).argmax(1) == yb)
    return torch.cat(right), torch.cat(right_adv)


def test_accumulator_counts_per_class_robust_accuracy():
    acc = EpochAccumulator(3, torch.device("cpu"))
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0], [0, 5.0, 0]])
    y = torch.tensor([0, 0, 0, 2, 1])
    acc.update(torch.tensor(1.0), logits, y)
    assert acc.correct_per_class.tolist() == [2, 1, 1]
    assert acc.correct == 4


class Recorder(Method):
    """PGD-AT that keeps what the engine hands to on_epoch_end."""
    seen = []

    def on_epoch_end(self, epoch, stats):
        Recorder.seen.append((epoch, stats))


@pytest.fixture
def recorder():
    if "recorder-at" not in METHODS:
        METHODS.register("recorder-at")(Recorder)
    Recorder.seen = []
    return Recorder


def test_job_with_validation_split(tiny_fmnist, tmp_path, recorder, one_thread):
    cfg = JobConfig(method="recorder-at", **TINY, val_n_per_class=4, val_attack_steps=1)
    job = tmp_path / "job"
    result = run_job(cfg, job)
    split = LongTailSplit.load(job / "lt_indices.json")
    v = split.validation
    assert v["n_per_class"] == 4 and len(v["indices"]) == sum(v["counts"])
    assert set(v["indices"]) <= set(split.indices.tolist())
    assert v["counts"] == [min(4, class_cap(n)) for n in split.counts]
    assert v["capped"] == [c for c, n in enumerate(split.counts) if class_cap(n) < 4]
    # the training counts exclude the held-out images
    assert result["dataset"]["train_counts"] == [n - k for n, k in zip(split.counts, v["counts"])]
    assert result["validation"]["counts"] == v["counts"] and result["validation"]["attack"]["steps"] == 1
    assert json.loads((job / "config.json").read_text())["val_n_per_class"] == 4
    lines = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert all(len(r["val"]["adv_acc"]) == 10 and len(r["train_adv_acc_per_class"]) == 10 for r in lines)
    assert [e for e, _ in recorder.seen] == [0, 1]
    stats = recorder.seen[-1][1]
    assert stats.val.counts.tolist() == v["counts"]
    assert stats.val.adv_acc.tolist() == lines[-1]["val"]["adv_acc"]
    assert stats.train_adv_acc.shape == (10,) and stats.model is not None
    # the same split and training set on resume: a second Trainer reads the saved validation split
    again = Trainer(cfg, job)
    assert again.split.validation["indices"] == v["indices"] and again.class_counts == result["dataset"]["train_counts"]


def test_default_job_has_no_validation_split(tiny_fmnist, tmp_path, recorder, one_thread):
    cfg = JobConfig(method="recorder-at", **{**TINY, "epochs": 1})
    job = tmp_path / "job"
    result = run_job(cfg, job)
    assert "validation" not in json.loads((job / "lt_indices.json").read_text())
    assert "validation" not in result and "val_n_per_class" not in json.loads((job / "config.json").read_text())
    assert recorder.seen[0][1].val is None
    split = LongTailSplit.load(job / "lt_indices.json")
    assert result["dataset"]["train_counts"] == split.counts
    # per-class robust accuracy on the training AEs, consistent with the overall one
    line = json.loads((job / "metrics.jsonl").read_text())
    per_class = torch.tensor(line["train_adv_acc_per_class"])
    overall = (per_class * torch.tensor(split.counts)).sum() / sum(split.counts)
    assert overall.item() == pytest.approx(line["train_adv_acc"], abs=1e-6)
    assert torch.equal(recorder.seen[0][1].train_adv_acc, per_class)
