"""A network of your own, for wp: a small VGG-style CNN.

Register a builder with ``@register``; its function name becomes the network name used in the
config (``experiments``, ``network_hparams``, ``compare.networks``). The builder receives the
dataset's input channels, number of classes and image side, and returns a ``torch.nn.Module``.

Which layers get a weight pool is decided from the module alone: every ``nn.Conv2d`` whose input
channels divide by 8 and that is not depthwise, except the network's first conv (and ``nn.Linear``
layers with ``pool_fc: true``). Here that is ``block2`` and ``block3``'s convs.

Use it with ``network_modules: [examples/my_network.py]`` in the config (see
``examples/my_network.yaml``) or ``python -m wp --networks-from examples/my_network.py <command>``.
"""

import torch.nn as nn

from wp.models import register


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@register
def vgg_small(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Three conv-BN-ReLU blocks (16, 32, 64 channels), max pooling after the first two (skipped for
    images under 16 pixels), global average pooling and a linear classifier."""
    pool = nn.MaxPool2d(2) if image_size >= 16 else nn.Identity()
    return nn.Sequential(
        conv_bn_relu(in_channels, 16), pool,
        conv_bn_relu(16, 32), pool,
        conv_bn_relu(32, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )
