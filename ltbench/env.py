"""The environment recorded with every result: versions, device, CPU model, code revision."""
from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

from ltbench.errors import LtbenchError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the first GPU if there is one, else the CPU; anything else must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise LtbenchError(f"unknown device {name!r}: {e}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise LtbenchError(f"device {name!r}: no CUDA GPU is visible here (use --device cpu or auto)")
        if device.index is not None and device.index >= count:
            raise LtbenchError(f"device {name!r}: only {count} CUDA GPU(s) are visible here")
    return device


CODE_PATHS = ("ltbench", "methods", "pyproject.toml")  # what `dirty` looks at


@lru_cache(maxsize=1)
def code_version() -> dict:
    """The git commit of the ltbench source tree and whether its code has local changes, if known.

    ``dirty`` looks at the code only (``ltbench/``, ``methods/``, ``pyproject.toml``): a study run
    from a checkout changes its own ``results/`` (``study.json``, committed job folders), which
    says nothing about the code that computed the numbers."""
    from ltbench.version import __version__

    root = Path(__file__).resolve().parent.parent
    out = {"ltbench": __version__, "commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode == 0:
            out["commit"] = commit.stdout.strip()
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                                    cwd=root, capture_output=True, text=True, timeout=5)
            out["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> Optional[str]:
    """The CPU model (the first ``model name`` of ``/proc/cpuinfo``), else ``platform.processor()``,
    else None. Recorded because bit-exact reproduction holds on one kind of CPU: another model may
    round differently in the last digits."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def environment(device: torch.device) -> dict:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        **code_version(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return env
