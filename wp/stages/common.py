"""Pieces shared by the training stages: seeding, moving the data to the device, subsets."""

from __future__ import annotations

import json
import random

import numpy as np
import torch

from wp import WPError
from wp import data as wpdata
from wp.train import Tensors, subset_indices, to_device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def splits(ds: wpdata.CachedDataset, hp: dict, seed: int, device: torch.device) -> tuple[Tensors, Tensors | None, Tensors]:
    """(train, validation or None, test) on ``device``, after the recipe's subsets and hold-out."""
    tr = subset_indices(ds.train.labels, hp["train_subset"], seed)
    val = None
    if hp["selection"] == "best_val":
        rng = np.random.default_rng(seed + 1)
        perm = rng.permutation(tr)
        n_val = max(1, int(round(len(perm) * hp["val_fraction"])))
        val_idx, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        val = to_device(ds.train.images[val_idx], ds.train.labels[val_idx], device)
    te = subset_indices(ds.test.labels, hp["test_subset"], seed)
    train = to_device(ds.train.images[tr], ds.train.labels[tr], device)
    test = to_device(ds.test.images[te], ds.test.labels[te], device)
    return train, val, test


def model_args(ds: wpdata.CachedDataset) -> dict:
    return {"in_channels": ds.channels, "num_classes": ds.num_classes, "image_size": ds.image_size}


def augment_for(ds: wpdata.CachedDataset) -> dict:
    """The dataset's training augmentation: its registry entry's, or what ``prepare`` stored for a
    dataset of the user's own."""
    if ds.name in wpdata.names():
        return dict(wpdata.get(ds.name).augment)
    return dict(json.loads(ds.attrs.get("provenance", "{}")).get("augment", {}))


def check_dataset(ckpt: dict, ds: wpdata.CachedDataset, ckpt_path) -> None:
    """Refuse a checkpoint trained on another dataset than ``ds`` (one clear line)."""
    if ckpt["dataset"] != ds.name:
        raise WPError(f"checkpoint {ckpt_path} was trained on {ckpt['dataset']!r}, not {ds.name!r}: pass the matching data file")
