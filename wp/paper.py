"""The paper's published numbers (Li & Gupta, MLSys 2022), keyed by (dataset, network)."""

from __future__ import annotations

# Table 4: accuracy (%) of the float network ("original") and with pools of 32/64/128 vectors.
TABLE4 = {
    ("cifar10", "resnet_mlperf"): {"original": 85.3, 32: 82.0, 64: 83.0, 128: 84.0},
    ("cifar10", "resnet_10"): {"original": 91.0, 32: 89.3, 64: 89.8, 128: 90.1},
    ("cifar10", "resnet_14"): {"original": 92.3, 32: 90.7, 64: 91.1, 128: 91.0},
    ("quickdraw100", "tinyconv"): {"original": 82.2, 32: 81.7, 64: 82.2, 128: 82.3},
    ("quickdraw100", "mobilenet_v2"): {"original": 86.5, 32: 86.7, 64: 86.8, 128: 86.9},
}
