"""Model zoo: every model is ``LTModel`` = normalisation → ``features`` → ``head``."""
from ltbench.models import resnet, small_cnn, wide_resnet  # noqa: F401  (register the models)
from ltbench.models.base import LTModel, Normalize
from ltbench.registry import MODELS


def build_model(name: str, num_classes: int, in_channels: int, mean, std, **params) -> LTModel:
    """Build a registered model; ``params`` are its keyword options (e.g. ``width``)."""
    return MODELS.get(name)(num_classes, in_channels=in_channels, mean=mean, std=std, **params)


__all__ = ["LTModel", "Normalize", "build_model", "MODELS"]
