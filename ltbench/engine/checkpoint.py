"""Checkpoints: everything needed for an exact resume, written atomically, loaded weights-only."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional

import torch

from ltbench.errors import LtbenchError
from ltbench.io import load_torch, save_torch


def save_checkpoint(path: Path, state: dict) -> None:
    save_torch(path, state)


def load_checkpoint(path: Path, map_location="cpu") -> Optional[dict]:
    """The saved state, or None when there is none. Only tensors and plain containers are trusted.

    Keep the default ``map_location="cpu"`` for a full training state: ``set_rng_state`` and
    ``Generator.set_state`` take CPU byte tensors only, also for CUDA generators."""
    if not path.exists():
        return None
    return load_torch(path, map_location)


PLAIN_TYPES = (bool, int, float, str, type(None))
CONTAINERS = (dict, OrderedDict, list, tuple)


def check_weights_only(state, where: str) -> None:
    """A one-line :class:`LtbenchError` naming the first value of ``state`` that a weights-only load
    refuses (anything but tensors, numbers, strings, None and dicts / lists / tuples of them), so
    that a checkpoint that could never be read back — a "damaged" one on resume — is never written."""
    if isinstance(state, torch.Tensor) or type(state) in PLAIN_TYPES:
        return
    if type(state) not in CONTAINERS:
        raise LtbenchError(f"{where} is a {type(state).__module__}.{type(state).__qualname__}: a checkpoint holds "
                           f"only tensors, numbers, strings, None and dicts or lists of them")
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for key, value in items:
        check_weights_only(value, f"{where}[{key!r}]")


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
