"""A small CNN sized for CPU runs (Fashion-MNIST demo, tests)."""
from torch import nn

from ltbench.models.base import LTModel
from ltbench.registry import register_model


def _block(c_in, c_out, stride=1):
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


@register_model("small-cnn")
def small_cnn(num_classes: int, in_channels: int = 3, mean=(0.5,), std=(0.5,), width: int = 32) -> LTModel:
    """Small CNN for CPU runs: 3×3 conv-BN-ReLU with widths w (stride 2), 2w (stride 2), 2w; global pool.

    Strided convolutions instead of full-resolution layers keep one PGD-20 evaluation of the whole
    Fashion-MNIST test set near 20 s on 2 CPU cores (measured against VGG-style variants).
    """
    w = width
    body = nn.Sequential(*_block(in_channels, w, 2), *_block(w, 2 * w, 2), *_block(2 * w, 2 * w),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return LTModel(body, 2 * w, num_classes, mean, std)
