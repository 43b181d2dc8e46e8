"""Model zoo (needs torch): a timm-style registry of small-image CNNs that torch.fx can trace.

``create_model("resnet20", in_channels=1, num_classes=10)``; ``list_models()`` names what is registered:
resnet20, resnet56 (CIFAR-style), resnet18 (ImageNet-style, torchvision keys), vgg11_bn, mobilenet_v1,
mobilenet_v2, mobilenet_v3_small (SE blocks, hardswish). Users can name their own factory as
``package.module:factory`` (see :func:`resolve_arch`).
"""

from __future__ import annotations

# Importing the model families registers their factories.
from slimrt.models.mobilenet import mobilenet_v1, mobilenet_v2
from slimrt.models.mobilenet_v3 import mobilenet_v3_small
from slimrt.models.registry import create_model, init_weights, is_registered, list_models, register_model, resolve_arch
from slimrt.models.resnet import resnet18
from slimrt.models.resnet_cifar import resnet20, resnet56
from slimrt.models.vgg import vgg11_bn

__all__ = [
    "register_model",
    "list_models",
    "is_registered",
    "resolve_arch",
    "create_model",
    "init_weights",
    "resnet20",
    "resnet56",
    "resnet18",
    "vgg11_bn",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_small",
]
