"""The cached dataset file (HDF5): one file per dataset, written once by ``prepare``.

Layout: groups ``train`` and ``test``, each with ``images`` (n, c, h, w) uint8 and ``labels`` (n,)
int64; file attributes ``format``, ``dataset``, ``classes`` (JSON list), ``channels``,
``image_size``, ``seed`` and ``provenance`` (JSON: source files and their sha256).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from wp.data.registry import Split
from wp.io import atomic_path, read_h5

FORMAT = "wp-dataset/1"


@dataclass
class CachedDataset:
    name: str
    classes: list[str]
    channels: int
    image_size: int
    train: Split
    test: Split
    attrs: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def write(path: str | Path, name: str, classes: list[str], train: Split, test: Split, seed: int, provenance: dict) -> None:
    c, h, w = train.images.shape[1:]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for part, split in (("train", train), ("test", test)):
                g = f.create_group(part)
                g.create_dataset("images", data=split.images, compression="gzip", compression_opts=1, chunks=True)
                g.create_dataset("labels", data=split.labels.astype(np.int64))
            f.attrs.update({
                "format": FORMAT, "dataset": name, "classes": json.dumps(list(classes)),
                "channels": int(c), "image_size": int(h), "seed": int(seed),
                "provenance": json.dumps(provenance, sort_keys=True),
            })


def read(path: str | Path) -> CachedDataset:
    attrs, arrays = read_h5(path, FORMAT, "dataset file", "prepare")
    splits = {part: Split(arrays[f"{part}/images"], arrays[f"{part}/labels"]) for part in ("train", "test")}
    return CachedDataset(
        name=str(attrs["dataset"]), classes=json.loads(attrs["classes"]), channels=int(attrs["channels"]),
        image_size=int(attrs["image_size"]), train=splits["train"], test=splits["test"], attrs=attrs,
    )
