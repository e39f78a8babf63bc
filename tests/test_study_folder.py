"""The study-folder contract (ltbench/study_folder.py): names, states, formats, and no other module spelling them
(the layers: tests/test_layers.py)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ltbench import study_folder as sf
from ltbench.config import JobConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("method, dataset, ratio, seed", [("reat", "cifar10", 0.01, 0), ("reat+no-tail", "fmnist", 0.1, 3),
                                                           ("pgd-at", "tinyimagenet", 1, 12), ("a__b", "c", 0.02, -1)])
def test_job_name_round_trips(method, dataset, ratio, seed):
    name = sf.job_name(method, dataset, ratio, seed)
    assert sf.parse_job_name(name) == (method, dataset, float(ratio), seed)


def test_job_config_names_its_folder_with_the_contract():
    cfg = JobConfig(method="reat", dataset="cifar10", ratio=0.01, seed=2, label="reat+no-tail")
    assert cfg.job_name == "reat+no-tail__cifar10__r0.01__s2" == sf.job_name("reat+no-tail", "cifar10", 0.01, 2)
    assert sf.parse_job_name("not-a-job") is None and sf.parse_job_name("a__b__rx__s1") is None


def test_states_and_outcomes_are_their_strings():
    assert sf.JobState.DONE == "done" and f"{sf.JobState.PENDING}" == "pending" and str(sf.Outcome.BUSY) == "busy"
    assert {"done": 1}[sf.JobState.DONE] == 1 and {sf.Outcome.INTERRUPTED: 2}["interrupted"] == 2
    assert json.dumps({"s": sf.JobState.FAILED, "o": sf.Outcome.FAILED_BEFORE}) == '{"s": "failed", "o": "failed-before"}'
    assert sf.Outcome("failed-before") is sf.Outcome.FAILED_BEFORE


def test_result_carries_its_format_and_older_files_still_read(tmp_path):
    written = sf.write_result(tmp_path, {"metrics": {"clean": {"overall": 0.5}}, "format": 99})
    on_disk = json.loads((tmp_path / sf.RESULT).read_text())
    assert on_disk == written and on_disk["format"] == sf.RESULT_FORMAT == sf.record_format(on_disk)
    old = {"metrics": {"clean": {"overall": 0.25}}}  # a result.json written before the field existed
    (tmp_path / sf.RESULT).write_text(json.dumps(old))
    assert sf.read_result(tmp_path) == old == sf.load_result(tmp_path) and sf.record_format(old) == 1
    (tmp_path / sf.RESULT).write_text('{"metrics": 3}')
    assert sf.read_result(tmp_path) is None
    with pytest.raises(ValueError, match="no 'metrics' object"):
        sf.load_result(tmp_path)


def test_metrics_reader_skips_damaged_lines_and_counts_epochs_in_order(tmp_path):
    for epoch in (0, 1):
        sf.append_metrics(tmp_path, {"epoch": epoch, "loss": 1.0})
    with open(tmp_path / sf.METRICS, "a") as f:
        f.write('{"epoch": 3}\n{"epo')  # out of order, then a torn line
    assert [r["epoch"] for r in sf.read_metrics(tmp_path)] == [0, 1, 3]
    assert sf.epochs_done(tmp_path) == 2
    assert sf.read_metrics(tmp_path / "nowhere") == []


def test_config_and_epoch_records_carry_their_format_and_older_files_still_read(tmp_path):
    cfg = JobConfig(method="reat", dataset="fmnist", ratio=0.01, seed=1)
    sf.write_config(tmp_path, cfg.to_dict())
    on_disk = json.loads((tmp_path / sf.CONFIG).read_text())
    assert on_disk == {"format": sf.CONFIG_FORMAT, **cfg.to_dict()} == sf.read_config(tmp_path)
    assert JobConfig.from_dict(on_disk) == cfg  # the format is the file's, not a job field
    sf.append_metrics(tmp_path, {"epoch": 0, "loss": 1.5})
    sf.write_metrics(tmp_path, sf.read_metrics(tmp_path) + [{"epoch": 1, "loss": 1.25}])
    lines = [json.loads(line) for line in (tmp_path / sf.METRICS).read_text().splitlines()]
    assert lines == [{"format": sf.METRICS_FORMAT, "epoch": 0, "loss": 1.5},
                     {"format": sf.METRICS_FORMAT, "epoch": 1, "loss": 1.25}]
    # Files written before the field existed (the committed study's config.json) read as format 1.
    (tmp_path / sf.CONFIG).write_text(json.dumps(cfg.to_dict()))
    (tmp_path / sf.METRICS).write_text('{"epoch": 0, "loss": 2.0}\n')
    assert sf.record_format(sf.read_config(tmp_path)) == 1 == sf.record_format(sf.read_metrics(tmp_path)[0])
    assert JobConfig.from_dict(sf.read_config(tmp_path)) == cfg


@pytest.mark.parametrize("name", [sf.CONFIG, sf.RESULT, sf.METRICS])
def test_a_newer_format_is_a_clear_error_never_damage(tmp_path, name):
    from ltbench.errors import LtbenchError

    record = {"format": sf.FORMATS[name] + 1, "epoch": 0, "metrics": {}, "method": "reat"}
    (tmp_path / name).write_text(json.dumps(record) + "\n")
    read = {sf.CONFIG: sf.read_config, sf.RESULT: sf.read_result, sf.METRICS: sf.read_metrics}[name]
    with pytest.raises(LtbenchError, match=f"newer ltbench .format {sf.FORMATS[name] + 1}.*upgrade ltbench"):
        read(tmp_path)
    assert json.loads((tmp_path / name).read_text().splitlines()[0]) == record  # left as it was


def test_no_other_module_spells_a_job_folder_file_name():
    names = [sf.CONFIG, sf.SPLIT, sf.METRICS, sf.RESULT, sf.FAILED, sf.ERROR, sf.RUNNING, sf.PROGRESS, sf.PROGRESS_JSON,
             sf.CHECKPOINT, sf.BEST, sf.EVAL_WEIGHTS, sf.LOG, sf.SUBMITTED, sf.STUDY, sf.STUDY_LOCK, sf.LOCK,
             sf.REPORT_PAGE]
    pattern = re.compile("|".join(rf"[\"']{re.escape(n)}[\"']" for n in names))
    offenders = [f"{p.relative_to(ROOT)}:{i}" for folder in ("ltbench", "methods") for p in (ROOT / folder).rglob("*.py")
                 if p.name != "study_folder.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders


def test_the_registry_imports_no_plugin_data_or_model():
    code = ("import sys, ltbench.registry; "
            "print([m for m in sys.modules if m == 'methods' or m.startswith(('methods.', 'ltbench.data', 'ltbench.models'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
