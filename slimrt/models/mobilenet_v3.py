"""MobileNet v3 small (Howard et al. 2019): inverted residuals with squeeze-and-excitation, hardswish.

Follows torchvision's ``mobilenet_v3_small`` layout (``features.N.block...``, ``classifier.0/3``; ~2.54M parameters
and ~57M MACs at 3x224x224 with 1000 classes). With ``small_input=True`` (the default, like the other zoo models)
the stem and the first block are stride 1, so 28/32 px images end at 2x2; ``small_input=False`` gives the
ImageNet strides (224 px ends at 7x7).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimrt.models.mobilenet import make_divisible
from slimrt.models.registry import init_weights, register_model

__all__ = ["SqueezeExcitation", "InvertedResidualV3", "MobileNetV3", "mobilenet_v3_small"]


class SqueezeExcitation(nn.Module):
    """``x * hardsigmoid(fc2(relu(fc1(avgpool(x)))))`` with 1x1 convs, as in torchvision."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * s


def _conv_bn_act(cin: int, cout: int, k: int, stride: int, groups: int, act: type[nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidualV3(nn.Module):
    """1x1 expand (unless the expansion equals the input) -> kxk depthwise -> SE (optional) -> 1x1 projection."""

    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, hs: bool, stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(_conv_bn_act(cin, exp, 1, 1, 1, act))
        layers.append(_conv_bn_act(exp, exp, k, stride, exp, act))
        if se:
            layers.append(SqueezeExcitation(exp, make_divisible(exp // 4)))
        layers.append(_conv_bn_act(exp, cout, 1, 1, 1, None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res_connect else y


class MobileNetV3(nn.Module):
    """MobileNet v3 small.

    Args:
        in_channels: input image channels.
        num_classes: classifier outputs.
        width_mult: multiplier on every block's channels (rounded to multiples of 8).
        small_input: stride-1 stem and first block for 28/32 px images.
        dropout: dropout probability in the classifier.
    """

    # (in, kernel, expanded, out, SE, hardswish, stride), torchvision's mobilenet_v3_small
    CFG: Sequence[tuple[int, int, int, int, bool, bool, int]] = (
        (16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
        (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
        (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
        (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1),
    )  # fmt: skip

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width_mult: float = 1.0,
        small_input: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return make_divisible(c * width_mult)

        first = ch(self.CFG[0][0])
        layers: list[nn.Module] = [_conv_bn_act(in_channels, first, 3, 1 if small_input else 2, 1, nn.Hardswish)]
        for i, (cin, k, exp, cout, se, hs, stride) in enumerate(self.CFG):
            layers.append(InvertedResidualV3(ch(cin), k, ch(exp), ch(cout), se, hs, 1 if small_input and i == 0
                                             else stride))
        last = ch(self.CFG[-1][3])
        layers.append(_conv_bn_act(last, 6 * last, 1, 1, 1, nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last, 1024), nn.Hardswish(), nn.Dropout(dropout), nn.Linear(1024, num_classes)
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model
def mobilenet_v3_small(in_channels: int = 3, num_classes: int = 10, **kwargs) -> MobileNetV3:
    """MobileNet v3 small with SE blocks (~1.5M params at 10 classes; ~57M MACs at 3x224x224, ImageNet strides)."""
    return MobileNetV3(in_channels=in_channels, num_classes=num_classes, **kwargs)
