"""ltbench: a benchmark harness for adversarial training on long-tailed data."""
__version__ = "0.1.0"

from ltbench.registry import register_dataset, register_method, register_model  # noqa: E402

__all__ = ["register_method", "register_dataset", "register_model", "__version__"]
