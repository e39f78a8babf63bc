"""Bad input is one line on stderr, exit status ≠ 0, and nothing written."""
import os

import pytest

from ltbench.cli import main

GOOD = ["run", "--methods", "pgd-at", "--datasets", "fmnist", "--ratios", "0.1", "--seeds", "0",
        "--epochs", "1", "--quiet"]


def _with(flag, *values):
    args = list(GOOD)
    i = args.index(flag)
    j = i + 1
    while j < len(args) and not args[j].startswith("--"):
        j += 1
    return args[:i + 1] + list(values) + args[j:]


@pytest.mark.parametrize("args, message", [
    (_with("--methods", "no-such-method"), "unknown method 'no-such-method'; known methods: .*pgd-at"),
    (_with("--datasets", "mnist9"), "unknown dataset 'mnist9'; known datasets: .*fmnist"),
    (GOOD + ["--model", "vgg99"], "unknown model 'vgg99'"),
    (_with("--ratios", "0"), r"ratio must be in \(0, 1\]"),
    (_with("--ratios", "1.5"), r"ratio must be in \(0, 1\]"),
    (_with("--epochs", "0"), "epochs must be at least 1"),
    (GOOD + ["--set", "pgd-at.nope=1"], "has no parameter 'nope'"),
    (GOOD + ["--preset", "nope"], "unknown preset 'nope'"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "study"
    code = main(args + ["--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    import re

    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; use a file as parent instead")
def test_unwritable_output_folder_non_root(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(GOOD + ["--out", str(ro / "study")]) != 0
    assert "not writable" in capsys.readouterr().err


def test_output_under_a_file_is_rejected(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(GOOD + ["--out", str(blocker / "study")]) != 0
    err = capsys.readouterr().err
    assert "not usable" in err and len(err.strip().splitlines()) == 1


def test_labels_outside_range_are_rejected(tmp_path, monkeypatch, capsys):
    import gzip

    import numpy as np

    from tinydata import idx_bytes, write_tiny_fmnist

    root = write_tiny_fmnist(tmp_path / "data")
    bad = np.repeat(np.arange(10), 30)
    bad[3] = 12
    (root / "fashion-mnist" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(bad)))
    monkeypatch.setenv("LTBENCH_DATA", str(root))
    out = tmp_path / "study"
    assert main(GOOD + ["--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert "labels outside [0, 10)" in err and len(err.splitlines()) == 1
    assert not any(out.rglob("result.json"))


def test_list_commands(capsys):
    for kind, expected in (("methods", "pgd-at"), ("datasets", "cifar100"), ("models", "wrn-34-10"),
                           ("attacks", "pgdK"), ("presets", "fmnist-lt-quick")):
        assert main(["list", kind]) == 0
        assert expected in capsys.readouterr().out


def test_ablations_are_method_flags_with_their_own_job_folders():
    from ltbench.study.grid import build_jobs

    spec = {"methods": ["reat", "reat --no-tail", "reat --no-rbl --no-bsl"], "datasets": ["fmnist"],
            "ratios": [0.01], "seeds": [0], "method_params": {"reat": {"tail_weight": "0.5"}}}
    jobs = build_jobs(spec)
    assert [j.job_name for j in jobs] == ["reat__fmnist__r0.01__s0", "reat+no-tail__fmnist__r0.01__s0",
                                          "reat+no-rbl+no-bsl__fmnist__r0.01__s0"]
    assert {j.method for j in jobs} == {"reat"}
    assert jobs[1].method_params == {"tail": "false", "tail_weight": "0.5"}
    assert jobs[2].method_params == {"rbl": "false", "bsl": "false", "tail_weight": "0.5"}


def test_new_jobs_take_todays_defaults_not_the_meaning_of_old_config_files():
    """A job built from a preset or flags scales epoch schedules and selects on the validation split
    (today's defaults); only a stored config.json without those fields reads as the old meaning."""
    from ltbench.study.grid import build_jobs

    spec = {"methods": ["cfa"], "datasets": ["fmnist"], "ratios": [0.01], "seeds": [0], "method_params": {}}
    (job,) = build_jobs(spec)
    assert job.scale_schedules is True and job.select_on == "validation"
    (job,) = build_jobs({**spec, "scale_schedules": False, "select_on": "test"})
    assert job.scale_schedules is False and job.select_on == "test"


def test_unknown_ablation_flag_is_an_error(capsys, tmp_path):
    assert main(_with("--methods", "reat --no-such-part") + ["--out", str(tmp_path / "s")]) != 0
    assert "method 'reat' has no parameter 'such_part'; its parameters: rbl, tail" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
