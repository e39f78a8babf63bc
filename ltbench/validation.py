"""Checks of a grid's values that need the registries, run before the study folder is created.

:meth:`ltbench.config.JobConfig.validate` checks the values a job's configuration can check by
itself (ratios, counts, learning rate, budget, step). This module checks what depends on a
registered model or method:

* **model parameters** against the model factory's signature (an unknown key, or a value of the
  wrong type, is an error; integer parameters such as ``width`` must be ≥ 1), then by building
  the model on PyTorch's ``meta`` device, which allocates nothing but runs every shape check;
* **method parameters**: overridden float values must be finite, and a method's ``Config`` may
  define ``validate(self)`` raising :class:`~ltbench.errors.LtbenchError` (or ``ValueError``)
  for values outside their range, e.g. ``cb-at``'s β in [0, 1).

Every error is one line naming the parameter, with exit status 2 from the command line.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

from ltbench.errors import LtbenchError

# The arguments every model factory takes from the dataset, not from ``model.KEY=VALUE``.
MODEL_FIXED_ARGS = ("num_classes", "in_channels", "mean", "std")


def check_model_params(model: str, params: dict, dataset: str) -> None:
    """Raise LtbenchError unless ``model`` can be built with ``params`` for ``dataset``."""
    import torch

    from ltbench.models import build_model
    from ltbench.registry import DATASETS, MODELS

    factory = MODELS.get(model)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        accepted = {n: p for n, p in sig.parameters.items() if n not in MODEL_FIXED_ARGS
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        open_ended = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        for key, value in params.items():
            if key not in accepted:
                if open_ended:
                    continue
                known = ", ".join(accepted) or "(none)"
                raise LtbenchError(f"model {model!r} has no parameter {key!r}; its parameters: {known}")
            _check_model_value(f"model.{key}", value, accepted[key].default)
    info = DATASETS.get(dataset)
    try:
        with torch.device("meta"):
            build_model(model, info.num_classes, info.image_shape[0], info.mean, info.std, **params)
    except LtbenchError:
        raise
    except NotImplementedError:  # an operation the meta device lacks: the signature check above must do
        return
    except Exception as exc:  # the factory's own check (e.g. a WideResNet depth that is not 6n + 4)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise LtbenchError(f"model {model!r} cannot be built with {shown or 'its defaults'}: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")) from None


def _check_model_value(name: str, value: Any, default: Any) -> None:
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise LtbenchError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LtbenchError(f"{name} must be a positive integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LtbenchError(f"{name} must be a finite number, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise LtbenchError(f"{name} must be a string, got {value!r}")


def check_method_config(method: str, config: Any, overridden: dict) -> None:
    """Overridden float values must be finite; then the Config's own ``validate()`` hook, if any."""
    for key, value in overridden.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise LtbenchError(f"{method}.{key} must be a finite number, got {value}")
    hook = getattr(config, "validate", None)
    if callable(hook):
        try:
            hook()
        except LtbenchError as exc:
            raise LtbenchError(f"{method}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise LtbenchError(f"{method}: {exc}") from None


def check_type(name: str, value: Any, default: Any) -> None:
    """A method parameter given as a value (a preset's TOML), not a string: its type must fit the default's."""
    if default is None or isinstance(value, str) and not isinstance(default, str):
        return
    ok = (isinstance(value, bool) if isinstance(default, bool)
          else isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int)
          else isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(default, float)
          else isinstance(value, str) if isinstance(default, str)
          else True)
    if not ok:
        raise LtbenchError(f"{name}={value!r} is not a valid {type(default).__name__}")


def check_jobs(jobs: list) -> None:
    """Model parameters (once per distinct model, parameters and dataset) of every job."""
    seen = set()
    for job in jobs:
        key = (job.model, repr(sorted(job.model_params.items())), job.dataset)
        if key not in seen:
            seen.add(key)
            check_model_params(job.model, job.model_params, job.dataset)

