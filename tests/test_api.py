"""The Python API (ltbench.api): the README's lines run as written, and evaluate() on outside models."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import ltbench
from ltbench.engine.evaluate import run_evaluation

ROOT = Path(__file__).resolve().parent.parent


def readme_api_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


class Brightness(nn.Module):
    """A model from outside ltbench: logits from the mean brightness (the tiny data's class signal)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 10)
        with torch.no_grad():
            centers = (20 + 22 * torch.arange(10.0)) / 255
            self.lin.weight.copy_(60 * 2 * centers[:, None])
            self.lin.bias.copy_(-60 * centers ** 2)

    def forward(self, x):
        return self.lin(x.mean(dim=(1, 2, 3))[:, None])


def test_readme_api_lines_run(tiny_fmnist, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_api_block(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "pgd-at" in out and "reat" in out and "pgd20" in out  # the three tables were printed
    study = ltbench.load_study(tmp_path / "results" / "mine")
    assert set(study.status["status"]) == {"done"} and len(study.status) == 4
    assert set(study.summary["method"]) == {"pgd-at", "reat"} and set(study.summary["seeds"]) == {2}
    assert set(study.paired["baseline"]) == {"pgd-at"} and set(study.paired["seeds"]) == {2}
    assert {"ci_low", "ci_high", "resolved", "seeds_needed"} <= set(study.paired.columns)


def test_load_model_reproduces_the_jobs_clean_accuracy(tiny_fmnist, tmp_path):
    assert ltbench.run(methods=["pgd-at"], epochs=1, out=tmp_path / "st", set=["model.width=4"],
                       attacks=["clean"]) == 0
    job = tmp_path / "st" / "pgd-at__fmnist__r0.01__s0"
    loaded = ltbench.load_model(job)
    assert not loaded.model.training and loaded.epoch == 1 and loaded.config.method == "pgd-at"
    committed = json.loads((job / "result.json").read_text())["metrics"]["clean"]
    ev = ltbench.evaluate(loaded.model, "fmnist", attacks=["clean"], class_counts=loaded.class_counts,
                          checks=False, device="cpu")
    assert ev.table.loc[0, "overall"] == committed["overall"]
    assert list(ev.per_class.query("attack == 'clean'")["accuracy"]) == committed["per_class"]
    assert ev.table.loc[0, "tail"] == committed["tail"] and ev.groups.startswith("head / medium / tail from the class")


def test_evaluate_any_module(tiny_fmnist):
    model = Brightness().train()
    ev = ltbench.evaluate(model, "fmnist", attacks=["clean", "pgd5@0", "pgd5"], eps=0.05, step=0.01,
                          checks=False, device="cpu")
    t = ev.table.set_index("attack")
    assert model.training  # the caller's mode is restored
    assert t.loc["clean", "overall"] > 0.9  # the brightness model classifies the tiny data
    assert t.loc["pgd5@0", "overall"] == t.loc["clean", "overall"]  # ε = 0 is clean accuracy
    assert t.loc["pgd5", "overall"] <= t.loc["clean", "overall"]
    assert t.loc["clean", "n"] == 50
    # The tiny Fashion-MNIST is balanced and no counts were given: no groups, and the output says so.
    assert t[["head", "medium", "tail"]].isna().all().all() and t.loc["clean", "worst"] >= 0
    assert ev.groups.startswith("no head / medium / tail: fmnist's training set is not long-tailed (30 images")
    assert ev.raw["evaluation"]["groups"]["from"] is None and ev.raw["metrics"]["clean"]["tail"] is None
    per_class = ev.raw["metrics"]["clean"]["per_class"]
    assert list(per_class)[:2] == ["T-shirt/top", "Trouser"] and len(per_class) == 10
    assert list(ev.per_class.query("attack == 'clean'")["accuracy"]) == list(per_class.values())
    # Groups follow class_counts: with counts increasing in the index, class 9 is the head.
    ev2 = ltbench.evaluate(model, "fmnist", attacks=["clean"], class_counts=list(range(1, 11)), checks=False,
                           device="cpu")
    direct = run_evaluation(model, *_tiny_test(), list(range(1, 11)), ["clean"], eps=0.1, step=0.01,
                            device=torch.device("cpu"), checks=False)
    assert ev2.table.loc[0, "head"] == direct["metrics"]["clean"]["head"]
    assert ev2.raw["evaluation"]["groups"]["from"] == "class_counts"
    sub = ltbench.evaluate(model, "fmnist", attacks=["clean"], n_per_class=2, checks=False, device="cpu")
    assert sub.table.loc[0, "n"] == 20


def _tiny_test():
    from ltbench.data import get_dataset, load_raw

    raw = load_raw(get_dataset("fmnist"))
    return raw.x_test, raw.y_test


def test_outside_groups_come_from_given_counts_else_a_long_tailed_dataset_else_none():
    from ltbench.engine.evaluate import named, outside_groups

    assert outside_groups("d", [3, 2, 1], [5, 5, 5]) == ([3, 2, 1], {
        "from": "class_counts", "text": "head / medium / tail from the class counts given"})
    counts, rec = outside_groups("d", None, [500, 50, 5])
    assert counts == [500, 50, 5] and rec["from"] == "dataset" and "(long-tailed: 500 to 5 images" in rec["text"]
    assert outside_groups("d", None, [10, 5, 7])[1]["from"] == "dataset"  # half of the largest: long-tailed
    counts, rec = outside_groups("d", None, [10, 6, 7])
    assert counts is None and rec["from"] is None and rec["text"].startswith("no head / medium / tail")
    assert named([0.5, 0.25], ["a", "b"]) == {"a": 0.5, "b": 0.25}
    assert named([0.5, 0.25], ["a", "a"]) == {"0: a": 0.5, "1: a": 0.25}


def test_evaluate_rejects_bad_input(tiny_fmnist):
    with pytest.raises(ltbench.errors.LtbenchError, match="nn.Module"):
        ltbench.evaluate(lambda x: x, "fmnist")
    with pytest.raises(ltbench.errors.LtbenchError, match="class_counts has 3 entries"):
        ltbench.evaluate(Brightness(), "fmnist", class_counts=[3, 2, 1])
    with pytest.raises(ltbench.errors.LtbenchError, match="eps must be"):
        ltbench.evaluate(Brightness(), "fmnist", eps=float("nan"))


def test_eval_cli_with_a_model_factory(tiny_fmnist, tmp_path):
    (tmp_path / "outside_model.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom test_api import Brightness\n\ndef build():\n    return Brightness()\n"
        % str(Path(__file__).parent))
    torch.save(ltbench.model_from_factory("test_api:Brightness").state_dict(), tmp_path / "w.pt")
    proc = subprocess.run([sys.executable, "-m", "ltbench", "eval", "--model-factory", "outside_model:build",
                           "--weights", "w.pt", "--attacks", "clean", "pgd3", "--no-checks", "--device", "cpu",
                           "--quiet", "--out", "res.json"], cwd=tmp_path, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "res.json").read_text())
    assert result["model"]["factory"] == "outside_model:build" and result["metrics"]["clean"]["overall"] > 0.9
    assert list(result["metrics"]["pgd3"]["per_class"])[9] == "Ankle boot"  # per_class names the classes
    assert result["dataset"]["class_names"][0] == "T-shirt/top" and result["dataset"]["train_counts"] is None
    assert result["metrics"]["pgd3"]["attack"]["step"] == pytest.approx(2.5 * 0.1 / 3)  # 3 · 0.01 < ε
    lines = proc.stdout.splitlines()
    assert any(line.startswith("no head / medium / tail: fmnist's training set is not long-tailed") for line in lines)
    assert any(line.startswith("pgd3: step 0.0833333 = 2.5·ε/K (3 steps of 0.01 cannot reach ε)") for line in lines)
    row = next(line for line in lines if line.startswith("Ankle boot"))  # the per-class table, by class name
    assert row.split()[2:4] == ["–", "–"] and row.endswith("%")
    bad = subprocess.run([sys.executable, "-m", "ltbench", "eval", "--model-factory", "outside_model:nope",
                          "--out", "x.json"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot import model factory" in bad.stderr
