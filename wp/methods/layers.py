"""Which layers a method touches: the counted conv/linear layers, the first conv and the classifier."""

from __future__ import annotations

import torch.nn as nn

from wp.compression import weight_layers


def first_conv(model: nn.Module) -> str | None:
    """Name of the network's first ``Conv2d`` (in module order)."""
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def classifier(model: nn.Module) -> str | None:
    """Name of the network's last ``Linear`` layer: the classifier of every network in the zoo."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def select(model: nn.Module, keep_first: bool, keep_last: bool) -> list[str]:
    """The conv/linear layers a method compresses, in model order: all of them, minus the first
    conv when ``keep_first`` and minus the classifier when ``keep_last`` (those stay float)."""
    skip = {first_conv(model) if keep_first else None, classifier(model) if keep_last else None}
    return [n for n in weight_layers(model) if n not in skip]
