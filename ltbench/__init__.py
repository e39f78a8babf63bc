"""ltbench: a benchmark harness for adversarial training on long-tailed data.

The Python API (:mod:`ltbench.api`) is exported here and imported on first use:
``load_study``, ``load_model``, ``evaluate``, ``run``.
"""
from ltbench.version import __version__
from ltbench.registry import register_dataset, register_method, register_model

_API = ("load_study", "load_model", "evaluate", "run", "model_from_factory")

__all__ = ["register_method", "register_dataset", "register_model", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from ltbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'ltbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    """``dir(ltbench)`` lists the API too, though it is imported on first use."""
    return sorted({*globals(), *_API})
