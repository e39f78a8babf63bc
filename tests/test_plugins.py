"""Third-party methods: a --methods-dir folder, $LTBENCH_METHODS, an installed entry point; broken
plugins reported by name; --set overrides type-checked and recorded."""
from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from ltbench import plugins, registry
from ltbench.cli import main as cli_main
from ltbench.engine.train import run_job, train_step
from ltbench.method import BatchContext
from ltbench.method_factory import build_method
from ltbench.models import build_model
from ltbench.plugins import PLUGIN_ERRORS, load_methods
from ltbench.registry import METHODS
from test_methods import tiny_job


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster


BUILTINS = {"pgd-at", "trades", "mart", "cb-at", "at-bsl", "robal", "reat", "reat-official"}

PLUGIN = '''
"""Label-smoothed PGD-AT: a method added from outside ltbench (test plugin)."""
from dataclasses import dataclass

import torch.nn.functional as F

from ltbench.method import Method
from ltbench.registry import register_method


@register_method("{name}")
class LabelSmoothedAT(Method):
    """PGD-AT with label smoothing on the adversarial cross-entropy."""

    @dataclass
    class Config:
        """smoothing: the label-smoothing mass."""
        smoothing: float = 0.1

    def train_loss(self, model, x, x_adv, y, ctx):
        logits_adv = model(x_adv)
        return F.cross_entropy(logits_adv.float(), y, label_smoothing=self.config.smoothing), logits_adv
'''


@pytest.fixture
def isolated_registry():
    """Whatever a test registers or records is forgotten afterwards."""
    items, errors, datasets = dict(METHODS._items), dict(PLUGIN_ERRORS), dict(registry.DATASETS._items)
    dirs, builtin = set(plugins._loaded_dirs), plugins._builtin_loaded
    yield
    registry.DATASETS._items.clear()
    registry.DATASETS._items.update(datasets)
    METHODS._items.clear()
    METHODS._items.update(items)
    PLUGIN_ERRORS.clear()
    PLUGIN_ERRORS.update(errors)
    plugins._loaded_dirs.clear()
    plugins._loaded_dirs.update(dirs)
    plugins._builtin_loaded = builtin


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _write_plugin(folder: Path, name: str, stem: str = "smooth") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text(PLUGIN.format(name=name))
    return folder


def _run_args(methods: list[str], out: Path, *extra: str) -> list[str]:
    """``ltbench run`` on the tiny Fashion-MNIST of the ``tiny_fmnist`` fixture (jobs run in a worker
    process, so the data must be on disk and the plugins in a --methods-dir)."""
    return ["run", "--methods", *methods, "--datasets", "fmnist", "--ratios", "0.2", "--epochs", "1",
            "--model", "small-cnn", "--set", "model.width=4", "--batch-size", "64", "--train-attack-steps", "2",
            "--attacks", "clean", "pgd2", "--device", "cpu", "--out", str(out), "--quiet", *extra]


def _two_steps(name: str) -> float:
    counts = torch.tensor([30.0, 20, 15, 10, 8, 6, 4, 3, 2, 2])
    method = build_method(name, {}, 10, counts)
    model = build_model("small-cnn", 10, 1, (0.5,), (0.5,), width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 10
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        loss, _ = train_step(model, model, method, opt, x, y, BatchContext(model, x, y, counts, 0.1),
                             eps=0.1, step=0.05, steps=1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return float(loss)


def test_methods_dir_plugin_and_set_run_from_the_cli(tmp_path, tiny_fmnist, isolated_registry, monkeypatch):
    """One study, one worker: a method from a --methods-dir folder, and reat with --set overrides."""
    from ltbench.runner import local

    monkeypatch.setattr(local, "available_cores", lambda: 1, raising=False)  # one thread: faster here
    name = _unique("smooth")
    folder = _write_plugin(tmp_path / "plugins", name)
    out = tmp_path / "study"
    args = _run_args([name, "reat"], out, "--methods-dir", str(folder), "--set", f"{name}.smoothing=0.2",
                     "--set", "reat.tail_weight=0.5", "--set", "reat.rbl=false")
    assert cli_main(args) == 0
    jobs = {json.loads((p / "config.json").read_text())["method"]: p for p in out.iterdir() if p.is_dir()}
    assert set(jobs) == {name, "reat"}
    for job in jobs.values():
        result = json.loads((job / "result.json").read_text())
        assert 0.0 <= result["metrics"]["clean"]["overall"] <= 1.0
    assert json.loads((jobs[name] / "config.json").read_text())["method_params"] == {"smoothing": "0.2"}
    recorded = json.loads((jobs["reat"] / "config.json").read_text())["method_params"]
    assert recorded == {"tail_weight": "0.5", "rbl": "false"}
    method = build_method("reat", recorded, 10, torch.ones(10))
    assert method.config.tail_weight == 0.5 and method.config.rbl is False
    assert method.config_dict() == {"rbl": False, "tail": True, "bsl": True, "tail_weight": 0.5, "per_pair": True}


def test_env_plugin_folder_runs(tmp_path, isolated_registry, monkeypatch):
    name = _unique("envsmooth")
    folder = _write_plugin(tmp_path / "env-plugins", name)
    monkeypatch.setenv("LTBENCH_METHODS", str(folder))
    result = run_job(tiny_job(name), tmp_path / "job")
    assert name in METHODS
    assert result["config"]["method"] == name and (tmp_path / "job" / "result.json").exists()


def test_broken_plugin_is_reported_by_name_and_others_load(tmp_path, isolated_registry, capsys):
    good = _unique("good")
    folder = _write_plugin(tmp_path / "mixed", good, stem="good")
    (folder / "needs_missing.py").write_text("import a_package_that_is_not_installed_anywhere\n")
    (folder / "syntax_error.py").write_text("def broken(:\n")
    (folder / "_private_helper.py").write_text("raise RuntimeError('never imported')\n")
    with pytest.warns(UserWarning, match="failed to import"):
        assert cli_main(["list", "methods", "--methods-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert good in out and BUILTINS <= {line.split()[0] for line in out.splitlines() if line and line[0] != "("}
    assert "needs_missing.py" in out and "a_package_that_is_not_installed_anywhere" in out
    assert "syntax_error.py" in out and "_private_helper" not in out
    labels = [k for k in PLUGIN_ERRORS if str(folder) in k]
    assert sorted(Path(k).name for k in labels) == ["needs_missing.py", "syntax_error.py"]
    assert PLUGIN_ERRORS[str(folder / "needs_missing.py")].startswith("ModuleNotFoundError")
    assert good in METHODS and BUILTINS <= set(METHODS.names())
    _two_steps(good)


def test_entry_point_plugin_loads_and_runs(tmp_path, isolated_registry, monkeypatch):
    """An installed package declaring group ``ltbench.methods`` (a dist-info folder on sys.path)."""
    name = _unique("ep-smooth")
    pkg = f"ltbench_ep_{uuid.uuid4().hex[:8]}"
    site = tmp_path / "site"
    (site / pkg).mkdir(parents=True)
    (site / pkg / "__init__.py").write_text(PLUGIN.format(name=name))
    dist = site / f"{pkg}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [ltbench.methods]
        {name} = {pkg}
        broken-ep = {pkg}_missing_module
        """))
    monkeypatch.syspath_prepend(str(site))
    plugins._builtin_loaded = False  # entry points are scanned once per process; scan again
    with pytest.warns(UserWarning, match="broken-ep"):
        load_methods()
    assert name in METHODS and BUILTINS <= set(METHODS.names())
    (label,) = [k for k in PLUGIN_ERRORS if "broken-ep" in k]
    assert label.startswith("entry point broken-ep") and "ModuleNotFoundError" in PLUGIN_ERRORS[label]
    assert torch.isfinite(torch.tensor(_two_steps(name)))


@pytest.mark.parametrize("setting, message", [
    ("reat.tail_wieght=0.5", "no parameter 'tail_wieght'"),
    ("reat.tail_weight=half", "not a valid float"),
    ("reat.tail=maybe", "not a valid bool"),
])
def test_bad_set_is_a_one_line_error(tmp_path, capsys, setting, message):
    out = tmp_path / "study"
    assert cli_main(_run_args(["reat"], out, "--set", setting)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_documented_example_is_a_working_plugin(tmp_path, isolated_registry):
    """The complete example in the README's "Add a method" loads from a folder and trains."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Add a method", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 15 <= len(code.strip().splitlines()) <= 30
    folder = tmp_path / "doc-example"
    folder.mkdir()
    (folder / "focal_at.py").write_text(code)
    load_methods([folder])
    assert "focal-at" in METHODS and not [k for k in PLUGIN_ERRORS if str(folder) in k]
    assert build_method("focal-at", {"gamma": "1"}, 10, torch.ones(10)).config.gamma == 1.0
    assert torch.isfinite(torch.tensor(_two_steps("focal-at")))


def test_config_file_methods_dir_runs_a_plugin_and_load_model_takes_methods_dir(tmp_path, isolated_registry,
                                                                                tiny_fmnist, capsys, monkeypatch):
    """A config file's ``methods_dir`` key and ``ltbench.load_model(..., methods_dir=)`` find a
    plugin method; without them the error says where a plugin method loads from."""
    import ltbench

    monkeypatch.delenv("LTBENCH_METHODS", raising=False)
    name = _unique("cfg-smooth")
    folder = _write_plugin(tmp_path / "mine", name)
    out = tmp_path / "study"
    config = tmp_path / "study.toml"
    config.write_text(f'methods = ["{name}"]\nmethods_dir = "{folder}"\n')
    args = [a for a in _run_args([], out) if a != "--methods"]
    assert cli_main([*args, "--config", str(config)]) == 0, capsys.readouterr().err
    job = out / f"{name}__fmnist__r0.2__s0"
    assert json.loads((job / "result.json").read_text())["plugin_files"] == {name: str(folder / "smooth.py")}
    assert "methods_dir" not in json.loads((job / "config.json").read_text())

    METHODS._items.pop(name)  # a fresh session: the plugin is not loaded
    plugins._loaded_dirs.clear()
    with pytest.raises(ltbench.errors.LtbenchError, match=r"unknown method .*\$LTBENCH_METHODS"):
        ltbench.load_model(job)
    loaded = ltbench.load_model(job, methods_dir=folder)
    assert loaded.config.method == name and not loaded.model.training
    bad = tmp_path / "bad.toml"
    bad.write_text(f'methods = ["{name}"]\nmethods_dir = 3\n')
    assert cli_main([*args, "--config", str(bad)]) == 2
    assert "methods_dir must be a folder or a list of folders" in capsys.readouterr().err
