"""Model registry in the style of timm: ``@register`` a builder, ``create(name, ...)`` builds it."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from wp import WPError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register an architecture builder under its function name."""
    if fn.__name__ in _BUILDERS:
        raise ValueError(f"network {fn.__name__!r} registered twice")
    _BUILDERS[fn.__name__] = fn
    return fn


def names() -> list[str]:
    """All registered network names, sorted."""
    return sorted(_BUILDERS)


def check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise WPError(
            f"unknown network {name!r}: choose one of {', '.join(names())} (fix the networks list in your config)"
        )


def create(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build network ``name`` for inputs of ``in_channels`` x ``image_size`` x ``image_size`` and ``num_classes``."""
    check_name(name)
    return _BUILDERS[name](in_channels=in_channels, num_classes=num_classes, image_size=image_size)
