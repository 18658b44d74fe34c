"""Datasets: a registry of dataset builders and the cached HDF5 file every later stage reads."""

from __future__ import annotations

import json
from pathlib import Path

from wp.data import arrays, cifar10, digits, fashion_mnist, quickdraw  # noqa: F401  (registers the datasets)
from wp.data.arrays import register_own
from wp.data.registry import DatasetSpec, Split, get, names
from wp.data.store import CachedDataset, read


def prepare(dataset: str, data_dir: str | Path, out: str | Path, seed: int = 0, options: dict | None = None) -> dict:
    """Build the cached file ``out`` for ``dataset`` from raw files under ``data_dir``; returns a summary.

    ``options`` are the dataset's own settings (see each dataset module, e.g. wp.data.quickdraw.DEFAULTS);
    a failure raises WPError before ``out`` is touched."""
    from wp.data.store import write

    spec = arrays.spec_for(dataset, options) if arrays.is_own(options) else get(dataset)
    train, test, provenance = spec.load(Path(data_dir), seed, dict(options or {}))
    # A dataset whose class list is an option (quickdraw100) reports the list it used in its provenance.
    classes = list(provenance.get("classes", spec.classes))
    write(out, spec.name, classes, train, test, seed, provenance)
    return {"dataset": spec.name, "train": len(train.labels), "test": len(test.labels), **provenance}


def model_args(ds: CachedDataset) -> dict:
    """The network constructor's data-dependent arguments for the cached dataset ``ds``."""
    return {"in_channels": ds.channels, "num_classes": ds.num_classes, "image_size": ds.image_size}


def augment_for(ds: CachedDataset) -> dict:
    """The dataset's training augmentation: its registry entry's, or what ``prepare`` stored for a
    dataset of the user's own."""
    if ds.name in names():
        return dict(get(ds.name).augment)
    return dict(json.loads(ds.attrs.get("provenance", "{}")).get("augment", {}))


__all__ = ["register_own", "CachedDataset", "DatasetSpec", "Split", "get", "names", "prepare", "read", "model_args", "augment_for"]
