"""Fault injection: kill -9 at fixed points of a tiny job, every study file damaged three ways, and a
table of bad command lines. These tests back the README's "Reliability" promises.

The tiny job (width-4 CNN, ~70 images, PGD-2, 3 epochs) runs in this process through
:func:`ltbench.runner.job.execute_job`, the function every executor's worker calls, on one thread;
the runs that are killed run the same function in a child process that sends itself SIGKILL at a
chosen file write. Every resumed or restarted job must end exactly like the uninterrupted one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ltbench import study_folder as sf
from ltbench.cli import main as cli_main
from runner_helpers import ROOT, result_core, write_tiny_fmnist

EPOCHS = 3
SPEC = {"methods": ["pgd-at"], "datasets": ["fmnist"], "ratios": [0.2], "seeds": [0], "method_params": {},
        "model_params": {"width": 4}, "model": "small-cnn", "batch_size": 32, "train_attack_steps": 2,
        "eval_attacks": ["clean", "pgd2"], "epochs": EPOCHS, "device": "cpu"}
JOB = "pgd-at__fmnist__r0.2__s0"


@pytest.fixture(scope="module")
def data(tmp_path_factory, one_thread):
    root = write_tiny_fmnist(tmp_path_factory.mktemp("faults") / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LTBENCH_DATA", str(root))
        yield root


def make_study(root: Path):
    from ltbench.study.grid import build_jobs
    from ltbench.study.study import Study

    jobs = build_jobs(json.loads(json.dumps(SPEC)))
    return Study.prepare(root, SPEC, jobs), jobs[0]


def execute(study_root: Path, retry: bool = False) -> dict:
    from ltbench.runner.job import execute_job
    from ltbench.study.study import Study

    study = Study.open(study_root)
    return execute_job(study.job_dir(JOB), study.job_config(JOB), retry_failed=retry)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run of the tiny job: (study folder, its result core)."""
    root = tmp_path_factory.mktemp("reference") / "study"
    make_study(root)
    assert execute(root)["outcome"] == "finished"
    return root, result_core(root / JOB)


# --- kill -9 at fixed points ----------------------------------------------------------------------

# The child runs the job and sends itself SIGKILL at the N-th replacement of file TARGET, just before
# it (the new file is written but not renamed: a torn write) or just after it.
KILLER = r"""
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
target, when, nth, job_dir, cfg = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
real, seen = os.replace, [0]
def replace(src, dst, *args, **kw):
    if os.path.basename(dst) == target:
        seen[0] += 1
        if seen[0] == nth:
            if when == "after":
                real(src, dst, *args, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kw)
os.replace = replace
from ltbench.config import JobConfig
from ltbench.runner.job import execute_job
execute_job(job_dir, JobConfig.from_dict(json.loads(cfg)))
sys.exit(3)
"""

SLOW = pytest.mark.slow  # each point costs a child process (~8 s on 2 cores): three run by default
KILL_POINTS = [
    # (file, before/after its rename, which write, what `ltbench status` says after the kill)
    pytest.param("lt_indices.json", "after", 1, "interrupted after 0/3 epochs", marks=SLOW),  # before epoch 1
    ("metrics.jsonl", "before", 1, "interrupted after 0/3 epochs"),  # epoch 1 checkpointed, its log line not
    ("checkpoint.pt", "before", 2, "interrupted after 1/3 epochs"),  # torn checkpoint write (a temporary file)
    pytest.param("checkpoint.pt", "after", 3, "interrupted after 2/3 epochs", marks=SLOW),  # last one, no log line
    ("result.json", "before", 1, "interrupted after 3/3 epochs"),  # evaluated, result not yet in place
]


def _point_id(p) -> str:
    t, w, n = (p.values if hasattr(p, "values") else p)[:3]
    return f"{t}-{w}-{n}"


@pytest.mark.parametrize("target,when,nth,status", KILL_POINTS, ids=[_point_id(p) for p in KILL_POINTS])
def test_kill_at_any_point_then_rerun_matches_uninterrupted_run(reference, tmp_path, target, when, nth, status):
    from ltbench.study.job_state import job_status
    from ltbench.study.study import Study

    ref_root, ref = reference
    root = tmp_path / "study"
    _, cfg = make_study(root)
    p = subprocess.run([sys.executable, "-c", KILLER, target, when, str(nth), str(root / JOB),
                        json.dumps(cfg.to_dict())], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stdout + p.stderr
    st = job_status(root / JOB, EPOCHS)
    assert (st.state, st.detail) == ("pending", f"{status}; re-run to resume")

    assert execute(root)["outcome"] == "finished"
    assert result_core(root / JOB) == ref
    assert not list((root / JOB).glob(".*.tmp"))  # no temporary file of the torn write is left
    assert Study.open(root).status(JOB).state == "done"


# --- each study file truncated, zero-filled, garbage ----------------------------------------------

def damage(path: Path, how: str) -> None:
    blob = path.read_bytes()
    if how == "truncated":
        path.write_bytes(blob[:len(blob) // 2])
    elif how == "zero-filled":
        path.write_bytes(bytes(len(blob)))
    else:  # garbage: invalid UTF-8, not JSON, not a zip
        path.write_bytes(bytes((i * 151 + 7) % 256 for i in range(max(64, len(blob)))))


@pytest.fixture(scope="module")
def unfinished(reference, tmp_path_factory):
    """The reference study with its job's result removed: trained (checkpoint at the last epoch), not
    evaluated, killed (running.json left behind)."""
    root = tmp_path_factory.mktemp("unfinished") / "study"
    shutil.copytree(reference[0], root)
    (root / JOB / "result.json").unlink()
    (root / JOB / "running.json").write_text(json.dumps({"host": "h", "pid": 1}))
    return root


FILES = ["study.json", "config.json", "lt_indices.json", "metrics.jsonl", "checkpoint.pt", "result.json",
         "failed.json", "running.json"]
HOW = ["truncated", "zero-filled", "garbage"]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", FILES)
def test_damaged_file_is_never_taken_as_valid(reference, unfinished, tmp_path, capsys, name, how):
    from ltbench.report.aggregate import build_tables, load_study
    from ltbench.study.job_state import job_status
    from ltbench.study.study import Study

    ref_root, ref = reference
    root = tmp_path / "study"
    shutil.copytree(ref_root if name == "result.json" else unfinished, root)
    job = root / JOB
    if name == "failed.json":
        (job / "failed.json").write_text(json.dumps({"error": "RuntimeError: x", "epoch": 2}))
    path = root / name if name == "study.json" else job / name
    damage(path, how)

    # status: one line for a damaged study.json, else a table; never a traceback
    code = cli_main(["status", str(root)])
    out, err = capsys.readouterr()
    if name == "study.json":
        assert code == 2 and err.startswith(f"ltbench status: error: {path} is damaged (not JSON") \
            and err.count("\n") == 1, err
    else:  # a failed job (its record damaged or not) makes status exit 1, as any failed job does
        assert code == (1 if name == "failed.json" else 0) and "Traceback" not in err, err
        state = job_status(job, EPOCHS)
        assert state.state != "done"  # nothing damaged is taken as a finished result
        if name == "result.json":
            assert state.detail.startswith("result.json is damaged")
    # the report reads the study as it stands
    build_tables([load_study(root)])

    # the next run repairs or starts over, and ends exactly like the uninterrupted run
    Study.prepare(root, SPEC, [Study.open(ref_root).job_config(JOB)])
    outcome = execute(root)
    if name == "failed.json":
        assert outcome["outcome"] == "failed-before" and outcome["error"] == "(unreadable failed.json)"
        outcome = execute(root, retry=True)
    assert outcome["outcome"] == "finished", outcome
    assert result_core(job) == ref
    if name in ("study.json", "result.json", "lt_indices.json", "checkpoint.pt"):  # moved aside, kept
        assert len(list(path.parent.glob(f"{name}.corrupt-*"))) == 1


def test_run_redoes_a_job_whose_result_is_damaged(reference, tmp_path, capsys):
    """Through `ltbench run` itself (a worker process): a truncated result.json is not "done"."""
    root = tmp_path / "study"
    shutil.copytree(reference[0], root)
    damage(root / JOB / "result.json", "truncated")
    args = ["run", "--out", str(root), "--methods", "pgd-at", "--datasets", "fmnist", "--ratios", "0.2",
            "--seeds", "0", "--model", "small-cnn", "--set", "model.width=4", "--batch-size", "32",
            "--train-attack-steps", "2", "--attacks", "clean", "pgd2", "--epochs", str(EPOCHS),
            "--device", "cpu", "--workers", "1", "--quiet"]
    assert cli_main(args) == 0
    assert json.loads((root / JOB / "result.json").read_text())["metrics"].keys() == {"clean", "pgd2"}
    assert len(list((root / JOB).glob("result.json.corrupt-*"))) == 1
    assert cli_main(["status", str(root)]) == 0
    assert f"{JOB}  done" in capsys.readouterr().out


def test_damaged_selected_epoch_weights_make_the_job_start_over(data, tmp_path):
    """best.pt (``--select-best``) is a resume file too: damaged, the job starts over, same numbers."""
    from ltbench.study.grid import build_jobs
    from ltbench.study.study import Study

    spec = {**SPEC, "select_best": "pgd2", "select_n_per_class": 2}
    ref, root = tmp_path / "ref", tmp_path / "study"
    Study.prepare(ref, spec, build_jobs(json.loads(json.dumps(spec))))
    assert execute(ref)["outcome"] == "finished"
    shutil.copytree(ref, root)
    (root / JOB / "result.json").unlink()
    damage(root / JOB / "best.pt", "garbage")
    assert execute(root)["outcome"] == "finished"
    assert result_core(root / JOB) == result_core(ref / JOB)
    assert json.loads((root / JOB / "result.json").read_text())["selection"]["epoch"] is not None
    assert len(list((root / JOB).glob("best.pt.corrupt-*"))) == 1


def test_torn_study_json_write_leaves_the_old_file_and_no_temporary(data, tmp_path):
    root = tmp_path / "study"
    make_study(root)
    before = (root / "study.json").read_bytes()
    (root / ".study.json.k1ll3d.tmp").write_text('{"half": ')  # a write killed before its rename
    (root / ".summary.csv.abc.tmp").write_text("another writer's")  # not the runner's: left alone
    assert json.loads(before)["jobs"]
    make_study(root)
    assert not (root / ".study.json.k1ll3d.tmp").exists() and (root / ".summary.csv.abc.tmp").exists()
    assert json.loads((root / "study.json").read_bytes())["jobs"] == json.loads(before)["jobs"]


def test_damaged_autoattack_state_is_ignored(one_thread, tmp_path):
    import torch

    from ltbench.engine.evaluate import predict_resumable
    from ltbench.models import build_model

    model = build_model("small-cnn", 10, 1, (0.5,), (0.5,), width=2).eval()
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(6)
    state = tmp_path / "aa_state.json"
    want, _ = predict_resumable(model, x, y, None, torch.device("cpu"), 2, None, {"k": 1})
    for blob in (b'{"key": {"k": 1}, "pred": [1, 2', bytes(40), b"\xff\xfe garbage",
                 b'{"key": {"k": 1}, "pred": ["a", -1, 99, 3, 4, 5, 6]}', b"[1, 2]"):
        state.write_bytes(blob)
        got, _ = predict_resumable(model, x, y, None, torch.device("cpu"), 2, state, {"k": 1})
        assert torch.equal(got, want)
        assert json.loads(state.read_text())["pred"] == want.tolist()


def test_checkpoint_that_does_not_fit_the_model_is_one_line_naming_it(reference, tmp_path):
    """A readable checkpoint of another model is not "damaged" but wrong: one line naming the file."""
    import torch

    from ltbench.io import save_torch

    root = tmp_path / "study"
    shutil.copytree(reference[0], root)
    job = root / JOB
    (job / "result.json").unlink()
    state = torch.load(job / "checkpoint.pt", weights_only=True)
    state["model"] = {"w": torch.zeros(3)}
    save_torch(job / "checkpoint.pt", state)
    outcome = execute(root)
    assert outcome["outcome"] == "failed"
    assert outcome["error"].startswith(f"LtbenchError: {job / 'checkpoint.pt'} does not fit this job")
    assert "\n" not in outcome["error"]


# --- bad command lines ------------------------------------------------------------------------------

TINY = ["--datasets", "fmnist", "--ratios", "0.2", "--model", "small-cnn", "--epochs", "1", "--quiet"]
E = "ltbench run: error: "
BAD_LINES = [
    (["--set", "model.width=abc"], E + "model.width must be a positive integer, got 'abc'"),
    (["--set", "model.width=0"], E + "model.width must be a positive integer, got 0"),
    (["--set", "model.width=-4"], E + "model.width must be a positive integer, got -4"),
    (["--set", "model.width=2.5"], E + "model.width must be a positive integer, got 2.5"),
    (["--set", "model.depth=3"], E + "model 'small-cnn' has no parameter 'depth'; its parameters: width"),
    (["--model", "wrn-34-10", "--set", "model.depth=35"],
     E + "model 'wrn-34-10' cannot be built with depth=35: AssertionError: WideResNet depth must be 6n + 4"),
    (["--lr", "-1"], E + "lr must be a finite number > 0, got -1.0"),
    (["--lr", "nan"], E + "lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], E + "lr must be a finite number > 0, got inf"),
    (["--weight-decay", "-0.0005"], E + "weight_decay must be a finite number ≥ 0, got -0.0005"),
    (["--eps", "nan"], E + "eps must be a finite number ≥ 0, got nan"),
    (["--eps", "-0.1"], E + "eps must be a finite number ≥ 0, got -0.1"),
    (["--step", "-0.01"], E + "step must be a finite number > 0, got -0.01"),
    (["--step", "0"], E + "step must be a finite number > 0, got 0.0"),
    (["--train-attack-steps", "0"], E + "train_attack_steps must be at least 1, got 0"),
    (["--train-attack-steps", "-2"], E + "train_attack_steps must be at least 1, got -2"),
    (["--methods", "cb-at", "--set", "cb-at.beta=1.5"], E + "cb-at: beta must be in [0, 1), got 1.5"),
    (["--methods", "cb-at", "--set", "cb-at.beta=nan"], E + "cb-at.beta must be a finite number, got nan"),
    (["--methods", "robal", "--set", "robal.scale=0"], E + "robal: scale must be positive, got 0.0"),
    (["--attacks", "clean", "pgd3@1e999"], E + "attack 'pgd3@1e999': the budget must be a finite number ≥ 0"),
    (["--set", ".x=1"], E + "--set expects METHOD.KEY=VALUE or model.KEY=VALUE, got '.x=1'"),
    (["--seeds", "-1"], E + "seed must be an integer in [0, 2^63 − 1), got -1"),
    (["--methods", "no/such"], E + "unknown method 'no/such'; known methods: "),
]


@pytest.mark.parametrize("extra,first_line", BAD_LINES, ids=[" ".join(a) for a, _ in BAD_LINES])
def test_bad_command_line_is_exit_2_one_line_nothing_written(tmp_path, capsys, extra, first_line):
    out = tmp_path / "study"
    assert cli_main(["run", "--out", str(out), *TINY, *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(first_line), err
    assert not out.exists()


def test_overlong_output_folder_is_exit_2(tmp_path, capsys):
    out = tmp_path / ("x" * 300)
    assert cli_main(["run", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{E}output folder name 'xxxx") and "is 300 bytes long" in err
    assert len(err.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


@pytest.mark.parametrize("content", ["null", "[1, 2]", '{"jobs": [1]}', '"text"'])
def test_study_json_that_is_not_a_study_is_one_line(tmp_path, capsys, content):
    (tmp_path / "study.json").write_text(content)
    assert cli_main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ltbench status: error: {tmp_path / 'study.json'} is damaged") and err.count("\n") == 1


def test_eval_of_a_damaged_job_folder_is_one_line(reference, tmp_path, capsys):
    root = tmp_path / "study"
    shutil.copytree(reference[0], root)
    job = root / JOB
    assert cli_main(["eval", str(job), "--eps", "nan", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("ltbench eval: error: --eps and --step must be finite numbers ≥ 0")
    assert cli_main(["eval", str(job), "--attacks", "pgd2@1e999", "--quiet"]) == 2
    assert capsys.readouterr().err == "ltbench eval: error: attack 'pgd2@1e999': the budget must be a finite number ≥ 0\n"
    (job / "result.json").write_text('{"metrics": ')
    assert cli_main(["eval", str(job), "--attacks", "clean", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"ltbench eval: error: {job / 'result.json'} is damaged")
    (job / "config.json").write_text("[1, 2]")
    assert cli_main(["eval", str(job), "--attacks", "clean", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"ltbench eval: error: {job / 'config.json'} is damaged")


# --- hostile names ---------------------------------------------------------------------------------

TAG_PLUGIN = '''
from dataclasses import dataclass

from ltbench.method import Method
from ltbench.registry import register_method


@register_method("tag-at-{uid}")
class TagAT(Method):
    """PGD-AT with a free-text tag."""

    @dataclass
    class Config:
        tag: str = "x"
'''

BAD_NAME_PLUGIN = '''
from ltbench.method import Method
from ltbench.registry import register_method


@register_method("evil/{uid}")
class Evil(Method):
    """A method registered under a name with a slash."""
'''


@pytest.fixture
def isolated_registry():
    from ltbench import plugins, registry

    plugins.load_all()
    items, errors, dirs = dict(registry.METHODS._items), dict(plugins.PLUGIN_ERRORS), set(plugins._loaded_dirs)
    conflicts = dict(registry.METHODS._conflicts)
    yield plugins
    registry.METHODS._items.clear()
    registry.METHODS._items.update(items)
    registry.METHODS._conflicts.clear()
    registry.METHODS._conflicts.update(conflicts)
    plugins.PLUGIN_ERRORS.clear()
    plugins.PLUGIN_ERRORS.update(errors)
    plugins._loaded_dirs.clear()
    plugins._loaded_dirs.update(dirs)


def plugin_folder(tmp_path: Path, *files: tuple[str, str]) -> tuple[Path, str]:
    """A ``--methods-dir`` folder with each (file stem, template) written, a fresh ``{uid}`` filled in
    (registered names stay unique across tests); returns (folder, uid)."""
    import uuid

    uid = uuid.uuid4().hex[:8]
    folder = tmp_path / "plugins"
    folder.mkdir()
    for stem, template in files:
        (folder / f"{stem}.py").write_text(template.format(uid=uid))
    return folder, uid


def test_job_folders_stay_inside_the_study(isolated_registry, tmp_path):
    from ltbench.study.grid import build_jobs

    plugins, uid = plugin_folder(tmp_path, ("tag", TAG_PLUGIN))
    spec = {"methods": [f"tag-at-{uid} --tag=../../../escaped", f"tag-at-{uid} --tag={'y' * 300}",
                        f"tag-at-{uid} --tag={'y' * 299}z"],
            "datasets": ["fmnist"], "ratios": [0.1], "seeds": [0], "method_params": {}, "model_params": {}}
    names = [j.job_name for j in build_jobs(spec, [str(plugins)])]
    assert names[0] == f"tag-at-{uid}+tag=..-..-..-escaped__fmnist__r0.1__s0"
    study = tmp_path / "study"
    for n in names:
        assert "/" not in n and len(n.encode()) <= 255
        assert (study / n).resolve().parent == study.resolve()
    assert len(set(names)) == 3  # cut to length, still distinct
    # built-in labels are unchanged
    spec["methods"] = ["reat --no-tail", "reat --tail-weight=0.5"]
    assert [j.job_name for j in build_jobs(spec)] == ["reat+no-tail__fmnist__r0.1__s0",
                                                      "reat+tail-weight=0.5__fmnist__r0.1__s0"]


def test_a_method_registered_under_a_bad_name_fails_to_load(isolated_registry, tmp_path):
    plugins, uid = plugin_folder(tmp_path, ("evil", BAD_NAME_PLUGIN))
    with pytest.warns(UserWarning, match="cannot register method 'evil/"):
        isolated_registry.load_methods([plugins])
    assert f"evil/{uid}" not in isolated_registry.METHODS
    assert any("cannot register method" in e for e in isolated_registry.PLUGIN_ERRORS.values())
    for bad in ("", "a/b", "a b", "../x", ".hidden", "a+b", "all", "x" * 65):
        with pytest.raises(Exception, match="cannot register"):
            isolated_registry.Registry("method").register(bad)


HALF_PLUGIN = '''
from ltbench.method import Method
from ltbench.registry import register_method


@register_method("half-{uid}")
class Half(Method):
    """Registered, then its file fails to load."""


raise ImportError("a module this plugin needs is not installed")
'''


def test_two_files_registering_one_name_is_an_error_naming_both(isolated_registry, tmp_path):
    from ltbench.errors import LtbenchError

    plugins, uid = plugin_folder(tmp_path, ("a_first", TAG_PLUGIN), ("b_second", TAG_PLUGIN))  # loaded in this order
    with pytest.warns(UserWarning, match="registered twice"):
        isolated_registry.load_methods([plugins])
    both = f"method 'tag-at-{uid}' is registered twice: in {plugins / 'a_first.py'} and in {plugins / 'b_second.py'}"
    assert isolated_registry.PLUGIN_ERRORS[str(plugins / "b_second.py")] == f"LtbenchError: {both}"
    assert f"tag-at-{uid}" not in isolated_registry.METHODS  # no first one wins
    with pytest.raises(LtbenchError, match=re.escape(both)):
        isolated_registry.METHODS.get(f"tag-at-{uid}")


def test_a_plugin_file_that_fails_to_load_registers_nothing(isolated_registry, tmp_path):
    plugins, uid = plugin_folder(tmp_path, ("half", HALF_PLUGIN))
    with pytest.warns(UserWarning, match="failed to import: ImportError"):
        isolated_registry.load_methods([plugins])
    assert f"half-{uid}" not in isolated_registry.METHODS


def test_result_records_the_file_of_each_plugin_method(data, isolated_registry, tmp_path):
    from ltbench.study.grid import build_jobs
    from ltbench.runner.job import execute_job
    from ltbench.study.study import Study

    plugins, uid = plugin_folder(tmp_path, ("tag", TAG_PLUGIN))
    spec = {**SPEC, "methods": [f"tag-at-{uid} +awp"], "epochs": 1}
    jobs = build_jobs(json.loads(json.dumps(spec)), [str(plugins)])
    Study.prepare(tmp_path / "study", spec, jobs)
    assert execute_job(tmp_path / "study" / jobs[0].job_name, jobs[0])["outcome"] == "finished"
    result = json.loads((tmp_path / "study" / jobs[0].job_name / "result.json").read_text())
    assert result["plugin_files"] == {f"tag-at-{uid}": str(plugins / "tag.py")}  # awp is ltbench's own


# --- data files are parsed, never executed -----------------------------------------------------------

def test_cifar_pickle_that_calls_a_function_is_refused_without_running(tmp_path, monkeypatch):
    import pickle

    from ltbench.data import get_dataset, load_raw
    from ltbench.errors import LtbenchError
    from test_data import make_cifar10

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        pickle.dumps({b"data": Exploit(), b"labels": [0]}))
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    with pytest.raises(LtbenchError, match=r"malformed CIFAR file .*data_batch_1: cannot unpickle .*"
                                           r"forbidden global posix\.system"):
        load_raw(get_dataset("cifar10"))
    assert not marker.exists()


def test_cifar_pickles_as_the_release_writes_them_are_read():
    """Python 2's protocol 2 (the published files: numpy.core, byte strings), and this Python's
    protocols 2–5 (numpy._core, _codecs.encode, _frombuffer); object arrays are refused."""
    import pickle

    import numpy as np

    from ltbench.data.cifar import safe_unpickle

    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    raw = data.tobytes()

    def s(b: bytes) -> bytes:  # SHORT_BINSTRING: a Python 2 str
        return b"U" + bytes([len(b)]) + b

    py2 = (b"\x80\x02}q\x00(" + s(b"data") + b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02"
           b"K\x00\x85" + s(b"b") + b"\x87Rq\x03(K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\nq\x04" + s(b"u1")
           + b"K\x00K\x01\x87Rq\x05(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
           + len(raw).to_bytes(4, "little") + raw + b"tb" + s(b"labels") + b"]q\x06(K\x01K\x02e"
           + s(b"batch_label") + s(b"training batch 1 of 5") + b"u.")
    for blob in [py2] + [pickle.dumps({b"data": data, b"labels": [1, 2]}, protocol=p) for p in (2, 3, 4, 5)]:
        d = safe_unpickle(blob)
        assert d[b"labels"] == [1, 2] and d[b"data"].dtype == np.uint8
        assert np.array_equal(d[b"data"], data)
    for bad in (np.array([1, 2], dtype=np.int64), np.array([b"x", None], dtype=object)):
        with pytest.raises(pickle.UnpicklingError):
            safe_unpickle(pickle.dumps({b"data": bad}, protocol=2))


# --- a full disk -----------------------------------------------------------------------------------

def _full_disk(*args, **kw):
    import errno

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_writing_study_json_is_one_line_and_keeps_the_old_file(data, tmp_path, monkeypatch):
    import ltbench.io

    out = tmp_path / "study"
    make_study(out)
    before = (out / "study.json").read_bytes()
    monkeypatch.setattr(ltbench.io.os, "fsync", _full_disk)
    from ltbench.errors import LtbenchError

    with pytest.raises(LtbenchError, match=r"cannot write .*study.json: No space left on device"):
        make_study(out)
    assert (out / "study.json").read_bytes() == before
    assert not list(out.glob(".*.tmp"))


def test_full_disk_in_the_failure_handler_still_ends_the_job_clearly(data, tmp_path, monkeypatch):
    import ltbench.engine.train
    import ltbench.runner.job as J

    root = tmp_path / "study"
    make_study(root)
    monkeypatch.setattr(ltbench.engine.train, "run_job", _full_disk)
    monkeypatch.setattr(J, "write_text", _full_disk)
    monkeypatch.setattr(J, "write_json", lambda path, obj: (_full_disk() if Path(path).name == sf.FAILED
                                                              else Path(path).write_text(json.dumps(obj))))
    outcome = execute(root)
    assert outcome["outcome"] == "failed"
    assert outcome["error"].startswith("OSError: [Errno 28] No space left on device (and the failure record "
                                       "could not be written: [Errno 28]")
    # and before the job starts (running.json): the same, no exception out of the worker
    monkeypatch.setattr(J, "write_json", _full_disk)
    outcome = execute(root)
    assert outcome == {"job": JOB, "outcome": "failed", "error": "OSError: [Errno 28] No space left on device",
                       "epoch": None}


def test_eval_with_out_keeps_its_resume_state_next_to_the_result(reference, tmp_path, monkeypatch, capsys):
    import ltbench.engine.evaluate

    seen = {}
    real = ltbench.engine.evaluate.run_evaluation

    def spy(*args, **kw):
        seen["state_dir"] = kw["state_dir"]
        return real(*args, **kw)

    monkeypatch.setattr(ltbench.engine.evaluate, "run_evaluation", spy)
    out = tmp_path / "elsewhere" / "eval.json"
    job = reference[0] / JOB
    assert cli_main(["eval", str(job), "--attacks", "clean", "--quiet", "--no-checks", "--out", str(out)]) == 0
    assert seen["state_dir"] == out.parent and out.is_file()


# --- eval never rewrites another job's record, nor an unfinished or running job's -----------------

def copy_reference(reference, tmp_path: Path) -> Path:
    root = tmp_path / "study"
    shutil.copytree(reference[0], root)
    return root


EVAL = ["--attacks", "clean", "--no-checks", "--quiet"]


def test_eval_refuses_a_running_or_unfinished_job_and_never_makes_it_done(reference, tmp_path, capsys):
    root = copy_reference(reference, tmp_path)
    job = root / JOB
    before = (job / "result.json").read_bytes()
    with sf.JobLock(job) as lock:  # a runner holds the job
        assert lock.acquire()
        assert cli_main(["eval", str(job), *EVAL]) == 2
        assert cli_main(["eval", str(job), *EVAL, "--out", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.count(f"{job} is running (a runner holds its lock)") == 2, err
    assert (job / "result.json").read_bytes() == before and not (tmp_path / "e.json").exists()

    (job / "result.json").unlink()  # trained, not evaluated: unfinished
    (job / "running.json").write_text(json.dumps({"host": "h", "pid": 1}))
    assert cli_main(["eval", str(job), *EVAL]) == 2
    assert capsys.readouterr().err.startswith(f"ltbench eval: error: {job} is not finished (no result.json)")
    assert not (job / "result.json").exists()
    from ltbench.study.job_state import job_status

    assert job_status(job, EPOCHS).state == "pending"
    # its last checkpoint may be evaluated into a file of the user's: the job stays unfinished
    assert cli_main(["eval", str(job), *EVAL, "--out", str(tmp_path / "e.json")]) == 0
    assert (tmp_path / "e.json").is_file() and not (job / "result.json").exists()


def test_no_runner_starts_a_job_while_eval_writes_into_it(reference, tmp_path, monkeypatch):
    """eval holds the job's lock while it evaluates: a runner started meanwhile finds the job busy."""
    import ltbench.engine.evaluate

    root = copy_reference(reference, tmp_path)
    (root / JOB / "result.json").rename(root / "kept.json")
    seen = {}
    real = ltbench.engine.evaluate.run_evaluation

    def runner_meanwhile(*args, **kw):
        seen["outcome"] = execute(root)["outcome"]
        return real(*args, **kw)

    (root / "kept.json").rename(root / JOB / "result.json")
    monkeypatch.setattr(ltbench.engine.evaluate, "run_evaluation", runner_meanwhile)
    assert cli_main(["eval", str(root / JOB), *EVAL]) == 0
    assert seen["outcome"] == "busy"


def test_eval_out_never_names_another_jobs_record(reference, tmp_path, capsys):
    root = copy_reference(reference, tmp_path)
    job, other = root / JOB, root / JOB.replace("__s0", "__s1")
    shutil.copytree(job, other)
    record = (other / "result.json").read_bytes()
    E = "ltbench eval: error: --out "
    for out, says in ((other, "is a job's result.json"), (other / "result.json", "is a job's result.json"),
                      (other / "sub" / "e.json", "is inside another job's folder"),
                      (job / "result.json", "is a job's result.json, which only its job writes; leave out --out")):
        assert cli_main(["eval", str(job), *EVAL, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{E}{out} {says}") and err.count("\n") == 1, err
    assert (other / "result.json").read_bytes() == record and not (other / "sub").exists()
    assert cli_main(["eval", "--model-factory", "m:f", "--out", str(other)]) == 2
    assert "is a job's result.json" in capsys.readouterr().err
    assert cli_main(["eval", str(job), *EVAL, "--out", str(job / "clean-only.json")]) == 0  # beside the job
    assert (job / "clean-only.json").is_file()


# --- a job folder is the job its name says ----------------------------------------------------------

def test_renamed_job_folder_is_inconsistent_never_a_seed(reference, tmp_path, capsys):
    from ltbench.report.aggregate import build_tables, load_study

    root = copy_reference(reference, tmp_path)
    renamed = root / JOB.replace("__s0", "__s7")
    shutil.copytree(root / JOB, renamed)  # a copy renamed by hand: seed 0's model under seed 7's name
    assert cli_main(["status", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{renamed.name}  failed   inconsistent: the folder is named {renamed.name} but its configuration " \
           f"is job {JOB}" in out, out
    tables = build_tables([load_study(root)])
    assert list(tables.jobs["job"].unique()) == [JOB]
    assert tables.summary["seeds"].tolist() == [1, 1]
    args = ["run", "--out", str(root), "--methods", "pgd-at", "--seeds", "0", *TINY_RUN]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ltbench run: error: {renamed} is inconsistent: ") and err.count("\n") == 1, err
    assert cli_main(["eval", str(renamed), *EVAL]) == 2
    assert capsys.readouterr().err.startswith(f"ltbench eval: error: {renamed} is inconsistent")


def test_config_edited_to_another_method_is_inconsistent(reference, tmp_path, capsys):
    from ltbench.report.aggregate import build_tables, load_study

    root = copy_reference(reference, tmp_path)
    job = root / JOB
    result = (job / "result.json").read_bytes()
    config = json.loads((job / "config.json").read_text())
    (job / "config.json").write_text(json.dumps({**config, "method": "trades"}))
    assert cli_main(["status", str(root)]) == 1
    assert f"{JOB}  failed   inconsistent: " in capsys.readouterr().out
    assert cli_main(["eval", str(job), *EVAL]) == 2
    assert "is inconsistent" in capsys.readouterr().err
    assert (job / "result.json").read_bytes() == result  # the method label in its result is kept
    tables = build_tables([load_study(root)])
    assert tables.jobs.empty and "trades" not in set(tables.summary["method"])


# --- a study never averages jobs of different settings ----------------------------------------------

TINY_RUN = ["--datasets", "fmnist", "--ratios", "0.2", "--model", "small-cnn", "--set", "model.width=4",
            "--batch-size", "32", "--train-attack-steps", "2", "--attacks", "clean", "pgd2", "--device", "cpu",
            "--workers", "1", "--quiet", "--epochs", str(EPOCHS)]


def test_run_refuses_a_seed_with_other_settings(reference, tmp_path, capsys):
    root = copy_reference(reference, tmp_path)
    study_json = (root / "study.json").read_bytes()
    args = ["run", "--out", str(root), "--methods", "pgd-at", "--seeds", "1", *TINY_RUN, "--epochs", "2"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err == (f"ltbench run: error: job pgd-at__fmnist__r0.2__s1 would be averaged with {JOB} in {root}, "
                   f"but their settings differ (epochs 3 → 2); use another --out\n"), err
    assert (root / "study.json").read_bytes() == study_json and not (root / "pgd-at__fmnist__r0.2__s1").exists()
    # another method may have its own settings (a preset's per-method epochs): nothing averages them
    from ltbench.study.grid import build_jobs
    from ltbench.study.study import Study

    trades = {**SPEC, "methods": ["trades"], "epochs": 2}
    Study.prepare(root, trades, build_jobs(trades))
    data = json.loads((root / "study.json").read_text())
    assert data["spec"] == trades and data["earlier_specs"] == [SPEC]  # the first command's grid is kept


def test_report_keeps_jobs_of_different_settings_apart(reference, tmp_path):
    """A folder assembled by hand (or by an older ltbench): seed 1 trained 2 epochs, seed 0 three."""
    from ltbench.report.aggregate import build_tables, load_study

    root = copy_reference(reference, tmp_path)
    other = root / JOB.replace("__s0", "__s1")
    shutil.copytree(root / JOB, other)
    for name in ("config.json", "result.json"):
        record = json.loads((other / name).read_text())
        config = record.get("config", record)
        config.update(seed=1, epochs=2)
        (other / name).write_text(json.dumps(record))
    tables = build_tables([load_study(root)])
    summary = tables.summary[tables.summary["attack"] == "clean"]
    assert sorted(summary[["method", "seeds"]].values.tolist()) == [["pgd-at [epochs=2]", 1], ["pgd-at [epochs=3]", 1]]
    # the same seed-1 job with seed 0's settings is averaged with it as before
    for name in ("config.json", "result.json"):
        record = json.loads((other / name).read_text())
        record.get("config", record)["epochs"] = EPOCHS
        (other / name).write_text(json.dumps(record))
    summary = build_tables([load_study(root)]).summary
    assert summary[["method", "seeds"]].values.tolist() == [["pgd-at", 2], ["pgd-at", 2]]


# --- models and methods from outside -------------------------------------------------------------

FACTORY = '''
import torch
from torch import nn


class Tiny(nn.Sequential):
    def __init__(self, outputs):
        super().__init__(nn.Flatten(), nn.Linear(784, outputs))


def seven():
    return Tiny(7)


def ten():
    return Tiny(10)


def broken():
    raise RuntimeError("no such checkpoint on this machine")


class NaNOut(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10] * float("nan")


def nan():
    return NaNOut()
'''


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """A model-factory module on sys.path: its name (unique per test)."""
    import uuid

    name = f"factory_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_model_with_other_outputs_than_classes_is_one_line_before_any_attack(data, factory, tmp_path, capsys,
                                                                              monkeypatch):
    import ltbench
    import ltbench.engine.evaluate
    from ltbench.errors import LtbenchError

    def no_attack(*args, **kw):
        raise AssertionError("an attack ran")

    monkeypatch.setattr(ltbench.engine.evaluate, "build_attack", no_attack)
    model = ltbench.model_from_factory(f"{factory}:seven")
    with pytest.raises(LtbenchError, match=r"^the model has 7 outputs but the dataset has 10 classes"):
        ltbench.evaluate(model, "fmnist", ["clean", "pgd2"])
    assert cli_main(["eval", "--model-factory", f"{factory}:seven", "--out", str(tmp_path / "e.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ltbench eval: error: the model has 7 outputs but the dataset has 10 classes") \
        and err.count("\n") == 1, err
    assert not (tmp_path / "e.json").exists()


def test_factory_that_raises_weights_of_another_shape_or_code_are_one_line(data, factory, tmp_path, capsys):
    import importlib

    import torch

    def eval_(*extra):
        code = cli_main(["eval", "--out", str(tmp_path / "e.json"), "--quiet", *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "weights_only=False" not in err, err
        return err

    assert eval_("--model-factory", f"{factory}:broken") == (
        f"ltbench eval: error: model factory '{factory}:broken' raised RuntimeError: no such checkpoint on this "
        f"machine\n")
    mod = importlib.import_module(factory)
    torch.save(mod.Tiny(5).state_dict(), tmp_path / "five.pt")
    assert eval_("--model-factory", f"{factory}:ten", "--weights", str(tmp_path / "five.pt")) == (
        f"ltbench eval: error: {tmp_path / 'five.pt'} does not fit the model from {factory}:ten: 1.weight has "
        f"shape (5, 784) there, (10, 784) in the model\n")
    torch.save(mod.Tiny(10), tmp_path / "whole.pt")  # the module pickled, not its state dict
    assert eval_("--model-factory", f"{factory}:ten", "--weights", str(tmp_path / "whole.pt")) == (
        f"ltbench eval: error: {tmp_path / 'whole.pt'} is not a weights-only file: it holds a pickled "
        f"{factory}.Tiny, whose unpickling would run code; save the model's state_dict() instead\n")
    assert not (tmp_path / "e.json").exists()


def test_non_finite_outputs_are_a_warning_in_the_result_and_the_report(data, factory, reference, tmp_path):
    import torch

    import ltbench
    from ltbench.report.aggregate import load_study
    from ltbench.report.html import warning_rows

    ev = ltbench.evaluate(ltbench.model_from_factory(f"{factory}:nan"), "fmnist", ["clean"], checks=False)
    assert ev.warnings == ["the model's outputs are NaN or infinite on 60 of 60 test images: the accuracies on "
                           "them are not measurements"]
    # a job whose weights went NaN, evaluated again into its result: the report shows the warning
    root = copy_reference(reference, tmp_path)
    state = torch.load(root / JOB / "checkpoint.pt", weights_only=True)
    for value in state["model"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(state, root / JOB / "checkpoint.pt")
    assert cli_main(["eval", str(root / JOB), *EVAL]) == 0
    nan_warning = "the model's outputs are NaN or infinite on 60 of 60 test images"
    assert any(w.startswith(nan_warning) for w in json.loads((root / JOB / "result.json").read_text())["warnings"])
    assert any(w["text"].startswith(nan_warning) for w in warning_rows([load_study(root)]))


ODD_METHODS = '''
from dataclasses import dataclass

import torch

from ltbench.method import Method
from ltbench.registry import register_method


@register_method("narrow-at-{uid}")
class NarrowAT(Method):
    """Returns the logits of the first five classes only."""

    def train_loss(self, model, x, x_adv, y, ctx):
        loss, logits = super().train_loss(model, x, x_adv, y, ctx)
        return loss, logits[:, :5]


class Counter:
    n = 0


@register_method("objstate-at-{uid}")
class ObjStateAT(Method):
    """Keeps an object in its state: a checkpoint that a weights-only load refuses."""

    def state_dict(self):
        return {{"steps": torch.zeros(1), "history": [1, 2, Counter()]}}
'''


@pytest.mark.parametrize("which,error", [
    ("narrow-at", "LtbenchError: narrow-at-{uid}.train_loss returned logits of shape (32, 5); expected (32, 10)"),
    ("objstate-at", "LtbenchError: objstate-at-{uid}.state_dict()['history'][2] is a ltbench_plugin_"),
])
def test_a_method_that_breaks_the_contract_fails_with_one_line(data, isolated_registry, tmp_path, which, error):
    from ltbench.study.grid import build_jobs
    from ltbench.study.study import Study

    plugins, uid = plugin_folder(tmp_path, ("odd", ODD_METHODS))
    spec = {**SPEC, "methods": [f"{which}-{uid}"]}
    jobs = build_jobs(json.loads(json.dumps(spec)), [str(plugins)])
    root = tmp_path / "study"
    Study.prepare(root, spec, jobs)
    from ltbench.runner.job import execute_job

    outcome = execute_job(root / jobs[0].job_name, jobs[0])
    assert outcome["outcome"] == "failed" and outcome["epoch"] == 1, outcome
    assert outcome["error"].startswith(error.format(uid=uid)) and "\n" not in outcome["error"], outcome
    assert not (root / jobs[0].job_name / "checkpoint.pt").exists()


# --- the Python API ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    ({"epoch": 2}, TypeError, r"run\(\) got an unexpected keyword argument 'epoch'"),
    ({"ratios": 0.1, "help": True}, TypeError, "unexpected keyword argument 'help'"),
    ({"epochs": "two"}, TypeError, r"run\(\): epochs must be an integer, got 'two'"),
    ({"epochs": [1, 2]}, TypeError, r"run\(\): epochs takes one value, got a list"),
    ({"batch_size": 2.5}, TypeError, r"run\(\): batch_size must be an integer, got 2.5"),
    ({"lr": True}, TypeError, r"run\(\): lr must be a number, got True"),
    ({"executor": "ssh"}, ValueError, r"run\(\): executor must be one of 'local', 'slurm', got 'ssh'"),
    ({"retry_failed": "yes"}, TypeError, r"run\(\): retry_failed is a flag: give True or False, got 'yes'"),
    ({"seeds": ["a"]}, TypeError, r"run\(\): seeds must be an integer or a list of them, got 'a'"),
])
def test_api_run_with_a_bad_argument_raises_naming_it(tmp_path, capsys, kwargs, exc, match):
    import ltbench

    with pytest.raises(exc, match=match):
        ltbench.run(out=tmp_path / "study", **kwargs)
    assert capsys.readouterr() == ("", "") and not (tmp_path / "study").exists()


# --- --init-from ------------------------------------------------------------------------------------

def test_init_from_a_job_that_cannot_start_this_one_is_exit_2_before_any_folder(reference, unfinished, tmp_path,
                                                                                  capsys):
    damaged = copy_reference(reference, tmp_path) / JOB
    damage(damaged / "checkpoint.pt", "garbage")
    E = "ltbench run: error: init_from "
    for source, width, says in (
            (tmp_path / "nowhere", 4, "no such job folder"),
            (unfinished / JOB, 4, "no result.json there (not a finished job)"),
            (reference[0] / JOB, 8, "its model_params is {'width': 4}, this job's {'width': 8}"),
            (damaged, 4, "its checkpoint.pt is damaged (cannot load ")):
        out = tmp_path / "fine"
        args = ["run", "--out", str(out), "--methods", "trades", "--seeds", "0", *TINY_RUN, "--set",
                f"model.width={width}", "--init-from", str(source)]
        assert cli_main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{E}{source}: {says}") and err.count("\n") == 1, err
        assert not out.exists()
    # a job already done from a source that has gone since is not checked again
    source = copy_reference(reference, tmp_path / "source") / JOB
    args = ["run", "--out", str(tmp_path / "fine"), "--methods", "trades", "--seeds", "0", *TINY_RUN,
            "--init-from", str(source)]
    assert cli_main(args) == 0
    shutil.rmtree(source)
    assert cli_main(args) == 0


def test_quiet_never_hides_a_failure(data, isolated_registry, tmp_path, capsys):
    plugins, uid = plugin_folder(tmp_path, ("odd", ODD_METHODS))
    args = ["run", "--out", str(tmp_path / "study"), "--methods", f"narrow-at-{uid}", "--seeds", "0", *TINY_RUN,
            "--methods-dir", str(plugins)]
    assert cli_main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == (f"narrow-at-{uid}__fmnist__r0.2__s0: FAILED: LtbenchError: narrow-at-{uid}.train_loss "
                                 f"returned logits of shape (32, 5); expected (32, 10): one row of 10 class logits "
                                 f"per image of the batch (epoch 1)\n"), err


# --- a read-only or undeletable study folder ---------------------------------------------------------

@pytest.fixture
def read_only(monkeypatch):
    """``read_only(root)``: from now on every write, creation, rename or removal under ``root`` fails
    with EROFS, as on a read-only mount (tests run as root, for whom chmod does not forbid writes)."""
    import builtins
    import errno

    def guard(root: Path):
        root = str(Path(root).resolve())

        def refuse(path) -> None:
            if os.path.abspath(os.fsdecode(path)).startswith(root):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

        def wrap(name, writes=lambda *a, **kw: True):
            real = getattr(os, name)

            def fake(path, *args, **kw):
                if not isinstance(path, int) and writes(*args, **kw):
                    refuse(path)
                return real(path, *args, **kw)

            monkeypatch.setattr(os, name, fake)

        for name in ("mkdir", "replace", "rename", "unlink", "remove", "rmdir"):
            wrap(name)
        wrap("open", lambda flags, *a, **kw: flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        real_open = builtins.open

        def fake_open(file, mode="r", *args, **kw):
            if not isinstance(file, int) and any(c in mode for c in "wax+"):
                refuse(file)
            return real_open(file, mode, *args, **kw)

        monkeypatch.setattr(builtins, "open", fake_open)

    return guard


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_study_is_one_line_exit_1_nothing_written(reference, tmp_path, capsys, read_only):
    root = copy_reference(reference, tmp_path)
    damage(root / JOB / "result.json", "truncated")  # run would move it aside and redo the job
    before = tree(root)
    read_only(root)
    assert cli_main(["status", str(root)]) == 0  # status only reads
    capsys.readouterr()
    for args in (["report", str(root), "--quiet"],
                 ["eval", str(root / JOB), *EVAL, "--out", str(root / JOB / "again.json")],
                 ["run", "--out", str(root), "--methods", "pgd-at", "--seeds", "0", *TINY_RUN]):
        assert cli_main(args) == 1, args
        err = capsys.readouterr().err
        assert err.startswith(f"ltbench {args[0]}: error: Read-only file system: {root}") and err.count("\n") == 1, err
    assert tree(root) == before
