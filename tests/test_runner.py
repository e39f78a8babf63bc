"""The local runner: study layout, skipping, failure isolation, --retry-failed, locks, bad input.

Jobs are tiny (a width-4 CNN on a 28×28 ten-class dataset of ~100 images, PGD-2) and run in the
runner's real worker processes, which read the tiny dataset from ``$LTBENCH_DATA``.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from pathlib import Path

import pytest

from ltbench.cli import main as cli_main
from ltbench.errors import LtbenchError
from runner_helpers import ROOT, TINY_ARGS, write_plugin, write_tiny_fmnist


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """LTBENCH_DATA → a tiny Fashion-MNIST; returns (tmp_path, plugin dir).

    The test methods this process loads from the plugin dir are unregistered afterwards.
    """
    from ltbench import plugins, registry

    write_tiny_fmnist(tmp_path / "data")
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path / "data"))
    plugins.load_all()  # built-ins first, so the snapshot holds them
    items, dirs = dict(registry.METHODS._items), set(plugins._loaded_dirs)
    yield tmp_path, write_plugin(tmp_path / "plugins")
    registry.METHODS._items.clear()
    registry.METHODS._items.update(items)
    plugins._loaded_dirs.clear()
    plugins._loaded_dirs.update(dirs)


def run(*args) -> int:
    return cli_main(["run", *args])


def starts(job_dir) -> int:
    """How many times a job was started (one 'start' line per run in its log)."""
    return sum(" start " in line for line in (job_dir / "log.txt").read_text().splitlines())


# --- bad input ----------------------------------------------------------------------------------

BAD = [
    (["--methods", "no-such-method"], "unknown method"),
    (["--datasets", "no-such-data"], "unknown dataset"),
    (["--model", "no-such-model"], "unknown model"),
    (["--ratios", "0"], "ratio"),
    (["--ratios", "1.5"], "ratio"),
    (["--ratios", "-0.1"], "ratio"),
    (["--epochs", "0"], "epochs"),
    (["--attacks", "clean", "pgdx"], "attack"),
    (["--preset", "no-such-preset"], "unknown preset"),
    (["--set", "pgd-at.nope=1"], "nope"),
    (["--workers", "0"], "workers"),
    (["--gpus", "0", "--workers", "2"], "either"),
    (["--jobs-per-gpu", "0"], "jobs-per-gpu must be at least 1"),
    (["--jobs-per-gpu", "2", "--workers", "2"], "on the CPU use --workers"),
    (["--jobs-per-gpu", "2"], "no CUDA device"),
    (["--executor", "slurm", "--time", "soon"], "time"),
]


@pytest.mark.parametrize("extra,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_writes_nothing(tiny, capsys, extra, needle):
    tmp, _ = tiny
    if needle == "no CUDA device":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device: --jobs-per-gpu is valid here")
    out = tmp / "study"
    args = ["--out", str(out), *TINY_ARGS, "--epochs", "1", *extra]
    if "--attacks" in extra:  # the later --attacks wins; drop TINY_ARGS' own
        i = args.index("--attacks")
        del args[i:i + 3]
    assert run(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ltbench run: error:") and needle in err, err
    assert not out.exists()


def test_unwritable_output_folder(tiny, capsys):
    tmp, _ = tiny
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    assert run("--out", str(blocker / "study"), *TINY_ARGS, "--epochs", "1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not usable" in err
    assert blocker.read_text() == "not a folder"


def test_changed_config_for_existing_job_is_refused(tiny, capsys):
    tmp, _ = tiny
    out = tmp / "study"
    # Create the study without running it: the job exists in it with 2 epochs.
    from ltbench.study.grid import build_jobs
    from ltbench.study.study import Study

    spec = {"methods": ["pgd-at"], "datasets": ["fmnist"], "ratios": [0.01], "seeds": [0],
            "method_params": {}, "model_params": {}, "epochs": 2}
    Study.prepare(out, spec, build_jobs(spec))
    before = (out / "study.json").read_text()
    assert run("--out", str(out), "--epochs", "3") == 2
    err = capsys.readouterr().err
    assert "configured differently" in err and "epochs 2 → 3" in err and "--redo" in err
    assert (out / "study.json").read_text() == before


def test_settings_a_job_cannot_use_do_not_make_it_another_job(tiny):
    """scale_schedules for a method without epoch-valued parameters, and where the best epoch is
    selected when none is: a job stored with other values there is the same job (not refused, not
    a variant); for CFA, whose start epoch is scaled, scale_schedules still makes another job."""
    tmp, _ = tiny
    from ltbench.study.grid import build_jobs
    from ltbench import study_folder as sf
    from ltbench.study.study import Study

    for method, refused in (("pgd-at", False), ("cfa", True)):
        out = tmp / method
        spec = {"methods": [method], "datasets": ["fmnist"], "ratios": [0.01], "seeds": [0, 1],
                "method_params": {}, "model_params": {}, "epochs": 2}
        old = {**spec, "scale_schedules": False, "select_on": "test", "seeds": [0]}
        Study.prepare(out, old, build_jobs(old))
        if refused:
            with pytest.raises(LtbenchError, match="scale_schedules"):
                Study.check_compatible(out, build_jobs(spec))
        else:
            Study.check_compatible(out, build_jobs(spec))  # seed 0 as stored, seed 1 as built today
            Study.prepare(out, spec, build_jobs(spec))
        for cfg in build_jobs(old) + build_jobs({**spec, "seeds": [1]}):  # the folders, as a run leaves them
            sf.write_config(out / cfg.job_name, cfg.to_dict())
        jobs = Study.open(out).jobs  # seeds of one label with differing settings are labelled apart
        assert [bool(j.variant) for j in jobs] == [refused, refused]


def test_redo_starts_matching_jobs_afresh_with_the_new_configuration(tiny, capsys):
    tmp, _ = tiny
    out = tmp / "study"
    args = ("--out", str(out), "--methods", "pgd-at", "trades", *TINY_ARGS)
    assert run(*args, "--epochs", "1") == 0
    job, other = out / "pgd-at__fmnist__r0.2__s0", out / "trades__fmnist__r0.2__s0"
    untouched = (other / "result.json").read_text()
    assert run(*args, "--epochs", "1", "--redo", "nomatch*") == 2
    assert "matches no job" in capsys.readouterr().err
    assert run(*args, "--epochs", "2", "--redo", "pgd-at__*") == 2  # the trades job changed too
    err = capsys.readouterr().err
    assert "trades__fmnist__r0.2__s0" in err and "configured differently" in err
    assert (job / "result.json").is_file()  # a refused run deletes nothing
    assert run(*args, "--epochs", "2", "--redo", "*__s0", "--dry-run") == 0
    assert capsys.readouterr().out.count("afresh (--redo)") == 2 and (job / "result.json").is_file()
    assert run(*args, "--epochs", "2", "--redo", "*__s0") == 0
    for folder in (job, other):
        assert json.loads((folder / "config.json").read_text())["epochs"] == 2 and starts(folder) == 1
    assert json.loads((out / "study.json").read_text())["jobs"][job.name]["epochs"] == 2
    assert (other / "result.json").read_text() != untouched


@pytest.mark.parametrize("preset", ["fmnist-lt-quick", "fmnist-lt", "fmnist-lt-ratios", "cifar10-lt-reat-paper", "cifar100-lt-reat-paper",
                                    "cifar10-lt-at-bsl-paper"])
def test_presets_expand_to_valid_jobs(preset):
    from ltbench.presets import load_preset
    from ltbench.study.grid import build_jobs

    spec = load_preset(preset)
    spec.setdefault("method_params", {})
    spec.setdefault("model_params", {})
    jobs = build_jobs(spec)  # every name, value and attack checked
    assert jobs and all(j.epochs >= 1 for j in jobs)
    if preset == "fmnist-lt-quick":  # the demo: one PGD-AT job, clean and PGD-20 per class
        assert [j.job_name for j in jobs] == ["pgd-at__fmnist__r0.01__s0"]
        assert list(jobs[0].eval_attacks) == ["clean", "pgd20"] and jobs[0].device == "auto"
    if preset.endswith("reat-paper"):  # DESIGN.md's recipe
        j = jobs[0]
        assert (j.model, j.epochs, j.batch_size, j.lr, j.momentum, j.weight_decay) == \
            ("resnet18", 80, 128, 0.1, 0.9, 5e-4)
        assert j.select_best == "pgd20" and j.select_on == "test"  # "best checkpoint by PGD-20", on the test set
        assert [round(f * j.epochs) for f in j.lr_milestones] == [60, 75] and j.train_attack_steps == 10
        assert {"reat", "reat-official"} <= {x.method for x in jobs}
    if preset in ("fmnist-lt", "fmnist-lt-ratios"):
        # The committed study is this preset's: re-running its command runs only what is missing
        # (a job configured differently would make the whole command refuse).
        from ltbench.study.study import Study

        committed = Path(__file__).resolve().parents[1] / load_preset(preset)["out"]
        if committed.exists():
            Study.check_compatible(committed, jobs)
    if preset == "fmnist-lt":  # FRL fine-tunes each seed's PGD-AT job at the authors' lr 0.001
        frl = [j for j in jobs if j.method == "frl"]
        assert len(frl) == 3 and all(j.init_from and j.lr == 0.001 for j in frl)
    if preset == "fmnist-lt-ratios":  # the sweep: the reference study's setting at two more ratios
        ref = {j.job_name.split("__")[0]: j for j in build_jobs({**load_preset("fmnist-lt"), "method_params": {},
                                                                  "model_params": {}})}
        assert sorted({j.ratio for j in jobs}) == [0.02, 0.1] and len(jobs) == 9 * 2 * 3
        for j in jobs:
            twin = ref[j.job_name.split("__")[0]]  # the same label at ratio 0.01
            mine, theirs = j.to_dict(), twin.to_dict()
            for key in ("ratio", "seed", "eval_attacks"):
                mine.pop(key), theirs.pop(key)
            assert mine == theirs, j.job_name
            assert set(j.eval_attacks) == set(twin.eval_attacks) - {"ls20"}


# --- a study end to end ---------------------------------------------------------------------------

def test_study_layout_skip_and_status(tiny, capsys):
    tmp, _ = tiny
    out = tmp / "study"
    assert run("--out", str(out), *TINY_ARGS, "--seeds", "0", "1", "--epochs", "2", "--workers", "2") == 0
    captured = capsys.readouterr()
    study = json.loads((out / "study.json").read_text())
    names = ["pgd-at__fmnist__r0.2__s0", "pgd-at__fmnist__r0.2__s1"]
    assert list(study["jobs"]) == names
    assert study["code_version"]["ltbench"] and "commit" in study["code_version"]
    assert study["spec"]["seeds"] == [0, 1] and study["jobs"][names[1]]["seed"] == 1
    for name in names:
        d = out / name
        for f in ("config.json", "lt_indices.json", "metrics.jsonl", "checkpoint.pt", "result.json", "log.txt"):
            assert (d / f).is_file(), f
        assert not (d / "failed.json").exists() and not (d / "running.json").exists()
        assert json.loads((d / "result.json").read_text())["config"]["seed"] == int(name[-1])
        assert starts(d) == 1
        assert "finished" in (d / "log.txt").read_text()
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries
    assert "results written to" in captured.out
    assert re.search(r"^warnings: (none in the 2 finished jobs|\d+ in \d of 2 finished jobs;)", captured.out, re.M)
    assert "[cpu0]" in captured.err and "[cpu1]" in captured.err  # two workers

    # Re-running skips finished jobs (no new start in their logs).
    t0 = time.monotonic()
    assert run("--out", str(out), *TINY_ARGS, "--seeds", "0", "1", "--epochs", "2") == 0
    assert time.monotonic() - t0 < 15
    assert "2 already done" in capsys.readouterr().err
    assert all(starts(out / n) == 1 for n in names)

    # Extending the grid adds a job to the same study.
    assert run("--out", str(out), *TINY_ARGS, "--seeds", "0", "1", "2", "--epochs", "2") == 0
    assert len(json.loads((out / "study.json").read_text())["jobs"]) == 3
    capsys.readouterr()

    assert cli_main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count(" done ") == 3 and "3 done, 0 running, 0 failed, 0 pending" in text


def test_failures_are_isolated_recorded_and_retried(tiny, capsys, monkeypatch):
    tmp, plugins = tiny
    out = tmp / "study"
    flag = tmp / "boom.flag"
    flag.write_text("1")
    args = ["--out", str(out), *TINY_ARGS, "--methods", "boom-at", "nan-at", "pgd-at",
            "--methods-dir", str(plugins), "--epochs", "2"]
    monkeypatch.setenv("BOOM_FLAG", str(flag))  # boom-at raises while this file exists
    assert run(*args) == 1
    captured = capsys.readouterr()
    boom, nan, ok = (out / f"{m}__fmnist__r0.2__s0" for m in ("boom-at", "nan-at", "pgd-at"))
    assert (ok / "result.json").exists()
    for d in (boom, nan):
        assert not (d / "result.json").exists()
        rec = json.loads((d / "failed.json").read_text())
        assert rec["epoch"] == 2 and "Traceback" in rec["traceback"]
        assert (d / "error.txt").read_text() == rec["traceback"]
    assert json.loads((boom / "failed.json").read_text())["error"] == "RuntimeError: boom: test failure"
    nan_rec = json.loads((nan / "failed.json").read_text())
    assert nan_rec["type"] == "TrainingDiverged" and "nan" in nan_rec["error"]
    assert "2 job(s) did not finish" in captured.out and "error.txt" in captured.out

    assert cli_main(["status", str(out)]) == 1  # failed jobs: non-zero, for scripts
    text = capsys.readouterr().out
    assert "1 done, 0 running, 2 failed, 0 pending" in text and "(epoch 2)" in text

    # Without --retry-failed, failed jobs are reported, not rerun.
    assert run(*args) == 1
    assert "failed before" in capsys.readouterr().err
    assert starts(boom) == 1 and starts(nan) == 1

    # With it, only they rerun: boom now succeeds (resuming from its epoch-1 checkpoint).
    flag.unlink()
    assert run(*args, "--retry-failed") == 1  # nan-at fails again
    assert starts(boom) == 2 and starts(nan) == 2 and starts(ok) == 1
    assert (boom / "result.json").exists() and not (boom / "failed.json").exists()
    assert len((boom / "metrics.jsonl").read_text().splitlines()) == 2
    assert (nan / "failed.json").exists()


def test_two_runners_never_run_the_same_job(tiny, capsys):
    tmp, plugins = tiny
    out = tmp / "study"
    cmd = [sys.executable, "-m", "ltbench", "run", "--out", str(out), *TINY_ARGS, "--methods", "slow-at",
           "--methods-dir", str(plugins), "--set", "slow-at.pause=1.5", "--seeds", "0", "1", "--epochs", "1",
           "--quiet"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The second runner starts once the first holds a job's lock.
    deadline = time.monotonic() + 60
    while not list(out.glob("*/running.json")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert cli_main(["status", str(out)]) == 0
    assert "1 running" in capsys.readouterr().out
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    first_out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, first_out
    assert second.returncode == 0, second.stdout + second.stderr
    for seed in (0, 1):
        d = out / f"slow-at__fmnist__r0.2__s{seed}"
        assert (d / "result.json").exists()
        assert starts(d) == 1, (d / "log.txt").read_text()


# --- executor planning (no GPU needed: CUDA is faked) -------------------------------------------

class _Args:
    """The flags make_executor reads, local executor defaults."""

    def __init__(self, **kw):
        self.executor, self.gpus, self.workers, self.retry_failed, self.methods_dir = "local", None, None, False, []
        self.jobs_per_gpu = None
        self.__dict__.update(kw)


def _fake_gpus(monkeypatch, n: int, visible: str | None = None):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


def test_one_worker_per_gpu(monkeypatch):
    from ltbench.runner.executors import make_executor

    _fake_gpus(monkeypatch, 4)
    ex = make_executor(_Args(), {})
    assert [s.name for s in ex.slots] == ["gpu0", "gpu1", "gpu2", "gpu3"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in ex.slots] == ["0", "1", "2", "3"]

    _fake_gpus(monkeypatch, 4, visible="4,5,6,7")  # ids are torch's, mapped to the physical ones
    ex = make_executor(_Args(gpus="0,2"), {})
    assert [(s.name, s.env["CUDA_VISIBLE_DEVICES"]) for s in ex.slots] == [("gpu0", "4"), ("gpu2", "6")]

    ex = make_executor(_Args(workers=3), {})  # CPU workers hide the GPUs
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in ex.slots] == ["", "", ""]
    assert make_executor(_Args(), {"device": "cpu"}).slots[0].name == "cpu0"
    assert make_executor(_Args(), {"device": "cuda:1"}).slots[0].env == {}


def test_several_jobs_per_gpu(monkeypatch):
    from ltbench.runner import local
    from ltbench.runner.executors import make_executor

    monkeypatch.setattr(local, "available_cores", lambda: 16)
    _fake_gpus(monkeypatch, 4, visible="4,5,6,7")
    ex = make_executor(_Args(gpus="0,2", jobs_per_gpu=2), {})
    assert [(s.name, s.env["CUDA_VISIBLE_DEVICES"], s.threads) for s in ex.slots] == [
        ("gpu0.0", "4", 4), ("gpu0.1", "4", 4), ("gpu2.0", "6", 4), ("gpu2.1", "6", 4)]
    assert [s.name for s in make_executor(_Args(jobs_per_gpu=1), {}).slots] == ["gpu0", "gpu1", "gpu2", "gpu3"]
    assert len(make_executor(_Args(jobs_per_gpu=3), {}).slots) == 12
    pinned = make_executor(_Args(jobs_per_gpu=2), {"device": "cuda:1"}).slots
    assert [(s.name, s.env) for s in pinned] == [("cuda:1.0", {}), ("cuda:1.1", {})]


@pytest.mark.parametrize("kw,spec,needle", [
    ({"jobs_per_gpu": 0}, {}, "at least 1"),
    ({"jobs_per_gpu": 2}, {"device": "cpu"}, "on the CPU use --workers"),
    ({"jobs_per_gpu": 2, "executor": "slurm"}, {}, "--executor local"),
    ({"gpus": "0,4"}, {}, "ids must be distinct"),
    ({"gpus": "1,1"}, {}, "ids must be distinct"),
    ({"gpus": "a"}, {}, "comma-separated"),
    ({"gpus": "0"}, {"device": "cpu"}, "--device cpu"),
    ({"workers": 2}, {"device": "cuda"}, "--gpus"),
])
def test_bad_gpu_requests(monkeypatch, kw, spec, needle):
    from ltbench.errors import LtbenchError
    from ltbench.runner.executors import make_executor

    _fake_gpus(monkeypatch, 4)
    with pytest.raises(LtbenchError, match=needle):
        make_executor(_Args(**kw), spec)


def test_no_gpu_means_one_cpu_worker(monkeypatch):
    from ltbench.errors import LtbenchError
    from ltbench.runner.executors import make_executor

    _fake_gpus(monkeypatch, 0)
    assert [s.name for s in make_executor(_Args(), {}).slots] == ["cpu0"]
    with pytest.raises(LtbenchError, match="no CUDA device"):
        make_executor(_Args(), {"device": "cuda"})


# --- jobs that start from another job (init_from) ---------------------------------------------

def test_a_job_that_starts_from_another_waits_for_it(tiny):
    """trades fine-tunes the same seed's pgd-at job and comes first in the grid: with two workers
    it would start at once and fail ("not a finished job"); it waits for pgd-at instead."""
    tmp, _ = tiny
    out = tmp / "study"
    (tmp / "grid.toml").write_text(
        'methods = ["trades", "pgd-at"]\nepochs = 1\n'
        f'[per_method]\n"trades" = {{init_from = "{out}/pgd-at__{{dataset}}__r{{ratio:g}}__s{{seed}}", lr = 0.01}}\n')
    assert run("--config", str(tmp / "grid.toml"), *TINY_ARGS, "--seeds", "0", "--workers", "2",
               "--out", str(out), "--quiet") == 0
    first, then = out / "pgd-at__fmnist__r0.2__s0", out / "trades__fmnist__r0.2__s0"
    assert (first / "result.json").is_file() and (then / "result.json").is_file()
    assert (then / "log.txt").stat().st_mtime >= (first / "result.json").stat().st_mtime
    assert starts(then) == 1


def test_waves_follow_init_from_and_a_failed_first_job_holds_its_followers(tiny):
    from collections import deque

    from ltbench.runner.display import QuietDisplay
    from ltbench.runner.local import _take_ready
    from ltbench.study.study import Study

    tmp, _ = tiny
    root = tmp / "s"
    jobs = {"b": {"init_from": str(root / "a")}, "a": {}, "c": {"init_from": str(root / "b")}, "d": {}}
    study = Study(root, {"jobs": jobs})
    assert study.prerequisites(list(jobs)) == {"b": "a", "c": "b"}
    assert study.waves(list(jobs)) == [["a", "d"], ["b"], ["c"]]
    assert study.waves(["b", "c"]) == [["b"], ["c"]]  # a is not in this run (done before): b may start
    queue, outcomes = deque(jobs), {}
    display = QuietDisplay(4)
    assert _take_ready(queue, study.prerequisites(list(jobs)), outcomes, display) == "a"
    assert _take_ready(queue, study.prerequisites(list(jobs)), outcomes, display) == "d"
    assert _take_ready(queue, study.prerequisites(list(jobs)), outcomes, display) is None  # b waits for a
    outcomes["a"] = {"job": "a", "outcome": "failed"}
    assert _take_ready(queue, study.prerequisites(list(jobs)), outcomes, display) is None
    assert outcomes["b"]["outcome"] == "interrupted" and "starts from a" in outcomes["b"]["error"]
    assert not queue and outcomes["c"]["outcome"] == "interrupted"  # c starts from b, which did not run
    loop = Study(root, {"jobs": {"a": {"init_from": str(root / "b")}, "b": {"init_from": str(root / "a")}}})
    with pytest.raises(Exception, match="each start from the other"):
        loop.waves(["a", "b"])
