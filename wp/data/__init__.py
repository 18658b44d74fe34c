"""Datasets: a registry of dataset builders and the cached HDF5 file every later stage reads."""

from __future__ import annotations

from pathlib import Path

from wp.data import digits, fashion_mnist  # noqa: F401  (registers the datasets)
from wp.data.registry import DatasetSpec, Split, get, names
from wp.data.store import CachedDataset, read


def prepare(dataset: str, data_dir: str | Path, out: str | Path, seed: int = 0, options: dict | None = None) -> dict:
    """Build the cached file ``out`` for ``dataset`` from raw files under ``data_dir``; returns a summary."""
    from wp.data.store import write

    spec = get(dataset)
    train, test, provenance = spec.load(Path(data_dir), seed, options or {})
    write(out, spec.name, list(spec.classes), train, test, seed, provenance)
    return {"dataset": spec.name, "train": len(train.labels), "test": len(test.labels), **provenance}


__all__ = ["CachedDataset", "DatasetSpec", "Split", "get", "names", "prepare", "read"]
