"""Smoke runs (--train-per-class, --test-per-class) and the --dry-run estimates that count the model
width, the attack steps and the evaluation."""
import json
from pathlib import Path

import pytest

from ltbench.cli import main as cli_main
from ltbench.config import JobConfig
from ltbench.errors import LtbenchError
from ltbench.study import estimate
from runner_helpers import TINY_ARGS


def test_smoke_flags_shrink_the_training_split_and_the_test_set(tmp_path, capsys, tiny_fmnist):
    out = tmp_path / "study"
    assert cli_main(["run", "--out", str(out), *TINY_ARGS, "--epochs", "1", "--workers", "1",
                     "--train-per-class", "10", "--test-per-class", "2", "--quiet"]) == 0
    job = out / "pgd-at__fmnist__r0.2__s0"
    config = json.loads((job / "config.json").read_text())
    assert (config["train_per_class"], config["test_per_class"]) == (10, 2)
    split = json.loads((job / "lt_indices.json").read_text())
    assert split["counts"][0] == 10 and split["counts"][-1] == 2  # 10 · 0.2 (the tiny set has 30 a class)
    result = json.loads((job / "result.json").read_text())
    assert {rec["n"] for rec in result["metrics"].values()} == {20}  # 2 test images × 10 classes, every attack
    assert result["dataset"]["train_counts"] == split["counts"]
    # ltbench eval of the job evaluates on the same subset
    assert cli_main(["eval", str(job), "--attacks", "clean", "--out", str(tmp_path / "e.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["clean"]["n"] == 20


def test_a_job_without_the_smoke_fields_writes_its_config_as_before():
    assert "train_per_class" not in JobConfig().to_dict() and "test_per_class" not in JobConfig().to_dict()
    with pytest.raises(LtbenchError, match="train_per_class must be at least 1"):
        JobConfig(train_per_class=0).validate()
    with pytest.raises(LtbenchError, match="test_per_class must be at least 1"):
        JobConfig(test_per_class=-3).validate()


def test_bad_smoke_flag_is_exit_2_one_line(tmp_path, capsys, tiny_fmnist):
    assert cli_main(["run", "--out", str(tmp_path / "s"), *TINY_ARGS, "--test-per-class", "0"]) == 2
    err = capsys.readouterr().err
    assert "test_per_class must be at least 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def seconds(**fields) -> float:
    cfg = JobConfig(**{"device": "cpu", **fields}).validate()
    return estimate.estimate_job(cfg, []).seconds


def test_rough_estimate_counts_width_attack_steps_evaluation_and_data_size():
    base = seconds()
    assert seconds(model_params={"width": 64}) > 2 * base  # width^1.3
    assert seconds(model_params={"width": 8}) < base / 3
    assert seconds(train_attack_steps=20) > seconds()
    assert seconds(eval_attacks=("clean", "pgd20", "cw20", "aa"), aa_n_per_class=50) > 1.5 * base
    assert seconds(eval_attacks=("clean", "pgd100")) > seconds(eval_attacks=("clean", "pgd20"))
    small = seconds(train_per_class=50, test_per_class=10, epochs=1)
    assert small < 30 and small >= estimate.JOB_START_S
    # the evaluation alone: a PGD-20 image is 20 passes of the 11 a PGD-10 training image costs
    cfg = JobConfig(device="cpu", eval_attacks=("pgd20",), test_per_class=100)
    assert estimate.eval_passes(cfg) == 100 * 10 * 20 + 1000 * (1 + 20 + 20)


def test_past_jobs_are_used_only_when_their_size_and_evaluation_match(tmp_path):
    root = tmp_path / "study"
    past_cfg = JobConfig(device="cpu", epochs=2)
    job = root / past_cfg.job_name
    job.mkdir(parents=True)
    (job / "config.json").write_text(json.dumps(past_cfg.to_dict()))
    (job / "metrics.jsonl").write_text('{"epoch": 0, "time_s": 30}\n{"epoch": 1, "time_s": 30}\n')
    (job / "result.json").write_text(json.dumps({"metrics": {}, "timing": {"eval_s": 100}}))
    past = estimate.past_timings(root)
    same = estimate.estimate_job(past_cfg, past)
    assert (same.source, same.seconds) == ("study", 160)
    # a tenth of the training images: a tenth of the epoch time; another test set: the evaluation counted
    tiny = JobConfig(device="cpu", epochs=2, train_per_class=600, test_per_class=10)
    est = estimate.estimate_job(tiny, past)
    full_images = estimate.train_images(past_cfg)
    assert est.source == "study"
    assert est.seconds < 100 and est.seconds == pytest.approx(
        60 * estimate.train_images(tiny) / full_images + estimate.eval_passes(tiny) / (11 * 680.0))
    # another width is another model: the past job does not estimate it
    assert estimate.estimate_job(JobConfig(device="cpu", model_params={"width": 8}), past).source == "default"


def test_a_presets_fine_tuning_source_follows_out():
    """The fmnist-lt preset's FRL jobs start from {out}'s PGD-AT jobs: the committed configuration
    with the preset's folder, and a smoke run's own folder with --out."""
    from ltbench.cli import build_parser
    from ltbench.study.grid import build_jobs, study_spec

    parser = build_parser()[0]
    for extra, folder in (([], "results/fmnist-lt"), (["--out", "results/smoke"], "results/smoke")):
        jobs = build_jobs(study_spec(parser.parse_args(["run", "--preset", "fmnist-lt", "--seeds", "1", *extra])))
        frl = [j for j in jobs if j.method == "frl"]
        assert [j.init_from for j in frl] == [f"{folder}/pgd-at__fmnist__r0.01__s1"]
    committed = json.loads(open(Path(__file__).resolve().parent.parent / "results/fmnist-lt/frl__fmnist__r0.01__s1/config.json").read())
    assert committed["init_from"] == "results/fmnist-lt/pgd-at__fmnist__r0.01__s1"
