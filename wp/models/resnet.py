"""CIFAR-style ResNets of the paper (reference-behaviour.md section 3.1-3.3).

3x3 stem (stride 1, padding 1) → BN → ReLU → MaxPool(3, s2, p1) → stages of two BasicBlocks →
global average pool → Linear. No input normalisation. One definition serves every stage, so the
``resnet_mlperf`` stem has padding 1 everywhere (the reference pretrained it with padding 3).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from wp.models.registry import register


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """BasicBlock ResNet with ``len(widths)`` stages of ``blocks`` blocks; stage i>0 has stride 2."""

    def __init__(self, widths: list[int], blocks: list[int], in_channels: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_planes, width, stride if j == 0 else 1))
                in_planes = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register
def resnet_10(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """ResNet-10: widths 64/128, two blocks each (676,682 parameters for CIFAR-10)."""
    return CifarResNet([64, 128], [2, 2], in_channels, num_classes)


@register
def resnet_14(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """ResNet-14: widths 64/128/256, two blocks each (2,777,674 parameters for CIFAR-10)."""
    return CifarResNet([64, 128, 256], [2, 2, 2], in_channels, num_classes)


@register
def resnet_mlperf(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """The paper's "ResNet-s": widths 16/32/64, two blocks each (175,258 parameters for CIFAR-10)."""
    return CifarResNet([16, 32, 64], [2, 2, 2], in_channels, num_classes)
