"""What a new user meets (issue 20): live progress, `status` conventions, config files, the dry run,
help with defaults, `list -v`, the end-of-run summary and where the report goes."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ltbench.cli import build_parser, main as cli_main
from ltbench import study_folder as sf
from runner_helpers import ROOT, TINY_ARGS

CONTROL = ("\r", "\x1b")


# --- progress --------------------------------------------------------------------------------------

TINY_JOB = dict(dataset="fmnist", ratio=0.5, epochs=2, model="small-cnn", model_params={"width": 4},
                batch_size=16, eval_attacks=("clean",), train_attack_steps=1, device="cpu")


def test_progress_reports_loss_accuracy_speed_eta_without_changing_numbers(tiny_fmnist, tmp_path, one_thread):
    from ltbench.config import JobConfig
    from ltbench.engine.train import run_job
    from runner_helpers import result_core

    cfg = JobConfig(method="pgd-at", **TINY_JOB)
    messages = []
    run_job(cfg, tmp_path / "with", messages.append)
    batches = [m for m in messages if isinstance(m, dict) and m["kind"] == "batch"]
    epochs = [m for m in messages if isinstance(m, dict) and m["kind"] == "epoch"]
    assert [m["epoch"] for m in epochs] == [1, 2]
    for m in batches + epochs:
        assert m["loss"] > 0 and 0 <= m["acc"] <= 1 and m["images_per_s"] > 0 and 0 < m["done"] <= 1
        assert not any(c in m["text"] for c in CONTROL)
    last = batches[-1]
    assert last["batch"] == last["batches"] and last["done"] == 1 and last["eta_s"] == 0
    assert "loss" in last["text"] and "img/s" in last["text"] and "ETA" in last["text"]
    # the accumulators are read at most every 10 batches (and at most once a second)
    assert len(batches) <= 2 * (last["batches"] // 10 + 2)
    # the epoch's last running values are the epoch's logged values
    logged = [json.loads(x) for x in (tmp_path / "with" / "metrics.jsonl").read_text().splitlines()]
    assert epochs[-1]["loss"] == logged[-1]["loss"] and epochs[-1]["acc"] == logged[-1]["train_adv_acc"]
    assert abs(last["loss"] - logged[-1]["loss"]) < 1e-5
    # reporting changes no number
    run_job(cfg, tmp_path / "without")
    assert result_core(tmp_path / "with") == result_core(tmp_path / "without")


def test_no_listener_no_read(tiny_fmnist, tmp_path, one_thread, monkeypatch):
    """Without a progress listener the loop never reads its accumulators before the epoch's end."""
    from ltbench.config import JobConfig
    from ltbench.engine import train

    def boom(*a, **k):
        raise AssertionError("read the accumulators without a listener")

    monkeypatch.setattr(train.Trainer, "report_batch", boom)
    train.run_job(JobConfig(method="pgd-at", **{**TINY_JOB, "epochs": 1}), tmp_path / "job")


def test_reads_are_rate_limited(tiny_fmnist, tmp_path, one_thread, monkeypatch):
    from ltbench.config import JobConfig
    from ltbench.engine import train

    monkeypatch.setattr(train.Trainer, "PROGRESS_READ_S", 1e9)  # only each epoch's last batch is read
    messages = []
    train.run_job(JobConfig(method="pgd-at", **TINY_JOB), tmp_path / "job", messages.append)
    batches = [(m["epoch"], m["batch"], m["batches"]) for m in messages if isinstance(m, dict) and m["kind"] == "batch"]
    n = batches[-1][2]
    assert batches == [(1, 1, n), (1, n, n), (2, n, n)]  # the first read, then each epoch's last batch


def test_line_printer_plain_lines_off_a_terminal():
    from ltbench.progress import LinePrinter

    out = io.StringIO()
    p = LinePrinter(out, period_s=3600)
    for b in range(1, 6):
        p(f"eval pgd20 batch {b}/5")
    p("eval cw20 batch 1/5")
    p.close()
    text = out.getvalue()
    assert not any(c in text for c in CONTROL)
    assert text.splitlines() == ["eval pgd20 batch 1/5", "eval cw20 batch 1/5"]  # new phases; the rest throttled


def test_plain_display_epoch_lines_and_study_eta(monkeypatch):
    from ltbench.progress import batch_message
    from ltbench.runner import display as D

    out = io.StringIO()
    d = D.Display(total=4, done=0, stream=out, workers=2)
    clock = iter([0.0, 0.0, 10.0, 10.0, 10.0, 10.0])
    monkeypatch.setattr(D.time, "monotonic", lambda: next(clock, 10.0))
    d.started("cpu0", "a")
    d.started("cpu1", "b")
    msg = batch_message(1, 2, 5, 10, 1.5, 0.25, 300.0, 10.0, 0.5)
    d.progress("cpu0", "a", msg)
    d.progress("cpu1", "b", msg)
    # each running job half done after 10 s: 10 s left each, two more jobs of 20 s, over two workers
    assert d.clock.eta_s() == pytest.approx((10 + 10 + 2 * 20) / 2)
    d.progress("cpu0", "a", {"kind": "epoch", "text": "epoch 1/2 done: loss 1.5", "done": 0.5})
    assert "[cpu0] a: epoch 1/2 done: loss 1.5" in out.getvalue()
    assert not any(c in out.getvalue() for c in CONTROL)


# --- status ------------------------------------------------------------------------------------------

def _fake_study(root: Path, n_pending: int = 0) -> Path:
    jobs = {"a__fmnist__r0.1__s0": {"epochs": 3}, "b__fmnist__r0.1__s0": {"epochs": 3}}
    jobs.update({f"p{i}__fmnist__r0.1__s0": {"epochs": 3} for i in range(n_pending)})
    root.mkdir(parents=True)
    (root / "study.json").write_text(json.dumps({"name": root.name, "jobs": jobs}))
    done, failed = root / "a__fmnist__r0.1__s0", root / "b__fmnist__r0.1__s0"
    done.mkdir()
    (done / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n{"epoch": 2}\n')
    (done / "result.json").write_text(json.dumps({"metrics": {"clean": {"overall": 0.5, "tail": 0.25, "worst": 0.1,
                                                                         "n": 100}},
                                                  "warnings": ["gradient masking suspected: …", "AutoAttack: …"]}))
    failed.mkdir()
    (failed / "metrics.jsonl").write_text('{"epoch": 0}\n')
    (failed / "failed.json").write_text(json.dumps({"error": "RuntimeError: boom", "epoch": 2}))
    return root


def test_status_fails_on_failed_jobs_and_json_has_numbers(tmp_path, capsys):
    study = _fake_study(tmp_path / "s")
    assert cli_main(["status", str(study)]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and f"warnings: 2 in 1 of 1 finished job; `ltbench report {study}`" in out
    assert cli_main(["status", str(study), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    a, b = data["jobs"]
    assert a["metrics"]["clean"] == {"overall": 0.5, "tail": 0.25, "worst": 0.1, "n": 100}
    assert a["epochs_done"] == 3 and a["epochs"] == 3 and a["warnings"] == 2
    assert b["failed_epoch"] == 2 and b["error"] == "RuntimeError: boom" and b["epochs_done"] == 1
    assert data["counts"] == {"done": 1, "running": 0, "failed": 1, "pending": 0}
    (study / "b__fmnist__r0.1__s0" / "failed.json").unlink()
    assert cli_main(["status", str(study), "--json"]) == 0


def test_status_into_a_closed_pipe_is_quiet(tmp_path):
    study = _fake_study(tmp_path / "s", n_pending=3000)  # far more than a pipe buffer
    proc = subprocess.Popen([sys.executable, "-m", "ltbench", "status", str(study), "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(200)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


# --- help, list -v -------------------------------------------------------------------------------------

def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("training epochs (default: 5)", "(default: 128)", "(default: pgd-at)", "(default: exp)",
                   "--dry-run", "--config FILE", "long-tail profile"):
        assert needle in text, needle
    with pytest.raises(SystemExit):
        cli_main(["report", "--help"])
    assert "report.html" in capsys.readouterr().out


def test_list_methods_verbose_shows_parameters(capsys):
    assert cli_main(["list", "methods", "-v"]) == 0
    out = capsys.readouterr().out
    assert "--set reat.tail_weight=…  (float, default 1.0)" in out
    assert "--set mart.lam=…" in out
    assert cli_main(["list", "models", "-v"]) == 0
    assert "--set model.width=…  (int, default 32)" in capsys.readouterr().out


# --- config files and the dry run -----------------------------------------------------------------------

def test_config_file_flags_override_and_errors(tmp_path, capsys):
    from ltbench.study.cli import add_arguments
    from ltbench.study.grid import study_spec
    import argparse

    cfg = tmp_path / "my.toml"
    cfg.write_text('preset = "fmnist-lt-quick"\nmethods = ["pgd-at", "trades"]\nepochs = 3\nseeds = [0, 1]\n')
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for flag in ("--config", "--preset"):
        spec = study_spec(parser.parse_args([flag, str(cfg), "--epochs", "4"]))
        assert spec["methods"] == ["pgd-at", "trades"] and spec["seeds"] == [0, 1]
        assert spec["epochs"] == 4  # the flag wins over the file
        assert spec["eval_attacks"] == ["clean", "pgd20"] and spec["out"] == "results/demo"  # from the preset
    from ltbench.study.grid import build_jobs

    # the optimiser flags reach every job's configuration
    spec = study_spec(parser.parse_args(["--config", str(cfg), "--lr", "0.7", "--weight-decay", "7e-5"]))
    assert {(j.lr, j.weight_decay) for j in build_jobs(spec)} == {(0.7, 7e-5)}
    bad = tmp_path / "bad.toml"
    bad.write_text("methodz = ['pgd-at']\n")
    assert cli_main(["run", "--config", str(bad), "--dry-run"]) == 2
    assert "unknown key(s) methodz" in capsys.readouterr().err
    bad.write_text("methods = [\n")
    assert cli_main(["run", "--preset", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert cli_main(["run", "--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_dry_run_lists_and_estimates_and_writes_nothing(tmp_path, capsys, tiny_fmnist):
    out = tmp_path / "study"
    args = ["run", "--out", str(out), *TINY_ARGS, "--seeds", "0", "1", "--epochs", "2", "--workers", "1"]
    assert cli_main([*args, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "2 to run, 0 to skip" in text and "pgd-at__fmnist__r0.2__s1" in text and "~" in text
    # a finished job is skipped, and its timings estimate the other
    from ltbench.study.grid import build_jobs, study_spec

    parsed = build_parser()[0].parse_args(args)
    first = build_jobs(study_spec(parsed))[0]
    job = out / first.job_name
    job.mkdir(parents=True)
    (job / "config.json").write_text(json.dumps(first.to_dict()))
    (job / "metrics.jsonl").write_text('{"epoch": 0, "time_s": 30}\n{"epoch": 1, "time_s": 30}\n')
    (job / "result.json").write_text(json.dumps({"metrics": {}, "timing": {"eval_s": 15}}))
    assert cli_main([*args, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "1 to run, 1 to skip" in text and "skip done" in text
    assert "1m15s" in text  # 2 epochs × 30 s + 15 s of evaluation
    assert sorted(p.name for p in out.iterdir()) == ["pgd-at__fmnist__r0.2__s0"]


# --- a run end to end: progress off a terminal, log.txt, the summary, the next command, the report --------

def test_run_prints_summary_and_next_command_and_report_goes_beside(tmp_path, capsys, tiny_fmnist):
    out = tmp_path / "study"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f'methods = ["pgd-at"]\nseeds = [0, 1]\nepochs = 2\nout = "{out}"\n')
    assert cli_main(["run", "--config", str(cfg), *TINY_ARGS, "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert not any(c in captured.err for c in CONTROL)
    assert "epoch 2/2 done: loss" in captured.err
    assert "PGD-2 accuracy (%), mean ± std over seeds" in captured.out
    assert " ± " in captured.out.split("PGD-2 accuracy")[1]
    assert f"next: ltbench report {out}" in captured.out
    log = (out / "pgd-at__fmnist__r0.2__s0" / "log.txt").read_text()
    assert "epoch 1/2 done: loss" in log and "AE acc" in log and " lr 0.1 " in log and "img/s" in log
    assert cli_main(["report", str(out), "--quiet"]) == 0
    assert (out / "report.html").is_file() and (out / "summary.csv").is_file()
    # `ltbench eval` into a log: plain lines, no carriage returns or escape sequences
    capsys.readouterr()
    assert cli_main(["eval", str(out / "pgd-at__fmnist__r0.2__s0"), "--attacks", "clean", "pgd2",
                     "--out", str(tmp_path / "eval.json")]) == 0
    err = capsys.readouterr().err
    assert "eval pgd2" in err and not any(c in err for c in CONTROL)


# --- TensorBoard (optional extra) ---------------------------------------------------------------------

class FakeWriter:
    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_logger_writes_the_curves(monkeypatch, tmp_path):
    import types

    from ltbench.progress import batch_message, epoch_message
    from ltbench.runner import tensorboard as T

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    monkeypatch.delenv(T.ENV, raising=False)
    assert T.logger_for("job") is None  # off unless the runner turned it on
    monkeypatch.setenv(T.ENV, "")  # so that the variable enable() sets is removed after the test
    T.enable(tmp_path / "study")
    seen = []
    log = T.logger_for("job", seen.append)
    assert log.writer.log_dir == str((tmp_path / "study" / "tensorboard" / "job").resolve())
    log(batch_message(2, 3, 5, 10, 1.25, 0.5, 100.0, 3.0, 0.5))
    log(epoch_message({"epoch": 1, "loss": 1.0, "train_adv_acc": 0.6, "lr": 0.1, "time_s": 2.0,
                       "images_per_s": 50.0}, 3, 2 / 3, 2.0))
    log("eval clean batch 1/2")
    log.close()
    assert ("running/loss", 1.25, 15) in log.writer.scalars and ("epoch/lr", 0.1, 2) in log.writer.scalars
    assert ("epoch/adv_acc", 0.6, 2) in log.writer.scalars and log.writer.closed
    assert len(seen) == 3  # every message still reaches the display


def test_tensorboard_missing_is_one_line(tmp_path, capsys, monkeypatch, tiny_fmnist):
    try:
        import torch.utils.tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    out = tmp_path / "study"
    assert cli_main(["run", "--out", str(out), *TINY_ARGS, "--epochs", "1", "--tensorboard", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'ltbench[tensorboard]'" in err
    assert not out.exists()


def test_slurm_display_reads_progress_numbers(tmp_path):
    from ltbench.runner.slurm import read_progress

    assert read_progress(tmp_path) is None
    (tmp_path / sf.PROGRESS).write_text("eval pgd20 batch 3/8\n")
    assert read_progress(tmp_path) == "eval pgd20 batch 3/8"
    (tmp_path / sf.PROGRESS_JSON).write_text(json.dumps({"kind": "batch", "text": "epoch 1/2", "done": 0.25}))
    assert read_progress(tmp_path)["done"] == 0.25
    (tmp_path / sf.PROGRESS_JSON).write_text("{torn")
    assert read_progress(tmp_path) == "eval pgd20 batch 3/8"


def test_terminal_display_shows_numbers_and_study_eta():
    from ltbench.progress import batch_message
    from ltbench.runner import display as D

    out = io.StringIO()
    d = D.TtyDisplay(total=2, done=0, workers=["gpu0"], stream=out)
    d.started("gpu0", "a")
    d.progress("gpu0", "a", batch_message(1, 2, 5, 10, 1.5, 0.25, 300.0, 10.0, 0.5))
    d.progress("gpu0", "a", "eval pgd20 batch 1/4")
    d.ended("gpu0", "a", {"job": "a", "outcome": "finished"})
    d.close()
    text = out.getvalue()
    assert "loss 1.5000 AE acc 25.0% 300 img/s ETA 10s" in text and "eval pgd20" in text
    assert "ETA " in text.split("1/2 jobs")[-1]  # the study bar carries an ETA once a job reports


def test_study_eta_before_any_job_reports():
    from ltbench.runner import display as D

    clock = D.StudyClock(total=5, done=1, workers=2, per_job_s=100.0)
    assert clock.eta_s() == pytest.approx(4 * 100.0 / 2)  # four jobs to run, two at a time
    assert D.StudyClock(total=5, done=1, workers=2).eta_s() is None  # nothing known: "?"


def test_warnings_line_counts_the_warnings_of_finished_jobs():
    results = [{"warnings": ["a", "b"]}, {"warnings": []}, {"metrics": {}}, None, {"warnings": ["c"]}]
    assert sf.warnings_line(results, "S") == ("warnings: 3 in 2 of 4 finished jobs; `ltbench report S` groups them "
                                              "by kind and says what each means")
    assert sf.warnings_line([{"warnings": []}], "S") == "warnings: none in the 1 finished job"
    assert sf.warnings_line([], "S") == "warnings: no finished job yet"
