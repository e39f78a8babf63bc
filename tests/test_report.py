"""Tests of ``ltbench report``: aggregation, tables, the HTML page, and the page in headless Chromium.

Most tests use small synthetic studies, written file by file in the exact structure the engine and
the runner produce (``study.json``, ``result.json``, ``metrics.jsonl``, ``config.json``,
``failed.json`` / ``error.txt``); one builds a small real study with
:func:`ltbench.engine.train.run_job` on a tiny Fashion-MNIST written in IDX format.

The Chromium test talks to the browser over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: NUL-separated JSON on file descriptors 3 and 4), so it needs no
websocket package. Without ``/usr/bin/chromium`` it is skipped, unless ``LTBENCH_REQUIRE_SERVICES=1``
(CI), where it fails.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import json
import math
import os
import re
import select
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltbench.cli import main as cli_main
from ltbench.errors import LtbenchError
from ltbench import attack_names as N
from ltbench.report import aggregate as A
from ltbench.report.html import CHECK_IMAGES_JS, build_report, csp

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("LTBENCH_CHROMIUM", "/usr/bin/chromium")
FMNIST_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"]
EVIL_METHOD = "<script>window.pwned=1</script>"
EVIL_CLASS = "<script>window.pwned=2</script>Bag"


# ------------------------------------------------------------------------------------------------
# Synthetic studies


def lt_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    return [max(1, int(n_max * ratio ** (i / (num_classes - 1)))) for i in range(num_classes)]


def accuracy_record(per_class: list[float], counts: list[int], n_per_class: int) -> dict:
    """The engine's accuracy record (ltbench.metrics.summarize) for a balanced test set."""
    groups = A.class_groups(counts)
    C = len(per_class)
    confusion = [[0] * C for _ in range(C)]
    for c, acc in enumerate(per_class):
        hit = round(acc * n_per_class)
        confusion[c][c] = hit
        confusion[c][0 if c else 1] += n_per_class - hit
    return {
        "overall": float(np.mean(per_class)),
        "per_class": per_class,
        **{g: float(np.mean([per_class[i] for i in idx])) for g, idx in groups.items()},
        "worst": min(per_class),
        "per_class_std": float(np.std(per_class)),
        "n": n_per_class * C,
        "confusion": confusion,
    }


def write_job(study: Path, method: str, seed: int, *, dataset: str = "fmnist", ratio: float = 0.1,
              class_names=None, attacks=("clean", "pgd20", "cw20"), epochs: int = 3, warnings=(),
              folder: str | None = None, finished: bool = True, epochs_logged: int | None = None) -> dict | None:
    """One job folder in the engine's exact format; returns the result (None if unfinished)."""
    names = list(class_names or FMNIST_NAMES)
    C = len(names)
    counts = lt_counts(600, C, ratio)
    rng = np.random.default_rng(abs(hash((method, seed, dataset, ratio))) % 2 ** 32)
    cfg = {"method": method, "dataset": dataset, "ratio": ratio, "seed": seed, "model": "small-cnn",
           "model_params": {"width": 8}, "method_params": {}, "epochs": epochs, "batch_size": 128, "lr": 0.1,
           "momentum": 0.9, "weight_decay": 0.0005, "lr_milestones": [0.75, 0.9375], "profile": "exp",
           "augment": None, "eps": None, "step": None, "train_attack_steps": 10, "eval_attacks": list(attacks),
           "aa_n_per_class": None, "eval_batch_size": 250, "device": "cpu", "compile": False}
    job = study / (folder or f"{method}__{dataset}__r{ratio:g}__s{seed}")
    job.mkdir(parents=True)
    (job / "config.json").write_text(json.dumps(cfg, indent=2))
    (job / "lt_indices.json").write_text(json.dumps({"ratio": ratio, "profile": "exp", "seed": seed,
                                                      "counts": counts, "num_images": sum(counts),
                                                      "indices": list(range(sum(counts)))}))
    lines = []
    for e in range(epochs if epochs_logged is None else epochs_logged):
        hist = [int(n * (1.5 if i < 3 else 0.5) * (1 + 0.1 * e)) for i, n in enumerate(counts)]
        lines.append(json.dumps({"epoch": e, "loss": 2.0 / (e + 1) + 0.01 * seed, "train_adv_acc": 0.2 + 0.1 * e,
                                 "lr": 0.1, "time_s": 1.5, "images_per_s": 800.0, "adv_pred_hist": hist}))
    (job / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if not finished:
        return None
    metrics = {}
    for k, attack in enumerate(attacks):
        base = 0.9 - 0.3 * k - (0.05 if method.endswith("official") else 0.0)
        per_class = [round(float(np.clip(base - 0.04 * i + rng.normal(0, 0.02), 0, 1)), 4) for i in range(C)]
        metrics[attack] = accuracy_record(per_class, counts, 100)
    result = {
        "config": cfg,
        "env": {"torch": "2.14.1", "python": "3.11.2", "platform": "Linux-x86_64", "device": "cpu", "threads": 2,
                "ltbench": "0.1.0", "commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
        "dataset": {"name": dataset, "class_names": names, "train_counts": counts, "test_size": 100 * C},
        "attack": {"eps": 0.1, "step": 0.01, "train_steps": 10},
        "timing": {"train_s": 12.5, "eval_s": 3.25},
        "metrics": metrics,
        "warnings": list(warnings),
    }
    (job / "result.json").write_text(json.dumps(result, indent=2))
    return result


def make_study(root: Path, name: str = "synth") -> Path:
    """reat and reat-official × 2 seeds finished; pgd-at: one failed job per error format;
    trades: one running (two epochs logged), one pending (announced by study.json only)."""
    study = root / name
    study.mkdir(parents=True)
    spec = {"name": name, "methods": ["reat", "reat-official", "pgd-at", "trades"], "datasets": ["fmnist"],
            "ratios": [0.1], "seeds": [0, 1], "code": {"ltbench": "0.1.0", "commit": "0123456789abcdef", "dirty": False}}
    (study / "study.json").write_text(json.dumps(spec, indent=2))
    for method in ("reat", "reat-official"):
        for seed in (0, 1):
            warnings = ["PGD-20 is weaker than FGSM on 3 classes: possible gradient masking"] \
                if (method, seed) == ("reat-official", 1) else []
            write_job(study, method, seed, warnings=warnings)
    write_job(study, "pgd-at", 0, finished=False, epochs_logged=1)
    (study / "pgd-at__fmnist__r0.1__s0" / "error.txt").write_text(
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nTrainingDiverged: training loss is nan in epoch 2\n")
    write_job(study, "pgd-at", 1, finished=False, epochs_logged=0)
    tb = "Traceback (most recent call last):\n  File \"train.py\", line 9\nRuntimeError: CUDA out of memory <b>\n"
    (study / "pgd-at__fmnist__r0.1__s1" / "failed.json").write_text(json.dumps(
        {"error": "RuntimeError: CUDA out of memory <b>", "type": "RuntimeError", "phase": "training", "epoch": 1,
         "time": "2026-01-01T00:00:00+00:00", "host": "node1", "pid": 42, "slurm_job": None, "traceback": tb}))
    (study / "pgd-at__fmnist__r0.1__s1" / "error.txt").write_text(tb)  # the runner writes both
    write_job(study, "trades", 0, finished=False, epochs_logged=2)  # running while hold_lock() holds its lock
    (study / "trades__fmnist__r0.1__s0" / "progress.txt").write_text("epoch 3/3 batch 7/10")
    return study


@contextlib.contextmanager
def hold_lock(job_dir: Path):
    """Hold a job's runner lock as a running job's process does."""
    from ltbench.runner.job import JobLock

    lock = JobLock(job_dir)
    assert lock.acquire()
    with lock:
        yield


def make_evil_study(root: Path) -> Path:
    """Names and texts that would run as script if they were not escaped."""
    study = root / "evil"
    study.mkdir(parents=True)
    names = list(FMNIST_NAMES)
    names[8] = EVIL_CLASS
    for method, folder in ((EVIL_METHOD, "evil"), ("reat", None)):
        for seed in (0, 1):
            write_job(study, method, seed, class_names=names,
                      folder=f"{folder}__fmnist__r0.1__s{seed}" if folder else None,
                      warnings=["<img src=x onerror=\"window.pwned=3\"> masking"] if seed == 0 else [])
    write_job(study, "mart", 0, finished=False, epochs_logged=1)
    (study / "mart__fmnist__r0.1__s0" / "error.txt").write_text("ValueError: <script>window.pwned=4</script>")
    return study


# ------------------------------------------------------------------------------------------------
# Aggregation and tables


def test_class_groups_by_count_ties_by_index():
    assert A.class_groups([10, 3, 7]) == {"head": [0], "medium": [2], "tail": [1]}
    groups = A.class_groups([5, 4, 3, 2, 1, 1, 1, 1, 1, 1])  # C = 10: 3 / 4 / 3, the tied classes by index
    assert groups == {"head": [0, 1, 2], "medium": [3, 4, 5, 6], "tail": [7, 8, 9]}
    assert A.class_groups([1, 2, 3, 4, 5, 6, 7]) == {"head": [6, 5], "medium": [4, 3, 2], "tail": [1, 0]}


def test_load_study_statuses(tmp_path):
    path = make_study(tmp_path)
    with hold_lock(path / "trades__fmnist__r0.1__s0"):
        study = A.load_study(path)
    assert study.counts() == {"done": 4, "failed": 2, "running": 1, "pending": 1}
    by_name = {j.name: j for j in study.jobs}
    assert "TrainingDiverged: training loss is nan in epoch 2" in by_name["pgd-at__fmnist__r0.1__s0"].error
    err = by_name["pgd-at__fmnist__r0.1__s1"].error
    assert err.startswith("RuntimeError: CUDA out of memory <b>\n") and "epoch: 1" in err and "host: node1" in err
    assert err.count("Traceback") == 1  # error.txt repeats failed.json's traceback: shown once
    assert by_name["trades__fmnist__r0.1__s1"].status == "pending"
    assert by_name["trades__fmnist__r0.1__s1"].detail == "not started"
    running = by_name["trades__fmnist__r0.1__s0"]
    assert len(running.metrics) == 2 and "epoch 3/3 batch 7/10" in running.detail
    # Without its lock the same job was interrupted: pending, and the detail says how far it got.
    job = {j.name: j for j in A.load_study(path).jobs}["trades__fmnist__r0.1__s0"]
    assert job.status == "pending" and "2/3 epochs" in job.detail
    assert [j.name for j in study.jobs][:2] == ["reat__fmnist__r0.1__s0", "reat__fmnist__r0.1__s1"]


def test_one_study_class_reads_what_the_runner_sees(tmp_path):
    from ltbench.study.study import Study

    path = make_study(tmp_path)
    read, opened = A.load_study(path), Study.open(path)
    assert type(read) is Study and read.data == opened.data
    assert [(j.name, j.status, j.result) for j in opened.jobs] == [(j.name, j.status, j.result) for j in read.jobs]
    assert opened.counts() == read.counts() and [j.name for j in opened.done] == [j.name for j in read.done]
    # The runner's per-job state agrees with the records (they differ only on an unreadable
    # result.json: pending to the runner, which redoes the job, failed in the report; none here).
    by_name = {j.name: j.status for j in read.jobs}
    assert all(by_name[s.name] == s.state for s in opened.statuses())


def test_load_study_errors(tmp_path):
    with pytest.raises(LtbenchError, match="does not exist"):
        A.load_study(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LtbenchError, match="not a study folder"):
        A.load_study(tmp_path / "empty")


def test_unreadable_result_is_failed(tmp_path):
    study = make_study(tmp_path)
    (study / "reat__fmnist__r0.1__s0" / "result.json").write_text('{"metrics": ')
    job = {j.name: j for j in A.load_study(study).jobs}["reat__fmnist__r0.1__s0"]
    assert job.status == "failed" and "result.json is unreadable" in job.error


def test_tidy_table_and_files(tmp_path):
    st = A.load_study(make_study(tmp_path))
    tables = A.build_tables([st])
    pc = tables.per_class
    assert len(pc) == 4 * 3 * 10  # finished jobs × attacks × classes
    assert set(pc.columns) >= {"method", "dataset", "ratio", "seed", "attack", "class_index", "class_name", "group",
                               "accuracy"}
    one = pc[(pc["job"] == "reat__fmnist__r0.1__s0") & (pc["attack"] == "clean")]
    assert one["group"].value_counts().to_dict() == {"head": 3, "medium": 4, "tail": 3}
    assert list(one.sort_values("rank")["class_name"]) == FMNIST_NAMES
    result = json.loads((st.root / "reat__fmnist__r0.1__s0" / "result.json").read_text())
    assert one.sort_values("class_index")["accuracy"].tolist() == result["metrics"]["clean"]["per_class"]
    # The group columns of the job table agree with the per-class rows.
    for (job, attack), grp in pc.groupby(["job", "attack"]):
        row = tables.jobs[(tables.jobs["job"] == job) & (tables.jobs["attack"] == attack)].iloc[0]
        for g in ("head", "medium", "tail"):
            assert row[g] == pytest.approx(grp[grp["group"] == g]["accuracy"].mean())
        assert row["worst"] == pytest.approx(grp["accuracy"].min())

    written = A.write_tables(tables, tmp_path / "out")
    assert {"per_class.csv", "jobs.csv", "summary.csv", "summary.md", "summary.tex", "training.csv",
            "adv_predictions.csv", "per_class.parquet"} <= set(written)
    back = pd.read_csv(written["per_class.csv"])
    assert len(back) == len(pc)
    assert np.allclose(back["accuracy"], pc["accuracy"], atol=1e-6)
    assert pd.read_parquet(written["per_class.parquet"]).equals(pc)


def test_summary_mean_std_and_seed_count(tmp_path):
    st = A.load_study(make_study(tmp_path))
    tables = A.build_tables([st])
    s = tables.summary
    assert set(s["method"]) == {"reat", "reat-official"}
    assert list(s["attack"].unique()) == ["clean", "pgd20", "cw20"]
    assert (s["seeds"] == 2).all()
    for _, row in s.iterrows():
        vals = tables.jobs[(tables.jobs["method"] == row["method"]) & (tables.jobs["attack"] == row["attack"])]
        for g in A.GROUPS:
            assert row[f"{g}_mean"] == pytest.approx(vals[g].mean())
            assert row[f"{g}_std"] == pytest.approx(np.std(vals[g].to_numpy(), ddof=1))
    # Best per column within a dataset × ratio block: reat is better by construction.
    pgd = next(t for t in tables.display if t.attack == "pgd20")
    assert pgd.label == "PGD-20"
    reat, official = pgd.rows
    assert reat.method == "reat" and all(c.best for c in reat.cells[:1])
    assert not official.cells[0].best
    row = s[(s["method"] == "reat") & (s["attack"] == "pgd20")].iloc[0]
    assert reat.cells[0].text == A.fmt_cell(row["overall_mean"], row["overall_std"])
    assert [r["method"] for _, r in s.iterrows()][:3] == ["reat"] * 3  # grid order of study.json


def test_markdown_and_latex(tmp_path):
    study = make_study(tmp_path)
    write_job(study, "a_b&c%", 0)  # LaTeX specials in a method name
    tables = A.build_tables([A.load_study(study)])
    md = A.to_markdown(tables.display)
    tex = A.to_latex(tables.display)
    assert "## PGD-20" in md and "**" in md and "| Seeds |" in md
    for t in tables.display:
        for r in t.rows:
            for c in r.cells:
                assert (f"**{c.text}**" if c.best else c.text) in md
    assert tex.count(r"\begin{tabular}") == 3 and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"\textbf{" in tex and r"$\pm$" in tex
    assert r"a\_b\&c\%" in tex and "a_b&c%" not in tex
    assert A.latex_escape("<x>~^\\") == r"\textless{}x\textgreater{}\textasciitilde{}\textasciicircum{}\textbackslash{}"


def test_attack_labels():
    assert N.attack_label("pgd20") == "PGD-20" and N.attack_label("cw20") == "CW-20"
    assert N.attack_label("aa") == "AutoAttack" and N.attack_label("clean") == "Clean"
    assert N.attack_order(["pgd2", "aa", "clean", "cw20", "pgd20", "fgsm", "pgd100"]) == \
        ["clean", "pgd2", "pgd20", "pgd100", "cw20", "aa", "fgsm"]
    assert N.robust_attack(["clean", "pgd20", "aa"]) == "aa" and N.robust_attack(["clean", "pgd2"]) == "pgd2"


# ------------------------------------------------------------------------------------------------
# The HTML page (static checks)


def _external_refs(html: str) -> list[str]:
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", html)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


def test_report_cli_single_study(tmp_path, monkeypatch, capsys):
    study = make_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    with hold_lock(study / "trades__fmnist__r0.1__s0"):
        assert cli_main(["report", str(study), "--plots-dir", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "4 done, 2 failed, 1 running, 1 pending" in out
    page = study / "report.html"  # beside the study
    html = page.read_text()
    assert (study / "summary.csv").is_file() and (study / "summary.tex").is_file()
    assert _external_refs(html) == []
    assert "http://" not in html and "https://" not in html
    assert html.count("<script") == 1 and "default-src &#39;none&#39;" in html
    # failed, running and pending jobs are listed with their errors (escaped)
    assert "TrainingDiverged: training loss is nan in epoch 2" in html
    assert "CUDA out of memory &lt;b&gt;" in html
    assert 'data-job="trades__fmnist__r0.1__s1" data-status="pending"' in html
    assert 'data-job="trades__fmnist__r0.1__s0" data-status="running"' in html
    assert "possible gradient masking" in html
    assert "REAT as written vs as coded" in html
    assert "0123456789abcdef0123456789abcdef01234567" in html  # code version
    assert html.count("<img ") == len(list((tmp_path / "plots").iterdir())) >= 6
    # A study with no finished job still gets a page.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "study.json").write_text(json.dumps({"methods": ["reat"], "datasets": ["fmnist"], "ratios": [0.1],
                                                  "seeds": [0]}))
    assert cli_main(["report", str(empty), "--quiet"]) == 0
    assert "1 pending" in (empty / "report.html").read_text()


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory):
    """The report of :func:`make_evil_study`, written by ``ltbench report`` (rendered once)."""
    root = tmp_path_factory.mktemp("evil")
    study = make_evil_study(root)
    page = root / "reports" / "evil.html"
    assert cli_main(["report", str(study), "--quiet", "--out", str(page)]) == 0
    return study, page


def test_report_escapes_names(evil_report):
    html = evil_report[1].read_text()
    assert "<script>window" not in html and "<img src=x" not in html
    assert html.count("<script") == 1
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert "&lt;script&gt;window.pwned=2&lt;/script&gt;Bag" in html


def test_report_compare_two_studies(tmp_path, monkeypatch):
    a = make_study(tmp_path / "x", "alpha")
    b = make_study(tmp_path / "y", "beta")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["report", str(a), str(b), "--quiet"]) == 0
    html = (tmp_path / "x" / "alpha__vs__beta" / "report.html").read_text()  # next to the first study
    summary = pd.read_csv(tmp_path / "x" / "alpha__vs__beta" / "summary.csv")
    assert set(summary["study"]) == {"alpha", "beta"} and len(summary) == 2 * 2 * 3
    assert "<th>Study</th>" in html and "alpha: reat vs alpha: reat-official" in html
    assert "ltbench report: alpha vs beta" in html
    # Same folder name twice: labels take the parent folder too.
    assert A.study_labels([tmp_path / "x" / "s", tmp_path / "y" / "s"]) == ["x/s", "y/s"]


def test_report_missing_study_is_an_error(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_csp_hash_matches_script():
    import hashlib

    digest = base64.b64encode(hashlib.sha256(CHECK_IMAGES_JS.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp(CHECK_IMAGES_JS)


# ------------------------------------------------------------------------------------------------
# Honest pages (issue 20): partial attacks, image counts, one seed, ties, differing studies, axes


def add_attack(job_dir: Path, attack: str, n_per_class: int) -> None:
    """Evaluate one finished job under one more attack (as ``ltbench eval --attacks aa`` does)."""
    result = json.loads((job_dir / "result.json").read_text())
    counts = result["dataset"]["train_counts"]
    result["metrics"][attack] = accuracy_record([0.3] * len(counts), counts, n_per_class)
    (job_dir / "result.json").write_text(json.dumps(result))


def make_partial_study(root: Path) -> Path:
    """pgd-at and trades × seeds 0, 1 under clean / PGD-20 / CW-20; AutoAttack on one job only,
    on 10 images per class."""
    study = root / "partial"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"methods": ["pgd-at", "trades"], "datasets": ["fmnist"],
                                                  "ratios": [0.1], "seeds": [0, 1]}))
    for method in ("pgd-at", "trades"):
        for seed in (0, 1):
            write_job(study, method, seed)
    add_attack(study / "trades__fmnist__r0.1__s0", "aa", 10)
    return study


def test_figures_use_the_attack_on_every_test_image_and_labels_do_not_overlap(tmp_path):
    """With PGD-20 (all images) and AutoAttack (a subset) both complete, the figures use PGD-20; the
    trade-off scatter's 15 labels, drawn around a tight cluster, do not overlap one another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from ltbench.report import plots as P

    study = tmp_path / "s"
    for m in ("pgd-at", "at-bsl", "reat"):
        write_job(study, m, 0, ratio=0.01, attacks=("clean", "pgd20", "aa"))
    report = build_report([A.load_study(study)])
    assert any(p.key == "tradeoff" and p.title.endswith("PGD-20") for p in report.plots)
    assert "PGD-20" in next(p.caption for p in report.plots if p.key.startswith("per_class"))
    fig = P.new_figure(5, 4)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    xy = [(70 + rng.normal(0, 1.5), 60 + rng.normal(0, 1.5)) for _ in range(15)]
    ax.scatter(*zip(*xy))
    ax.set_xlim(60, 80)
    ax.set_ylim(50, 70)
    P.place_labels(fig, ax, xy, [f"method-{i}" for i in range(15)], ["#000"] * 15)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the label, not its leader line
    assert len(boxes) == 15
    assert not [(i, j) for i in range(15) for j in range(i) if boxes[i].overlaps(boxes[j])]


def test_partial_attack_has_its_own_section_and_never_drives_the_figures(tmp_path):
    st = A.load_study(make_partial_study(tmp_path))
    report = build_report([st])
    html = report.html
    assert "1 of 4 jobs, 100 images" in html
    summary_part, partial_part = html.split('<section id="summary">')[1].split('<section id="partial">')
    assert 'data-attack="aa"' not in summary_part and 'data-attack="aa"' in partial_part.split("</section>")[0]
    titles = [p.title for p in report.plots]
    assert "Tail and worst class vs head, PGD-20" in titles and not any("AutoAttack" in t for t in titles)
    assert "PGD-20 on 1000 test images" in next(p.caption for p in report.plots if p.key.startswith("per_class"))
    tables = A.build_tables([st])
    assert set(tables.summary["images"]) == {"1000", "100"}  # every number says on how many images
    assert 'class="num images">1000<' in html and 'class="num images">100<' in html
    # asked for explicitly, the partial attack is shown, and says so in its caption
    forced = build_report([st], attack="aa")
    assert any(p.title == "Tail and worst class vs head, AutoAttack" and "100 test images" in p.caption
               for p in forced.plots)


def test_one_seed_wording(tmp_path):
    study = tmp_path / "one"
    study.mkdir()
    for method in ("pgd-at", "trades"):
        write_job(study, method, 0)
    st = A.load_study(study)
    report = build_report([st])
    assert "one seed per row" in report.html and "mean ± sample std over seeds" not in report.html
    assert "band = ±1 std" not in " ".join(p.caption for p in report.plots)
    assert "one seed" in next(p.caption for p in report.plots if p.key.startswith("per_class"))
    assert A.to_markdown(report.tables.display).startswith("# Summary (accuracy %, one seed per row")


def test_best_only_beyond_the_seed_spread():
    def cells(*pairs):
        return [A.Cell(m, s, A.fmt_cell(m, s)) for m, s in pairs]

    c = cells((0.021, 0.030), (0.0, 0.0))  # 2.1 ± 3.0 vs 0.0 ± 0.0: within the spread
    A.mark_best(c)
    assert [x.best for x in c] == [False, False] and [x.tied for x in c] == [True, True]
    c = cells((0.50, 0.01), (0.30, 0.02), (0.49, 0.02))  # 0.5 within 0.49's spread, 0.3 is not
    A.mark_best(c)
    assert [x.best for x in c] == [False, False, False] and [x.tied for x in c] == [True, False, True]
    c = cells((0.50, 0.01), (0.30, 0.02))
    A.mark_best(c)
    assert [x.best for x in c] == [True, False] and not any(x.tied for x in c)
    c = cells((0.50, math.nan), (0.30, math.nan))  # one seed: the means decide
    A.mark_best(c)
    assert [x.best for x in c] == [True, False]
    c = cells((0.5, 0.1), (0.5, 0.1))
    A.mark_best(c)
    assert not any(x.best or x.tied for x in c)  # all equal: nothing to single out


def test_comparing_different_studies_shows_the_differences_first(tmp_path):
    a, b = tmp_path / "a" / "s5", tmp_path / "b" / "s2"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    write_job(a, "pgd-at", 0, epochs=5)
    write_job(b, "pgd-at", 0, epochs=2)
    html = build_report([A.load_study(a, "s5"), A.load_study(b, "s2")]).html
    top = html.split('<section id="status">')[0]
    assert 'id="study-differences"' in top and 'data-key="epochs"' in top
    assert 'data-key="seed"' not in top and 'data-key="method"' not in top  # grid axes are not "differences"
    same = build_report([A.load_study(a, "x"), A.load_study(a, "y")]).html
    assert 'id="study-differences"' not in same


def test_axes_adapt_to_one_epoch_and_one_run():
    from ltbench.report import plots as P

    fig = P.new_figure(3, 2)
    ax = fig.subplots()
    ax.plot([1], [2.0])
    P.epoch_axis(ax, 1)
    assert list(ax.get_xticks()) == [1] and ax.get_xlim() == (0.5, 1.5)
    ax.set_ylim(9.95, 10.05)
    P.min_span(ax.get_ylim, ax.set_ylim, 10.0)
    assert ax.get_ylim() == (5.0, 15.0)
    ax.set_ylim(99.0, 99.5)
    P.min_span(ax.get_ylim, ax.set_ylim, 10.0)
    assert ax.get_ylim() == (90.0, 100.0)


# ------------------------------------------------------------------------------------------------
# A small real study (run_job on a tiny Fashion-MNIST)


def _idx(array: np.ndarray) -> bytes:
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_tiny_fmnist(root: Path, per_class_train: int = 30, per_class_test: int = 10) -> None:
    """Fashion-MNIST-shaped IDX files (gzip) with class-dependent blobs, so a model learns a little."""
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class_train), ("t10k", per_class_test)):
        y = np.repeat(np.arange(10), n)
        rng.shuffle(y)
        x = rng.integers(0, 60, (len(y), 28, 28))
        for i, c in enumerate(y):
            r, col = divmod(int(c), 5)
            x[i, 4 + 10 * r:12 + 10 * r, 2 + 5 * col:6 + 5 * col] += 180
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y)))


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    """pgd-at × seeds 0, 1 and (when registered) reat, reat-official × seed 0: one epoch of PGD-2
    training each; study.json announces seed 2 too, so those jobs are pending. A method that
    raises is recorded the way the runner does (``error.txt``)."""
    import traceback

    from ltbench.config import JobConfig
    from ltbench.engine.train import run_job
    from ltbench.plugins import load_all
    from ltbench.registry import METHODS

    root = tmp_path_factory.mktemp("real")
    write_tiny_fmnist(root / "data")
    load_all()
    methods = ["pgd-at"] + [m for m in ("reat", "reat-official") if m in METHODS]
    study = root / "tiny-real"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"name": "tiny-real", "methods": methods, "datasets": ["fmnist"],
                                                  "ratios": [0.1], "seeds": [0, 1, 2]}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LTBENCH_DATA", str(root / "data"))
        for method in methods:
            for seed in ((0, 1) if method == "pgd-at" else (0,)):
                cfg = JobConfig(method=method, dataset="fmnist", seed=seed, epochs=1, model="small-cnn",
                                model_params={"width": 4}, eval_attacks=("clean", "pgd2"), ratio=0.1, device="cpu",
                                train_attack_steps=2)
                try:
                    run_job(cfg, study / cfg.job_name)
                except Exception:  # noqa: BLE001 - a broken method is a failed job, as in the runner
                    (study / cfg.job_name / "error.txt").write_text(traceback.format_exc())
    return study


def test_real_study_report(real_study, tmp_path):
    st = A.load_study(real_study)
    assert st.counts()["done"] >= 2
    assert st.counts()["pending"] == len(st.data["methods"]) * 3 - st.counts()["done"] - st.counts()["failed"]
    tables = A.build_tables([st])
    assert set(tables.per_class["attack"]) == {"clean", "pgd2"}
    assert len(tables.per_class) == st.counts()["done"] * 2 * 10
    report = build_report([st])
    assert len(report.plots) >= 5 and "PGD-2" in report.html
    # Paired with pgd-at on the seed both have (seed 0), one table per attack, and the cost table.
    if "reat" in tables.methods:
        paired = tables.paired[(tables.paired["method"] == "reat") & (tables.paired["attack"] == "pgd2")]
        assert set(paired["seeds"]) == {1} and set(paired["baseline"]) == {"pgd-at"}
        assert 'id="paired"' in report.html and 'data-baseline="pgd-at"' in report.html
        assert set(tables.cost["method"]) >= {"pgd-at", "reat"} and 'id="cost-table"' in report.html
        written = A.write_tables(tables, tmp_path / "tables")
        assert {"paired.csv", "cost.csv", "paired.md"} <= set(written)


# ------------------------------------------------------------------------------------------------
# Headless Chromium over the DevTools protocol (pipe transport)


class Chromium:
    """A headless Chromium driven over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="ltbench-chromium-")
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--hide-scrollbars", "--mute-audio", f"--user-data-dir={self.profile}",
                "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _recv(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, name: str, session: str, after: int = 0, timeout: float = 30) -> dict:
        """The first event ``name`` of ``session`` from ``self.events[after:]`` on, waiting for it."""
        deadline = time.monotonic() + timeout
        for ev in self.events[after:]:
            if ev.get("method") == name and ev.get("sessionId") == session:
                return ev
        while True:
            ev = self._recv(deadline)
            self.events.append(ev)
            if ev.get("method") == name and ev.get("sessionId") == session:
                return ev

    def open(self, url: str, width: int = 1280, height: int = 900) -> str:
        """A new tab with console, log and network events on; returns its session id once loaded."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": False}, session=session)
        seen = len(self.events)
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session, after=seen)
        return session

    def evaluate(self, session: str, expression: str):
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                        session=session)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def problems(self, session: str) -> list[str]:
        """Console errors/warnings, uncaught exceptions, log errors (CSP, failed loads) of a tab."""
        out = []
        for ev in self.events:
            if ev.get("sessionId") != session:
                continue
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p.get('args', [])]}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log: {p['entry'].get('text')}")
            elif m == "Network.loadingFailed":
                out.append(f"load failed: {p.get('errorText')}")
        return out

    def requests(self, session: str) -> list[str]:
        return [ev["params"]["request"]["url"] for ev in self.events
                if ev.get("sessionId") == session and ev.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, session: str, path: Path) -> None:
        """Full-page PNG."""
        size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": size["width"],
                                                             "height": min(size["height"], 16000), "scale": 1}},
                         session=session, timeout=60)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def chromium_or_skip() -> str:
    if os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"headless Chromium not installed ({CHROMIUM}; Debian: apt-get install chromium)"
    if os.environ.get("LTBENCH_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " — required because LTBENCH_REQUIRE_SERVICES=1")
    pytest.skip(reason)


READ_DOM = """(() => {
  const text = el => el.textContent.trim();
  const summary = [...document.querySelectorAll('table.summary')].map(t => ({
    attack: t.dataset.attack,
    rows: [...t.tBodies[0].rows].map(r => ({study: r.dataset.study, method: r.dataset.method,
      dataset: r.dataset.dataset, ratio: r.dataset.ratio,
      cells: [...r.querySelectorAll('td[data-group]')].map(text),
      bold: [...r.querySelectorAll('td[data-group]')].map(td => !!td.querySelector('strong')),
      tied: [...r.querySelectorAll('td[data-group]')].map(td => td.classList.contains('tied')),
      images: text(r.querySelector('td.images')),
      seeds: text(r.querySelector('td.seeds'))}))}));
  const perClass = [...document.querySelectorAll('table.per-class')].map(t => ({
    attack: t.dataset.attack, dataset: t.dataset.dataset, ratio: t.dataset.ratio,
    rows: [...t.tBodies[0].rows].map(r => [...r.cells].map(text))}));
  const imgs = [...document.images].map(i => ({key: i.dataset.key, w: i.naturalWidth, h: i.naturalHeight,
                                               ok: i.complete && i.naturalWidth > 0}));
  const wide = [...document.querySelectorAll('#per-class figure img, #curves figure img')];
  return {summary, perClass, imgs, imagesFlag: document.documentElement.dataset.images,
          figureWidths: wide.map(i => i.getBoundingClientRect().width),
          pageWidth: document.querySelector('section#summary').getBoundingClientRect().width,
          body: document.body.textContent, pwned: typeof window.pwned,
          scripts: document.scripts.length};
})()"""


def parse_cell(text: str) -> tuple[float, float]:
    """``45.3 ± 1.2`` → (45.3, 1.2); ``45.3`` → (45.3, 0.0)."""
    mean, _, std = text.partition(" ± ")
    return float(mean), float(std or 0)


def check_page(browser: Chromium, page: Path, table_dir: Path, shot: Path) -> dict:
    """Load a report and check it: no console errors, no requests but the page, images decoded,
    the tables show the numbers of the CSV files. Returns what the DOM holds."""
    session = browser.open(page.resolve().as_uri())
    # the page's own check runs on load; give it the rest of the event loop turn
    for _ in range(50):
        flag = browser.evaluate(session, "document.documentElement.dataset.images")
        if flag != "pending":
            break
        time.sleep(0.05)
    dom = browser.evaluate(session, READ_DOM)
    browser.screenshot(session, shot)
    assert browser.problems(session) == []
    assert [u for u in browser.requests(session) if not (u == page.resolve().as_uri() or u.startswith("data:"))] == []
    assert dom["imgs"] and all(i["ok"] for i in dom["imgs"]), dom["imgs"]
    assert dom["imagesFlag"] == f"ok:{len(dom['imgs'])}"
    assert dom["scripts"] == 1 and dom["pwned"] == "undefined"

    summary = pd.read_csv(table_dir / "summary.csv", keep_default_na=False, na_values=[""])
    shown = {(t["attack"], r["study"], r["method"], r["dataset"], r["ratio"]): r for t in dom["summary"]
             for r in t["rows"]}
    assert len(shown) == len(summary) > 0
    for _, row in summary.iterrows():
        r = shown[(row["attack"], row["study"], row["method"], row["dataset"], f"{row['ratio']:g}")]
        assert r["cells"] == [A.fmt_cell(row[f"{g}_mean"], row[f"{g}_std"]) for g in A.GROUPS]
        assert r["seeds"] == str(row["seeds"])
    for t in dom["summary"]:  # bold: the top, ahead of every other row by more than the seed spread
        blocks: dict = {}
        for r in t["rows"]:
            blocks.setdefault((r["dataset"], r["ratio"]), []).append(r)
        for rows in blocks.values():
            if len(rows) > 1:
                for i in range(len(A.GROUPS)):
                    cells = [(r, *parse_cell(r["cells"][i])) for r in rows if r["cells"][i] != "–"]
                    top = max(m for _, m, _ in cells)
                    for r, m, sd in cells:
                        others = [(m2, sd2) for r2, m2, sd2 in cells if r2 is not r]
                        clear = all(m - m2 > max(sd, sd2) for m2, sd2 in others)
                        assert r["bold"][i] == (m == top and clear), (r, i)
                        if r["tied"][i]:
                            assert not clear and (m == top or any(top - m <= max(sd, sd2) for _, m2, sd2 in cells
                                                                  if m2 == top))

    per_class = pd.read_csv(table_dir / "per_class.csv", keep_default_na=False, na_values=[""])
    assert dom["perClass"]
    for t in dom["perClass"]:
        sub = per_class[(per_class["attack"] == t["attack"]) & (per_class["dataset"] == t["dataset"])]
        for cells in t["rows"]:
            series = cells[0]
            means = sub[sub["method"] == series].groupby("rank")["accuracy"].mean().sort_index()
            assert cells[1:-1] == [A.fmt_pct(v) for v in means], series
    return dom


@pytest.fixture(scope="module")
def chromium_binary() -> str:
    """The Chromium binary (module scope, so a skip comes before the expensive fixtures)."""
    return chromium_or_skip()


def test_report_in_chromium(chromium_binary, real_study, evil_report, tmp_path, monkeypatch):
    binary = chromium_binary
    evil, evil_page = evil_report
    monkeypatch.chdir(tmp_path)
    assert cli_main(["report", str(real_study), "--quiet", "--tables-dir", str(tmp_path / "real-tables")]) == 0
    browser = Chromium(binary)
    try:
        dom = check_page(browser, real_study / "report.html", tmp_path / "real-tables",
                         ARTIFACTS / "report-real-study.png")
        assert "pending" in dom["body"]
        partial = make_partial_study(tmp_path / "p")
        assert cli_main(["report", str(partial), "--quiet"]) == 0
        dom = check_page(browser, partial / "report.html", partial, ARTIFACTS / "report-partial-attack.png")
        assert "1 of 4 jobs, 100 images" in dom["body"]
        assert {r["images"] for t in dom["summary"] for r in t["rows"]} == {"1000", "100"}
        assert [t["attack"] for t in dom["summary"]][-1] == "aa"  # after the complete ones, in its own section
        assert "Tail and worst class vs head, PGD-20" in dom["body"] and "vs head, AutoAttack" not in dom["body"]
        assert dom["figureWidths"] and min(dom["figureWidths"]) >= 0.6 * dom["pageWidth"], dom["figureWidths"]
        dom = check_page(browser, evil_page, evil, ARTIFACTS / "report-escaping.png")
        assert EVIL_METHOD in dom["body"] and EVIL_CLASS in dom["body"]
        assert '<img src=x onerror="window.pwned=3"> masking' in dom["body"]
        assert "ValueError: <script>window.pwned=4</script>" in dom["body"]
    finally:
        browser.close()
    assert (ARTIFACTS / "report-real-study.png").stat().st_size > 10_000


def test_the_answer_is_in_the_first_screen_and_the_warnings_are_not(chromium_binary, tmp_path):
    """A study like the committed one (15 labels × 3 seeds, PGD-20 and AutoAttack, a warning on every
    other job): at 1400 × 900 the ranking and its sentence are on the first screen, the warnings below."""
    study = tmp_path / "like-fmnist-lt"
    labels = ["pgd-at", "at-bsl", "reat", "reat-official", "cb-at", "trades", "mart", "robal", "taet", "cfa", "wat",
              "frl", "reat+no-rbl", "reat+no-tail", "reat+no-bsl"]
    square = ("AutoAttack: Square Attack has decreased the robust accuracy of 0.40%. This might indicate that the "
              "robustness evaluation using AutoAttack is unreliable. See flags_doc.md for details.")
    for i, m in enumerate(labels):
        for seed in (0, 1, 2):
            write_job(study, m, seed, ratio=0.01, attacks=("clean", "pgd20", "aa"),
                      warnings=[square] if (i + seed) % 2 else [])
    page = tmp_path / "page.html"
    assert cli_main(["report", str(study), "--html", str(page), "--tables-dir", str(tmp_path / "t"), "--quiet"]) == 0
    browser = Chromium(chromium_binary)
    try:
        session = browser.open(page.resolve().as_uri(), width=1400, height=900)
        where = browser.evaluate(session, """(() => {
          const top = sel => { const e = document.querySelector(sel); return e ? e.getBoundingClientRect().top : null; };
          return {ranking: top('table.verdict'), sentence: top('p.verdict-sentence'), warnings: top('section#warnings'),
                  firstRow: document.querySelector('table.verdict tbody tr') ?
                            document.querySelector('table.verdict tbody tr').getBoundingClientRect().bottom : null,
                  kinds: [...document.querySelectorAll('#warning-kinds-table tbody tr')].map(r => r.cells[1].textContent)};
        })()""")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session, timeout=60)
        (ARTIFACTS / "report-first-screen.png").write_bytes(base64.b64decode(shot["data"]))
        assert browser.problems(session) == []
    finally:
        browser.close()
    assert where["sentence"] is not None and where["sentence"] < 900
    assert where["ranking"] is not None and where["firstRow"] < 900
    assert where["warnings"] > 900
    flagged = sum((i + seed) % 2 for i in range(len(labels)) for seed in (0, 1, 2))
    assert where["kinds"] == [str(flagged)]  # one line for the one kind, counting its jobs
