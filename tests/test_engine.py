"""End to end: one tiny PGD-AT job writes every file the issue lists, in the documented shape."""
import json

import pytest
import torch

from ltbench.config import JobConfig
from ltbench.data import LongTailSplit
from ltbench.engine.train import Trainer, run_job
from ltbench.errors import LtbenchError

TINY = dict(dataset="fmnist", ratio=0.1, epochs=2, model="small-cnn", model_params={"width": 4},
            batch_size=64, eval_attacks=("clean", "pgd3"), train_attack_steps=2)


def test_job_writes_the_documented_files(tiny_fmnist, tmp_path):
    cfg = JobConfig(method="pgd-at", **TINY)
    job = tmp_path / "study" / cfg.job_name
    result = run_job(cfg, job)
    assert cfg.job_name == "pgd-at__fmnist__r0.1__s0"
    assert {p.name for p in job.iterdir()} >= {"config.json", "lt_indices.json", "metrics.jsonl", "checkpoint.pt",
                                               "result.json"}
    assert not list(job.glob("*.tmp")) and not list(job.glob(".*"))
    assert json.loads((job / "config.json").read_text()) == {"format": 1, **cfg.to_dict()}
    on_disk = json.loads((job / "result.json").read_text())
    assert on_disk["config"] == cfg.to_dict()
    assert {"torch", "device", "cpu", "cpu_count", "threads", "commit"} <= set(on_disk["env"])
    assert on_disk["method_config"] == {}  # PGD-AT has no hyper-parameters
    for attack in ("clean", "pgd3"):
        rec = on_disk["metrics"][attack]
        assert {"overall", "per_class", "head", "medium", "tail", "worst"} <= set(rec)
        assert len(rec["per_class"]) == 10
        assert rec["worst"] == min(rec["per_class"])
    assert on_disk["metrics"]["pgd3"]["overall"] <= on_disk["metrics"]["clean"]["overall"]
    assert result["metrics"]["clean"]["overall"] == on_disk["metrics"]["clean"]["overall"]

    lines = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    split = LongTailSplit.load(job / "lt_indices.json")
    assert split.counts == on_disk["dataset"]["train_counts"]
    for r in lines:
        assert r["loss"] > 0 and 0 <= r["train_adv_acc"] <= 1 and r["time_s"] > 0
        assert sum(r["adv_pred_hist"]) == sum(split.counts)  # every training AE's prediction counted
    state = torch.load(job / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2


def test_training_learns_the_tiny_task(tiny_fmnist, tmp_path):
    cfg = JobConfig(method="pgd-at", **{**TINY, "ratio": 1.0, "epochs": 4, "eps": 0.02, "step": 0.01, "batch_size": 32,
                                        "model_params": {"width": 8}, "lr": 0.1})
    result = run_job(cfg, tmp_path / "job")
    assert result["metrics"]["clean"]["overall"] > 0.5  # chance is 0.1


def test_group_summaries_follow_train_counts(tiny_fmnist, tmp_path):
    result = run_job(JobConfig(method="pgd-at", **{**TINY, "epochs": 1}), tmp_path / "job")
    rec = result["metrics"]["clean"]
    pc = rec["per_class"]
    assert result["dataset"]["train_counts"] == sorted(result["dataset"]["train_counts"], reverse=True)
    assert abs(rec["head"] - sum(pc[:3]) / 3) < 1e-12
    assert abs(rec["medium"] - sum(pc[3:7]) / 4) < 1e-12
    assert abs(rec["tail"] - sum(pc[7:]) / 3) < 1e-12


@pytest.mark.parametrize("on", ["validation", "test"])
def test_model_selection_keeps_the_most_robust_epoch_without_changing_training(tiny_fmnist, tmp_path, on):
    base = {**TINY, "epochs": 3, "ratio": 1.0, "eps": 0.02, "step": 0.01, "batch_size": 32}
    # selecting on the validation split holds it out of training: the plain job holds the same out
    plain = run_job(JobConfig(method="pgd-at", **base, val_n_per_class=3 if on == "validation" else None),
                    tmp_path / "plain")
    job = tmp_path / "select"
    cfg = JobConfig(method="pgd-at", **base, select_best="pgd3", select_n_per_class=3, select_on=on)
    trainer = Trainer(cfg, tmp_path / "probe")
    chosen = run_job(cfg, job)
    lines = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    accs = [r["select_acc"] for r in lines]
    sel = chosen["selection"]
    assert sel["epoch"] == accs.index(max(accs)) + 1 and sel["acc"] == max(accs)
    assert sel["attack"] == "pgd3" and sel["on"] == on and sel["n_per_class"] == 3 and plain["selection"] is None
    # the images selected on: the held-out validation split (never a test image), or the test subset
    if on == "validation":
        assert chosen["validation"]["n_per_class"] == 3 and torch.equal(trainer.x_select, trainer.x_val)
        assert not any("test set" in w for w in chosen["warnings"])
    else:
        assert "validation" not in chosen and len(trainer.y_select) == 3 * 10
        assert any("selected on the test set" in w for w in chosen["warnings"])
    assert (job / "best.pt").exists()
    # The selection's attacks use a forked RNG: training is the same as without selection.
    plain_lines = [json.loads(line) for line in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in lines] == [r["loss"] for r in plain_lines]
    # best.pt holds the selected epoch's weights: the last epoch's exactly when it was selected.
    best = torch.load(job / "best.pt", weights_only=True)
    last = torch.load(job / "checkpoint.pt", weights_only=True)["model"]
    same = all(torch.equal(best[k], last[k]) for k in best)
    assert same == (sel["epoch"] == 3)


def test_selection_on_the_validation_split_is_the_mean_of_its_class_accuracies(tiny_fmnist, tmp_path):
    """On the validation split, capped at 20 % of a class, the selection score is the mean over its
    classes of each class's accuracy (the balanced test subset's overall accuracy, per class)."""
    cfg = JobConfig(method="pgd-at", **TINY, select_best="clean", select_n_per_class=4)
    trainer = Trainer(cfg, tmp_path)
    counts = torch.bincount(trainer.y_val.cpu(), minlength=10).tolist()
    assert len(set(counts)) > 1  # the tail classes are capped: the mean over classes is not the overall
    trainer.model.eval()
    with torch.no_grad():
        pred = [int(trainer.model(x[None].float() / 255).argmax()) for x in trainer.x_val]
    y = trainer.y_val.tolist()
    per_class = [sum(p == c for p, t in zip(pred, y) if t == c) / counts[c] for c in range(10) if counts[c]]
    assert trainer.selection_accuracy() == pytest.approx(sum(per_class) / len(per_class), abs=1e-12)


def test_split_seed_shares_one_split_across_run_seeds(tiny_fmnist, tmp_path):
    """split_seed: every run seed trains on the same long-tailed split (recorded as such); without
    it each run seed draws its own."""
    from ltbench.config import JobConfig
    from ltbench.engine.train import Trainer

    def split(**kw):
        cfg = JobConfig(dataset="fmnist", ratio=0.1, epochs=1, model_params={"width": 4}, device="cpu", **kw)
        return Trainer(cfg, tmp_path / cfg.job_name).split

    shared = [split(seed=s, split_seed=7) for s in (0, 1)]
    own = [split(seed=s) for s in (0, 1)]
    assert shared[0].indices.tolist() == shared[1].indices.tolist()
    assert shared[0].seed == 7 and shared[0].to_dict()["seed_source"] == "split_seed"
    assert own[0].indices.tolist() != own[1].indices.tolist()
    assert own[1].seed == 1 and own[1].to_dict()["seed_source"] == "run seed"
    with pytest.raises(LtbenchError, match="split_seed"):
        JobConfig(split_seed=-1).validate()
