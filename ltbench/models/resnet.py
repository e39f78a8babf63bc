"""ResNet-18 with the CIFAR stem (3×3 conv, no max-pool); He et al., CVPR 2016."""
import torch.nn.functional as F
from torch import nn

from ltbench.models.base import LTModel
from ltbench.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block (He et al., ECCV 2016): BN-ReLU before each convolution."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def resnet_body(block, in_channels: int, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), preact=False):
    layers = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
    if not preact:
        layers += [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
    c_in = widths[0]
    for i, (w, d) in enumerate(zip(widths, depths)):
        for j in range(d):
            layers.append(block(c_in, w, 2 if (j == 0 and i > 0) else 1))
            c_in = w
    if preact:
        layers += [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), c_in


@register_model("resnet18")
def resnet18(num_classes: int, in_channels: int = 3, mean=(0.5,), std=(0.5,), width: int = 64) -> LTModel:
    """ResNet-18, CIFAR stem (He et al. 2016); the REAT paper's model."""
    body, dim = resnet_body(BasicBlock, in_channels, tuple(width * m for m in (1, 2, 4, 8)))
    return LTModel(body, dim, num_classes, mean, std)


@register_model("preact-resnet18")
def preact_resnet18(num_classes: int, in_channels: int = 3, mean=(0.5,), std=(0.5,), width: int = 64) -> LTModel:
    """PreAct-ResNet-18 (He et al., ECCV 2016), the usual AT baseline model."""
    body, dim = resnet_body(PreActBlock, in_channels, tuple(width * m for m in (1, 2, 4, 8)), preact=True)
    return LTModel(body, dim, num_classes, mean, std)
