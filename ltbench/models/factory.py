"""A model that was not trained by ltbench: ``package.module:function`` (``ltbench eval
--model-factory``, :func:`ltbench.model_from_factory`), with weights from a state-dict file."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ltbench.errors import LtbenchError


def model_from_factory(factory: str, weights: Optional[str | Path] = None, **kwargs) -> nn.Module:
    """``package.module:function`` called with ``kwargs``, then ``weights`` (a state dict saved with
    ``torch.save``, read with ``weights_only=True``) loaded into it."""
    mod_name, sep, fn_name = factory.partition(":")
    if not sep or not mod_name or not fn_name:
        raise LtbenchError(f"model factory must be 'package.module:function', got {factory!r}")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise LtbenchError(f"cannot import model factory {factory!r}: {exc}") from None
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise LtbenchError(f"model factory {factory!r} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
            raise LtbenchError(f"cannot load {weights} as a weights-only state dict: {exc}") from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise LtbenchError(f"{weights} does not fit the model from {factory}: "
                               f"{str(exc).splitlines()[0]}") from None
    return model.eval()
