"""WideResNets (Zagoruyko & Komodakis, BMVC 2016): WRN-34-10, the standard robust-training model, and
WRN-28-10, RobustLT's default."""
from torch import nn

from ltbench.models.base import LTModel
from ltbench.models.resnet import PreActBlock
from ltbench.registry import register_model


def wrn_body(in_channels: int, depth: int, widen: int):
    assert (depth - 4) % 6 == 0, "WideResNet depth must be 6n + 4"
    n = (depth - 4) // 6
    widths = [16, 16 * widen, 32 * widen, 64 * widen]
    layers = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
    c_in = widths[0]
    for stage, w in enumerate(widths[1:]):
        for j in range(n):
            layers.append(PreActBlock(c_in, w, 2 if (j == 0 and stage > 0) else 1))
            c_in = w
    layers += [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), c_in


@register_model("wrn-34-10")
def wrn_34_10(num_classes: int, in_channels: int = 3, mean=(0.5,), std=(0.5,), depth: int = 34,
              widen: int = 10) -> LTModel:
    """WideResNet-34-10 (Zagoruyko & Komodakis 2016), pre-activation blocks."""
    body, dim = wrn_body(in_channels, depth, widen)
    return LTModel(body, dim, num_classes, mean, std)


@register_model("wrn-28-10")
def wrn_28_10(num_classes: int, in_channels: int = 3, mean=(0.5,), std=(0.5,), depth: int = 28,
              widen: int = 10) -> LTModel:
    """WideResNet-28-10 (Zagoruyko & Komodakis 2016), pre-activation blocks (RobustLT's default model)."""
    body, dim = wrn_body(in_channels, depth, widen)
    return LTModel(body, dim, num_classes, mean, std)
