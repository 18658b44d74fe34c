"""Networks without BatchNorm, for wp's per-layer pool scale (``pool_scale``, README "Networks
without BatchNorm"): nothing after a pooled layer absorbs the scale of the pool vectors.

* ``mlp3``: a three-layer fully connected network (input -> 256 -> 128 -> classes, ReLU); pooled with
  ``pool_fc: true`` (every layer's input size divides by 8).
* ``cnn_nobn``: three 3x3 conv-ReLU blocks (16, 32, 64 channels, max pooling after the first two),
  global average pooling and a linear classifier; no BatchNorm anywhere.

Use them with ``network_modules: [examples/bn_free.py]`` (see ``examples/bn_free.yaml``).
"""

import torch.nn as nn

from wp.models import register


@register
def mlp3(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    n_in = in_channels * image_size * image_size
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 256), nn.ReLU(inplace=True),
                         nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes))


@register
def cnn_nobn(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    pool = nn.MaxPool2d(2) if image_size >= 16 else nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(inplace=True), pool,
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), pool,
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )
