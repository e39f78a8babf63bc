"""A model that was not trained by ltbench: ``package.module:function`` (``ltbench eval
--model-factory``, :func:`ltbench.model_from_factory`), with weights from a state-dict file."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ltbench.errors import LtbenchError
from ltbench.io import load_torch


def model_from_factory(factory: str, weights: Optional[str | Path] = None, **kwargs) -> nn.Module:
    """``package.module:function`` called with ``kwargs``, then ``weights`` (a state dict saved with
    ``torch.save``, read with ``weights_only=True``) loaded into it."""
    mod_name, sep, fn_name = factory.partition(":")
    if not sep or not mod_name or not fn_name:
        raise LtbenchError(f"model factory must be 'package.module:function', got {factory!r}")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except Exception as exc:  # noqa: BLE001 - not found, or the module itself raised on import
        raise LtbenchError(f"cannot import model factory {factory!r}: {type(exc).__name__}: {exc}") from None
    try:
        model = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code: its error in one line, not ours
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise LtbenchError(f"model factory {factory!r} raised {type(exc).__name__}: {first}") from None
    if not isinstance(model, nn.Module):
        raise LtbenchError(f"model factory {factory!r} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        if not Path(weights).is_file():
            raise LtbenchError(f"weights file {weights} does not exist")
        state = load_torch(weights)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        load_weights(model, state, f"{weights}", f"the model from {factory}")
    return model.eval()


def load_weights(model: nn.Module, state, source: str, target: str) -> None:
    """``model.load_state_dict(state)``, or one line saying why ``source`` does not fit ``target``:
    the first tensor whose shape differs (its key and both shapes), else torch's first line (missing
    or unexpected keys)."""
    if not isinstance(state, dict):
        raise LtbenchError(f"{source} holds no state dict (a {type(state).__name__})")
    own = model.state_dict()
    for key, value in state.items():
        if key in own and isinstance(value, torch.Tensor) and value.shape != own[key].shape:
            raise LtbenchError(f"{source} does not fit {target}: {key} has shape {tuple(value.shape)} there, "
                               f"{tuple(own[key].shape)} in the model")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise LtbenchError(f"{source} does not fit {target}: {str(exc).splitlines()[0]}") from None
