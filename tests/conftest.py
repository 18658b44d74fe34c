import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def digits_h5(tmp_path_factory) -> Path:
    """The digits dataset prepared once for the whole session."""
    from wp import data

    out = tmp_path_factory.mktemp("data") / "digits.h5"
    data.prepare("digits", tmp_path_factory.mktemp("raw"), out, seed=0)
    return out


@pytest.fixture(scope="session")
def trained_tinyconv(digits_h5, tmp_path_factory) -> Path:
    """A tinyconv really trained on digits (a few hundred steps' worth of seconds): its checkpoint."""
    from wp.stages import pretrain
    from wp.train import hparams

    d = tmp_path_factory.mktemp("tiny")
    hp = hparams({"epochs": 3, "batch_size": 32, "lr": 0.05, "schedule": "onecycle", "warmup_epochs": 0.5, "nesterov": True})
    pretrain.run(digits_h5, "tinyconv", hp, d / "pretrained.pt", d / "pretrained.json", seed=0, device="cpu")
    return d / "pretrained.pt"
