"""Evaluation: result structure, subsets, resumable AutoAttack, masking flags, ``ltbench eval``."""
import json

import pytest
import torch

from ltbench.attacks import AutoAttack
from ltbench.cli import main as cli
from ltbench.config import JobConfig
from ltbench.engine import evaluate as ev
from ltbench.engine.evaluate import balanced_subset, eval_batch_size, run_evaluation
from ltbench.engine.train import run_job
from ltbench.metrics import masking_warnings
from test_attacks import synthetic, train_mlp

EPS, STEP = 0.1, 0.025
COUNTS = [90, 80, 70, 60, 50, 40, 30, 20, 10, 5]  # "training counts": head 0-2, medium 3-6, tail 7-9
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster


@pytest.fixture(scope="module")
def model():
    return train_mlp()


@pytest.fixture(scope="module")
def data():
    x, y = synthetic(4, 1)  # 40 images, stored as the engine stores test sets: uint8
    return (x * 255).round().to(torch.uint8), y


@pytest.fixture
def fast_aa(monkeypatch):
    """`aa` in run_evaluation becomes a cheap custom AutoAttack (the same wrapper, fewer iterations)."""
    from ltbench.attacks import factory

    def build(name, eps, step, *, seed=0, batch_size=250):
        if name.startswith("aa"):
            return AutoAttack(eps, version="custom", attacks=["apgd-ce", "square"], iterations=3, seed=seed,
                              batch_size=batch_size)
        return factory.build_attack(name, eps, step, seed=seed, batch_size=batch_size)

    monkeypatch.setattr(ev, "build_attack", build)


def test_result_structure(model, data):
    x, y = data
    out = run_evaluation(model, x, y, COUNTS, ["clean", "pgd5", "cw5"], eps=EPS, step=STEP, device=CPU,
                         batch_size=16, check_samples=20)
    assert set(out) == {"metrics", "checks", "warnings", "evaluation"}
    assert list(out["metrics"]) == ["clean", "pgd5", "cw5"]
    for name, rec in out["metrics"].items():
        assert {"overall", "per_class", "head", "medium", "tail", "worst", "per_class_std", "n", "confusion",
                "attack", "seconds"} <= set(rec)
        assert rec["n"] == 40 and len(rec["per_class"]) == 10
        conf = torch.tensor(rec["confusion"])
        assert conf.sum() == 40 and conf.sum(1).tolist() == [4] * 10  # rows: true class
        assert torch.allclose(conf.diag() / 4.0, torch.tensor(rec["per_class"], dtype=torch.float32))
        assert rec["worst"] == min(rec["per_class"])
        assert abs(rec["head"] - sum(rec["per_class"][:3]) / 3) < 1e-12
        assert abs(rec["tail"] - sum(rec["per_class"][7:]) / 3) < 1e-12
    m = out["metrics"]
    assert m["clean"]["attack"] == {"name": "clean"}
    assert m["pgd5"]["attack"]["steps"] == 5 and m["pgd5"]["attack"]["eps"] == EPS
    assert m["cw5"]["attack"]["loss"] == "cw_margin_loss"
    assert m["pgd5"]["overall"] <= m["clean"]["overall"] and m["cw5"]["overall"] <= m["clean"]["overall"]
    assert out["evaluation"]["eps"] == EPS and out["evaluation"]["step"] == STEP
    assert out["evaluation"]["batch_size"] == 16 and out["evaluation"]["autoattack"] is None
    checks = out["checks"]
    assert checks["n"] == 20 and checks["n_per_class"] == 2 and checks["eps"] == EPS
    assert set(checks["accuracy"]) == {"clean", "pgd5", "cw5", "fgsm", "pgd5@0.05", "ls5"}
    assert isinstance(out["warnings"], list)
    json.dumps(out)  # everything is plain JSON


def test_reproducible_and_leaves_the_random_state_alone(model, data):
    state = torch.get_rng_state()
    a = run_evaluation(model, *data, COUNTS, ["pgd3"], eps=EPS, step=STEP, device=CPU, batch_size=16, checks=False)
    assert torch.equal(torch.get_rng_state(), state)
    b = run_evaluation(model, *data, COUNTS, ["pgd3"], eps=EPS, step=STEP, device=CPU, batch_size=40, checks=False)
    assert a["metrics"]["pgd3"]["per_class"] == b["metrics"]["pgd3"]["per_class"] or \
        abs(a["metrics"]["pgd3"]["overall"] - b["metrics"]["pgd3"]["overall"]) <= 0.05  # other batches, other starts
    c = run_evaluation(model, *data, COUNTS, ["pgd3"], eps=EPS, step=STEP, device=CPU, batch_size=16, checks=False)
    assert a["metrics"] == {k: {**v, "seconds": a["metrics"][k]["seconds"]} for k, v in c["metrics"].items()}


def test_eps_zero_every_attack_equals_clean(model, data, fast_aa):
    out = run_evaluation(model, *data, COUNTS, ["clean", "fgsm", "pgd3", "cw3", "ls3", "aa"], eps=0.0, step=0.0,
                         device=CPU, batch_size=16, checks=False)
    clean = out["metrics"]["clean"]
    for rec in out["metrics"].values():
        assert rec["per_class"] == clean["per_class"] and rec["confusion"] == clean["confusion"]


def test_unknown_attack_fails_before_any_work(model, data):
    from ltbench.errors import LtbenchError

    with pytest.raises(LtbenchError, match="unknown attack"):
        run_evaluation(model, *data, COUNTS, ["clean", "pgd-20"], eps=EPS, step=STEP, device=CPU)


def test_balanced_subset():
    y = torch.arange(10).repeat_interleave(7)
    idx = balanced_subset(y, 3, seed=5)
    assert torch.equal(idx, balanced_subset(y, 3, seed=5)) and not torch.equal(idx, balanced_subset(y, 3, seed=6))
    assert torch.equal(idx, idx.sort().values)
    assert torch.bincount(y[idx], minlength=10).tolist() == [3] * 10
    assert len(balanced_subset(y, 100, seed=0)) == 70  # small classes give what they have


def test_eval_batch_size():
    assert eval_batch_size(None, CPU) == 250 and eval_batch_size(64, CPU) == 64
    cuda = torch.device("cuda")
    assert eval_batch_size(250, cuda) == 1024 and eval_batch_size(None, cuda) == 1024
    assert eval_batch_size(512, cuda) == 512


def test_autoattack_on_a_balanced_subset_records_which(model, data, fast_aa, tmp_path):
    out = run_evaluation(model, *data, COUNTS, ["clean", "pgd5", "aa"], eps=EPS, step=STEP, device=CPU,
                         batch_size=8, seed=3, aa_n_per_class=2, state_dir=tmp_path, check_samples=10)
    aa = out["metrics"]["aa"]
    assert aa["n"] == 20 and aa["subset"] is True and aa["n_per_class"] == 2 and aa["subset_seed"] == 3
    assert set(aa["same_subset"]) == {"clean", "pgd5"}
    assert aa["overall"] <= aa["same_subset"]["clean"]
    assert torch.tensor(aa["confusion"]).sum(1).tolist() == [2] * 10
    assert out["evaluation"]["autoattack"] == {"attack": "aa", "subset": True, "n_per_class": 2, "seed": 3,
                                               "n": 20, "state_file": "aa_state.json"}
    assert (tmp_path / "aa_state.json").exists()
    full = run_evaluation(model, *data, COUNTS, ["aa"], eps=EPS, step=STEP, device=CPU, batch_size=8, checks=False)
    assert full["metrics"]["aa"]["n"] == 40 and full["metrics"]["aa"]["subset"] is False


def test_autoattack_alone_on_a_subset_gets_a_pgd_reference(model, data, fast_aa):
    out = run_evaluation(model, *data, COUNTS, ["aa"], eps=EPS, step=STEP, device=CPU, batch_size=8,
                         aa_n_per_class=1, check_samples=10)
    assert "pgd20" in out["metrics"]["aa"]["same_subset"]


def test_killed_autoattack_resumes_to_the_same_result(model, data, fast_aa, tmp_path, monkeypatch):
    x, y = data
    kwargs = dict(eps=EPS, step=STEP, device=CPU, batch_size=4, checks=False)
    reference = run_evaluation(model, x, y, COUNTS, ["aa"], state_dir=tmp_path / "ref", **kwargs)

    calls = {"n": 0}
    real = AutoAttack.perturb

    def dies_in_the_second_chunk(self, *a):
        calls["n"] += 1
        if calls["n"] == ev.AA_CHUNK_BATCHES + 2:
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(AutoAttack, "perturb", dies_in_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(model, x, y, COUNTS, ["aa"], state_dir=tmp_path / "job", **kwargs)
    saved = json.loads((tmp_path / "job" / "aa_state.json").read_text())
    assert saved["done"] == 4 * ev.AA_CHUNK_BATCHES and len(saved["pred"]) == saved["done"]
    calls["n"] = -1000
    resumed = run_evaluation(model, x, y, COUNTS, ["aa"], state_dir=tmp_path / "job", **kwargs)
    assert calls["n"] == -1000 + (40 - saved["done"]) // 4  # only the missing batches were attacked
    for key in ("per_class", "confusion", "overall"):
        assert resumed["metrics"]["aa"][key] == reference["metrics"]["aa"][key]

    # A finished state is reused as it is; a different model does not reuse it.
    class AttackedAgain(Exception):
        pass

    def fail(*a):
        raise AttackedAgain

    monkeypatch.setattr(AutoAttack, "perturb", fail)
    run_evaluation(model, x, y, COUNTS, ["aa"], state_dir=tmp_path / "job", **kwargs)
    other = train_mlp(steps=2)
    with pytest.raises(AttackedAgain):
        run_evaluation(other, x, y, COUNTS, ["aa"], state_dir=tmp_path / "job", **kwargs)


# --- gradient-masking flags -----------------------------------------------------------------------

def rec(overall, **extra):
    return {"overall": overall, **extra}


def test_no_warnings_for_a_healthy_evaluation():
    metrics = {"clean": rec(0.9), "pgd20": rec(0.5), "cw20": rec(0.48)}
    checks = {"eps": 0.1, "n": 1000, "accuracy": {"clean": 0.9, "pgd20": 0.5, "fgsm": 0.6, "pgd20@0.05": 0.7,
                                                   "ls20": 0.49, "cw20": 0.48}}
    assert masking_warnings(metrics, checks) == []


@pytest.mark.parametrize("accuracy, needle", [
    ({"pgd20": 0.5, "fgsm": 0.45}, "weaker than FGSM"),
    ({"pgd20": 0.5, "ls20": 0.30}, "logit-scaled PGD-20"),
    ({"clean": 0.9, "pgd20": 0.5, "pgd20@0.05": 0.5}, "does not fall as ε grows"),
    ({"clean": 0.9, "pgd20": 0.6, "pgd20@0.05": 0.5}, "does not fall as ε grows"),
    ({"clean": 0.9, "pgd20": 0.3, "pgd20@0.05": 0.9}, "does not fall as ε grows"),
])
def test_each_flag_fires(accuracy, needle):
    warnings = masking_warnings({"clean": rec(0.9), "pgd20": rec(0.5)}, {"eps": 0.1, "n": 100, "accuracy": accuracy})
    assert len(warnings) == 1 and needle in warnings[0] and "100-sample check subset" in warnings[0]


def test_flags_from_the_metrics_alone():
    metrics = {"clean": rec(0.9), "fgsm": rec(0.3), "pgd20": rec(0.5), "ls20": rec(0.2),
               "aa": rec(0.1, subset=False)}
    text = " | ".join(masking_warnings(metrics))
    assert "weaker than FGSM" in text and "logit-scaled" in text and "AutoAttack (10.0%) is far below PGD-20" in text


def test_autoattack_is_compared_on_its_own_subset_only():
    metrics = {"pgd20": rec(0.5), "aa": rec(0.2, subset=True, n=100, same_subset={"pgd20": 0.22})}
    assert masking_warnings(metrics) == []
    metrics["aa"]["same_subset"]["pgd20"] = 0.4
    (w,) = masking_warnings(metrics)
    assert "AutoAttack (20.0%) is far below PGD-20 (40.0%) on aa's 100-sample subset" in w
    metrics["aa"]["same_subset"] = {}
    assert masking_warnings(metrics) == []  # 0.2 vs 0.5 on other samples: not compared


# --- jobs and `ltbench eval` ---------------------------------------------------------------------

TINY = dict(dataset="fmnist", ratio=0.1, epochs=1, model="small-cnn", model_params={"width": 4}, batch_size=64,
            eval_attacks=("clean", "pgd2"), train_attack_steps=1, device="cpu")


@pytest.fixture
def job(tiny_fmnist, tmp_path):
    cfg = JobConfig(method="pgd-at", **TINY)
    folder = tmp_path / cfg.job_name
    return cfg, folder, run_job(cfg, folder)


def test_job_result_has_checks_and_warnings(job):
    cfg, folder, result = job
    on_disk = json.loads((folder / "result.json").read_text())
    assert isinstance(on_disk["warnings"], list) and on_disk["checks"]["eps"] == 0.1
    assert {"clean", "pgd2", "fgsm", "pgd2@0.05", "ls2"} <= set(on_disk["checks"]["accuracy"])
    assert on_disk["evaluation"]["seed"] == cfg.seed and on_disk["evaluation"]["eps"] == 0.1
    assert on_disk["attack"]["eps"] == 0.1 and on_disk["attack"]["step"] == 0.01
    assert JobConfig().eval_attacks == ("clean", "pgd20", "cw20")


def test_eval_cli_merges_into_the_job_result(job, capsys):
    cfg, folder, before = job
    assert cli(["eval", str(folder), "--attacks", "clean", "fgsm", "--quiet"]) == 0
    after = json.loads((folder / "result.json").read_text())
    assert set(after["metrics"]) == {"clean", "pgd2", "fgsm"}
    assert after["metrics"]["clean"]["per_class"] == before["metrics"]["clean"]["per_class"]
    assert after["metrics"]["pgd2"] == before["metrics"]["pgd2"]  # kept from training
    assert after["timing"]["train_s"] == before["timing"]["train_s"] and "eval_s" in after["timing"]
    assert after["evaluation"]["checkpoint"].endswith("checkpoint.pt")
    assert after["evaluation"]["attacks"] == ["clean", "pgd2", "fgsm"]
    assert "fgsm" in capsys.readouterr().out


def test_eval_cli_other_budget_goes_to_out(job, tmp_path):
    cfg, folder, before = job
    assert cli(["eval", str(folder), "--eps", "0.05", "--quiet"]) == 2  # would mix budgets in one file
    out = tmp_path / "half.json"
    assert cli(["eval", str(folder / "checkpoint.pt"), "--eps", "0.05", "--step", "0.005", "--attacks", "clean",
                "pgd2", "--out", str(out), "--no-checks", "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["attack"]["eps"] == 0.05 and res["attack"]["step"] == 0.005
    assert res["metrics"]["pgd2"]["attack"]["eps"] == 0.05 and res["checks"] is None
    assert res["metrics"]["clean"] == {**before["metrics"]["clean"], "seconds": res["metrics"]["clean"]["seconds"]}
    assert res["dataset"] == before["dataset"] and res["config"] == before["config"]


def test_eval_cli_of_a_selected_epoch_job_measures_the_selected_weights(tiny_fmnist, tmp_path, capsys):
    """A ``--select-best`` job's result.json measures best.pt: ``ltbench eval`` of the folder must add
    numbers of that model, not of the last checkpoint, and refuses to mix in another file's."""
    cfg = JobConfig(method="pgd-at", **{**TINY, "epochs": 2}, select_best="pgd2", select_n_per_class=2,
                    select_on="test")
    folder = tmp_path / cfg.job_name
    before = run_job(cfg, folder)
    # make the last checkpoint a different model: evaluating it would change the clean numbers
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    state["model"] = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, folder / "checkpoint.pt")
    assert cli(["eval", str(folder), "--attacks", "clean", "--quiet", "--no-checks"]) == 0
    after = json.loads((folder / "result.json").read_text())
    assert after["metrics"]["clean"]["per_class"] == before["metrics"]["clean"]["per_class"]
    assert after["evaluation"]["checkpoint"].endswith("best.pt")
    assert cli(["eval", str(folder / "checkpoint.pt"), "--attacks", "clean", "--quiet"]) == 2
    assert "would mix two models" in capsys.readouterr().err
    out = tmp_path / "last.json"
    assert cli(["eval", str(folder / "checkpoint.pt"), "--attacks", "clean", "--quiet", "--no-checks",
                "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["clean"]["per_class"] != before["metrics"]["clean"]["per_class"]


def test_eval_cli_refuses_what_it_cannot_trust(job, tmp_path, capsys):
    cfg, folder, _ = job
    assert cli(["eval", str(tmp_path / "nowhere")]) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    torch.save({"model": {"x": torch.zeros(1)}, "evil": object()}, bad / "checkpoint.pt")
    assert cli(["eval", str(bad), "--quiet", "--out", str(tmp_path / "e.json")]) == 2
    assert "is not a weights-only file: it holds a pickled object, whose unpickling would run code" in capsys.readouterr().err
    assert cli(["eval", str(folder), "--attacks", "pgd", "--quiet"]) == 2


def test_autoattack_warnings_reach_the_result_and_survive_a_resume(data, tmp_path, monkeypatch):
    from ltbench.attacks import factory
    from test_attacks import Flat

    def build(name, eps, step, *, seed=0, batch_size=250):
        if name == "aa":
            return AutoAttack(eps, version="custom", attacks=["apgd-t"], iterations=2, target_classes=1,
                              batch_size=batch_size)
        return factory.build_attack(name, eps, step, seed=seed, batch_size=batch_size)

    monkeypatch.setattr(ev, "build_attack", build)
    kwargs = dict(eps=EPS, step=STEP, device=CPU, batch_size=8, checks=False, state_dir=tmp_path)
    first = run_evaluation(Flat(), *data, COUNTS, ["aa"], **kwargs)
    again = run_evaluation(Flat(), *data, COUNTS, ["aa"], **kwargs)  # everything read back from the state
    assert any(w.startswith("AutoAttack:") and "zero gradient" in w for w in first["warnings"])
    assert again["warnings"] == first["warnings"]


@pytest.mark.slow
def test_standard_autoattack_end_to_end(model, data, tmp_path):
    """The published configuration (APGD-CE, APGD-T, FAB-T, Square at full budgets) on 20 images."""
    out = run_evaluation(model, *data, COUNTS, ["clean", "pgd20", "aa"], eps=EPS, step=STEP, device=CPU,
                         batch_size=20, aa_n_per_class=2, state_dir=tmp_path, check_samples=20)
    aa = out["metrics"]["aa"]
    assert aa["attack"]["version"] == "standard" and aa["attack"]["n_target_classes"] == 9
    assert aa["n"] == 20 and aa["overall"] <= aa["same_subset"]["pgd20"] + 0.05
