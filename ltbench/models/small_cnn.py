"""A small VGG-style CNN sized for CPU runs (Fashion-MNIST demo, tests)."""
from torch import nn

from ltbench.models.base import LTModel
from ltbench.registry import register_model


def _block(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


@register_model("small-cnn")
def small_cnn(num_classes: int, in_channels: int = 3, mean=(0.5,), std=(0.5,), width: int = 16) -> LTModel:
    """Small CNN for CPU runs: 3 stages of two 3×3 conv-BN-ReLU (width w, 2w, 4w), global pool."""
    w = width
    body = nn.Sequential(
        *_block(in_channels, w), *_block(w, w), nn.MaxPool2d(2),
        *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),
        *_block(2 * w, 4 * w), *_block(4 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return LTModel(body, 4 * w, num_classes, mean, std)
