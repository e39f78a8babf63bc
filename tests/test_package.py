"""The distribution ships both packages (ltbench and the top-level methods) and the presets."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_methods_and_presets(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("ltbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "methods/__init__.py" in names and "methods/pgd_at.py" in names
    assert "ltbench/presets/fmnist-lt-quick.toml" in names
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "ltbench = ltbench.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_code_version_dirty_looks_at_the_code_not_the_results(tmp_path):
    """A study run from a checkout rewrites its own results/: that does not make the code dirty."""
    import shutil

    repo = tmp_path / "repo"
    for name in ("ltbench", "methods"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    (repo / "results").mkdir()
    (repo / "results" / "study.json").write_text("{}")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=repo, check=True)
    code = ("import json, ltbench.env as e; print(json.dumps(e.code_version()))")
    run = lambda: json.loads(subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                                            check=True, env={**os.environ, "PYTHONPATH": str(repo)}).stdout)
    assert run()["dirty"] is False
    (repo / "results" / "study.json").write_text('{"jobs": {}}')
    assert run()["dirty"] is False
    (repo / "methods" / "reat.py").write_text((repo / "methods" / "reat.py").read_text() + "\n# changed\n")
    assert run()["dirty"] is True


def test_cpu_name_reads_the_model_and_falls_back(tmp_path, monkeypatch):
    """Every result records the CPU model: bit-exact reproduction holds on one kind of CPU."""
    import platform

    from ltbench.env import cpu_name

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
                    "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n")
    assert cpu_name(info) == "Intel(R) Xeon(R) Processor"
    monkeypatch.setattr(platform, "processor", lambda: "aarch64")
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # no model name (e.g. some ARM kernels)
    assert cpu_name(info) == "aarch64"
    assert cpu_name(tmp_path / "missing") == "aarch64"
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu_name(tmp_path / "missing") is None
