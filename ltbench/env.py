"""The environment recorded with every result: versions, device, code revision."""
from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@lru_cache(maxsize=1)
def code_version() -> dict:
    """The git commit of the ltbench source tree (and whether it has local changes), if known."""
    import ltbench

    root = Path(ltbench.__file__).resolve().parent.parent
    out = {"ltbench": ltbench.__version__, "commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode == 0:
            out["commit"] = commit.stdout.strip()
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=5)
            out["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def environment(device: torch.device) -> dict:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
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
