"""Model registry (timm-style): ``@register_model`` factories, ``create_model`` and user import paths.

A factory is a callable ``factory(in_channels=3, num_classes=10, **kwargs) -> nn.Module``. Registered
names are looked up with :func:`create_model`; a user may also name their own factory as an import
path ``package.module:factory`` (see :func:`resolve_arch`). Import paths are only ever resolved from
strings a *user* typed (``--arch``), never from strings read out of a file.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from slimrt.errors import ConfigError

__all__ = ["register_model", "list_models", "is_registered", "resolve_arch", "create_model", "init_weights"]

ModelFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelFactory] = {}
_IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register ``fn`` under its ``__name__`` (decorator). Re-registering a name is an error."""
    name = fn.__name__
    if name in _REGISTRY and _REGISTRY[name] is not fn:
        raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].__module__})")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def is_registered(name: str) -> bool:
    """True when ``name`` is a registered model name."""
    _ensure_builtin()
    return name in _REGISTRY


def resolve_arch(arch: str) -> ModelFactory:
    """Return the factory for a registry name or a user-given import path ``package.module:factory``.

    Only call this with a string the user passed (command line, Python call); never with one read from
    a checkpoint or manifest, since resolving an import path runs that module's code.

    Raises:
        ConfigError: unknown name, malformed path, module not importable, or attribute not callable.
    """
    _ensure_builtin()
    if arch in _REGISTRY:
        return _REGISTRY[arch]
    if ":" not in arch:
        raise ConfigError(
            f"unknown architecture {arch!r}; registered models: {', '.join(sorted(_REGISTRY))} "
            "(or pass your own factory as package.module:function)"
        )
    if not _IMPORT_PATH.match(arch):
        raise ConfigError(f"architecture import path {arch!r} must look like package.module:factory")
    module_name, attr = arch.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"cannot import module {module_name!r} for architecture {arch!r}: {e} "
            "(is the package installed or on PYTHONPATH?)"
        ) from e
    factory = getattr(module, attr, None)
    if factory is None:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (architecture {arch!r})")
    if not callable(factory):
        raise ConfigError(f"{arch!r} is not callable; it must be a function returning an nn.Module")
    return factory


def create_model(name: str, in_channels: int = 3, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build a model from a registry name (or a user-given import path, see :func:`resolve_arch`).

    Args:
        name: registered name such as ``"resnet20"``, or ``package.module:factory``.
        in_channels: input image channels (1 for Fashion-MNIST).
        num_classes: classifier outputs.
        **kwargs: architecture options forwarded to the factory (e.g. ``small_input=True``).

    Raises:
        ConfigError: unknown architecture, bad options, or the factory did not return an nn.Module.
    """
    factory = resolve_arch(name)
    channels = {} if _rgb_only(factory) else {"in_channels": in_channels}
    if not channels and in_channels != 3:
        raise ConfigError(f"factory {name!r} has no in_channels parameter (it builds networks for 3-channel RGB "
                          f"images, as torchvision's builders do) but the data has {in_channels} channel(s): "
                          "train on RGB images (no --grayscale), or wrap the factory in one that adapts the stem")
    try:
        model = factory(**channels, num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"cannot build {name!r} with options {kwargs}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ConfigError(f"factory {name!r} returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def _rgb_only(factory: ModelFactory) -> bool:
    """True when ``factory`` takes neither ``in_channels`` nor ``**kwargs`` (torchvision's ``resnet18(*, weights=None,
    progress=True, **kwargs)`` takes ``**kwargs`` but passes them to the model class, so it is inspected too)."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    if "in_channels" in params:
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return getattr(factory, "__module__", "").startswith("torchvision.")
    return True


def init_weights(model: nn.Module) -> None:
    """Standard init: Kaiming-normal (fan_out, relu) convs, BN weight 1 / bias 0, Linear N(0, 0.01) / 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _ensure_builtin() -> None:
    # Importing the package registers the built-in model families.
    importlib.import_module("slimrt.models")
