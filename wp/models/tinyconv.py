"""TinyConv (reference-behaviour.md section 3.5).

Per stage: conv 5x5 → ReLU → AvgPool(2) → Hardtanh(-1, 1) → BN; then flatten (C, H, W) →
Linear (no bias) → BatchNorm1d. The first conv pads by 4 (28 → 32 pixels), the others by 2.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from wp.models.registry import register


class TinyConv(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 5, 1, 4, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, 5, 1, 2, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 64, 5, 1, 2, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.pool = nn.AvgPool2d(2)
        self.act = nn.ReLU(inplace=True)
        self.clip = nn.Hardtanh(-1.0, 1.0)
        side = (image_size + 4) // 2 // 2 // 2
        self.fc1 = nn.Linear(64 * side * side, num_classes, bias=False)
        self.bn_fc = nn.BatchNorm1d(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.clip(self.pool(self.act(self.conv1(x)))))
        x = self.bn2(self.clip(self.pool(self.act(self.conv2(x)))))
        x = self.bn3(self.clip(self.pool(self.act(self.conv3(x)))))
        return self.bn_fc(self.fc1(torch.flatten(x, 1)))


@register
def tinyconv(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """TinyConv: three 5x5 convs (32/32/64) and one linear layer (180,456 parameters for QuickDraw-100)."""
    return TinyConv(in_channels, num_classes, image_size)
