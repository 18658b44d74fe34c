"""Which images a stage trains, validates, calibrates and scores on: the one home of data selection.

Every subset is seeded from the run's ``seed`` plus a fixed offset per purpose (``OFFSETS``), so two
stages that need the same images (wp_train's test set and quant_eval's) derive the same ones, and no
stage re-derives them by hand.
"""

from __future__ import annotations

import numpy as np
import torch

from wp import WPError
from wp import data as wpdata
from wp.train import Tensors, as_float, to_device

# seed offsets: the run's seed + this draws each purpose's images (subset_indices itself uses seed + 0)
OFFSETS = {"subset": 0, "validation": 1, "calibration": 2, "sweep_test": 3}


def subset_indices(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """A seeded, class-balanced subset of ``n`` indices (all of them when n is None or too large),
    returned in their original order."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    # interleave the classes (one of each in turn) so every class gets its share of the n
    longest = max(len(idx) for idx in per_class)
    interleaved = [idx[i] for i in range(longest) for idx in per_class if i < len(idx)]
    return np.sort(np.asarray(interleaved[:n]))


def split_indices(ds: wpdata.CachedDataset, hp: dict, seed: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(train, validation or None, test) indices into the dataset's splits, after the recipe's subsets
    (``train_subset``, ``test_subset``) and, with ``selection: best_val``, the ``val_fraction`` hold-out."""
    tr = subset_indices(ds.train.labels, hp["train_subset"], seed + OFFSETS["subset"])
    val_idx = None
    if hp["selection"] == "best_val":
        perm = np.random.default_rng(seed + OFFSETS["validation"]).permutation(tr)
        n_val = max(1, int(round(len(perm) * hp["val_fraction"])))
        val_idx, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    te = subset_indices(ds.test.labels, hp["test_subset"], seed + OFFSETS["subset"])
    return tr, val_idx, te


def splits(ds: wpdata.CachedDataset, hp: dict, seed: int, device: torch.device) -> tuple[Tensors, Tensors | None, Tensors]:
    """(train, validation or None, test) on ``device``, after the recipe's subsets and hold-out."""
    tr, val_idx, te = split_indices(ds, hp, seed)
    val = None if val_idx is None else to_device(ds.train.images[val_idx], ds.train.labels[val_idx], device)
    train = to_device(ds.train.images[tr], ds.train.labels[tr], device)
    test = to_device(ds.test.images[te], ds.test.labels[te], device)
    return train, val, test


def calibration_batches(train: Tensors, images: int, seed: int, batch_size: int = 256):
    """A seeded sample of ``images`` training images, as float batches (no augmentation)."""
    n = min(images, len(train))
    order = np.sort(np.random.default_rng(seed + OFFSETS["calibration"]).permutation(len(train))[:n])
    idx = torch.from_numpy(order).to(train.images.device)
    for start in range(0, n, batch_size):
        yield as_float(train.images[idx[start:start + batch_size]])


def sweep_test_set(test: Tensors, images: int | None, seed: int) -> Tensors:
    """The test images a sweep point scores: all of ``test`` (``images`` None), else a seeded class-balanced
    subset of ``images`` of them (the same for every point of a config)."""
    if images is None or images >= len(test):
        return test
    if images < 1:
        raise WPError(f"sweeps.test_images {images} must be at least 1 (or null for all of wp_train's test images)")
    keep = torch.from_numpy(subset_indices(test.labels.cpu().numpy(), images, seed + OFFSETS["sweep_test"]))
    keep = keep.to(test.labels.device)
    return Tensors(test.images[keep], test.labels[keep])
