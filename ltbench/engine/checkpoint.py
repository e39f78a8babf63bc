"""Checkpoints: everything needed for an exact resume, written atomically, loaded weights-only."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ltbench.io import save_torch


def save_checkpoint(path: Path, state: dict) -> None:
    save_torch(path, state)


def load_checkpoint(path: Path, map_location="cpu") -> Optional[dict]:
    """The saved state, or None when there is none. Only tensors and plain containers are trusted.

    Keep the default ``map_location="cpu"`` for a full training state: ``set_rng_state`` and
    ``Generator.set_state`` take CPU byte tensors only, also for CUDA generators."""
    if not path.exists():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
