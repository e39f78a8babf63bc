"""The distribution ships both packages (ltbench and the top-level methods) and the presets."""
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
