"""CIFAR-style MobileNet-v2 with ReLU (reference-behaviour.md section 3.4, the weight-pool architecture).

Stem conv 3x3 (padding chosen so a 28-pixel input becomes 32 pixels, as the reference's padding 3),
17 inverted-residual blocks, conv 1x1 to 1280, global average pool, Linear. No max-pool after the
stem and stride 2 in the third stage: the same network in every stage.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from wp.models.registry import register

# (expansion, out_channels, blocks, stride)
CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class Block(nn.Module):
    """expand 1x1 → depthwise 3x3 → project 1x1; residual only at stride 1."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int):
        super().__init__()
        planes = expansion * in_planes
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int):
        super().__init__()
        pad = max(1, (32 - image_size + 2) // 2)
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 1, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks, in_planes = [], 32
        for expansion, out_planes, n, stride in CFG:
            for i in range(n):
                blocks.append(Block(in_planes, out_planes, expansion, stride if i == 0 else 1))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))


@register
def mobilenet_v2(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """MobileNet-v2 for small images (2,411,636 parameters for QuickDraw-100)."""
    return MobileNetV2(in_channels, num_classes, image_size)
