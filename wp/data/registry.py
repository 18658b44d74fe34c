"""Dataset registry: every dataset knows how to turn its raw files into one cached HDF5 file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from wp import WPError


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (n, c, h, w) uint8
    labels: np.ndarray  # (n,) int64


@dataclass(frozen=True)
class DatasetSpec:
    """What the workflow needs to know about a dataset before preparing it."""

    name: str
    load: Callable[..., tuple[Split, Split, dict]]  # (data_dir, seed, options) -> train, test, provenance
    classes: tuple[str, ...]
    channels: int
    image_size: int
    augment: dict = field(default_factory=dict)  # defaults for wp.data.augment: crop padding, flip
    paper_name: str | None = None  # the paper's name for it, where Table 4 has values
    description: str = ""


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    _DATASETS[spec.name] = spec
    return spec


def names() -> list[str]:
    return sorted(_DATASETS)


def get(name: str) -> DatasetSpec:
    if name not in _DATASETS:
        raise WPError(f"unknown dataset {name!r}: choose one of {', '.join(names())} (fix 'dataset' in your config)")
    return _DATASETS[name]


def require_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise WPError(f"{what} directory {path} does not exist: {fix}")
    return path
