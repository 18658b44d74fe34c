"""A dataset of your own from one ``.npz`` file of arrays (the layout ``keras.datasets`` returns).

Config: ``datasets: {NAME: {npz: PATH, classes: [...], augment: {crop_padding: P, flip: F}}}`` with
``NAME`` in ``experiments``. The file holds ``x_train``, ``y_train``, ``x_test``, ``y_test``:
images as uint8, ``(N, H, W)`` for grayscale or ``(N, H, W, C)`` channels-last, square; labels as
integers ``0 .. K-1``. ``classes`` (optional) names the K classes, otherwise they are ``"0" .. "K-1"``.
``augment`` (optional, default none) is the training augmentation: random crop after padding by
``crop_padding`` pixels, random horizontal flip. Every problem with the file is one line naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wp import WPError
from wp.names import NAME
from wp.data.registry import DatasetSpec, Split, names, register_dataset
from wp.io import sha256

KEYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONS = ("npz", "classes", "augment")
_OWN: set[str] = set()  # names register_own has registered (it may run again, e.g. per validation)


def is_own(options: dict | None) -> bool:
    """Whether dataset options describe a dataset of the user's own (they name an ``.npz`` file)."""
    return bool(options) and "npz" in options


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype != np.uint8:
        raise WPError(f"{path}: {key} is {x.dtype}, not uint8: store pixels 0..255 as uint8 "
                      f"(e.g. (x * 255).round().astype('uint8') for values in [0, 1])")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)  # channels-last in the file, channels-first in the cache
    else:
        raise WPError(f"{path}: {key} has shape {x.shape}: store (N, H, W) or (N, H, W, C) images")
    if x.shape[2] != x.shape[3]:
        raise WPError(f"{path}: {key} images are {x.shape[2]}x{x.shape[3]}: the networks take square images, "
                      f"crop or pad them to a square")
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray, key: str, n: int, path: Path) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise WPError(f"{path}: {key} must be {n} integer labels, one per image (it is {y.dtype} {y.shape})")
    if len(y) and y.min() < 0:
        raise WPError(f"{path}: {key} has negative labels: number the classes 0 .. K-1")
    return y.astype(np.int64)


def read_arrays(path: Path) -> tuple[Split, Split]:
    """The train and test splits of an ``.npz`` file, checked."""
    if not path.is_file():
        raise WPError(f"dataset file {path} not found: fix the npz path under datasets in your config "
                      f"(relative to the directory snakemake runs in)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in KEYS if k not in f.files]
            if missing:
                raise WPError(f"{path} lacks {', '.join(missing)}: save it with "
                              f"np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
            arrays = {k: f[k] for k in KEYS}
    except WPError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is one line naming it
        raise WPError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}): "
                      f"write it with numpy.savez") from None
    splits = []
    for part in ("train", "test"):
        x = _images(arrays[f"x_{part}"], f"x_{part}", path)
        splits.append(Split(x, _labels(arrays[f"y_{part}"], f"y_{part}", len(x), path)))
    train, test = splits
    if train.images.shape[1:] != test.images.shape[1:]:
        raise WPError(f"{path}: train images are {train.images.shape[1:]} (C, H, W) but test images "
                      f"{test.images.shape[1:]}: store both splits at one size")
    if len(train.labels) == 0 or len(test.labels) == 0:
        raise WPError(f"{path}: a split is empty: store training and test images")
    return train, test


def spec_for(name: str, options: dict) -> DatasetSpec:
    """The registry entry of dataset ``name`` described by its config ``options``."""
    if not NAME.fullmatch(name):
        raise WPError(f"config: datasets.{name}: a dataset name may hold only lowercase letters, digits and _: rename it")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise WPError(f"config: datasets.{name}: unknown option {unknown[0]!r}: a dataset of your own takes "
                      f"{', '.join(OPTIONS)}")
    path = Path(options["npz"])
    augment = {"crop_padding": 0, "flip": False, **(options.get("augment") or {})}

    def load(data_dir, seed: int, _options: dict) -> tuple[Split, Split, dict]:
        train, test = read_arrays(path)
        k = int(max(train.labels.max(), test.labels.max())) + 1
        classes = list(options.get("classes") or [str(i) for i in range(k)])
        if len(classes) < k:
            raise WPError(f"{path}: labels go up to {k - 1} but datasets.{name}.classes names only "
                          f"{len(classes)} classes: list them all")
        provenance = {"source": str(path.resolve()), "sha256": {path.name: sha256(path)}, "classes": classes,
                      "augment": augment, "split": "as stored in the file"}
        return train, test, provenance

    return DatasetSpec(name=name, load=load, classes=tuple(options.get("classes") or ()), channels=0, image_size=0,
                       augment=augment, description=f"a dataset of your own from {path}")


def register_own(datasets: dict | None) -> list[str]:
    """Register every dataset of the user's own in the config's ``datasets`` block; their names."""
    added = []
    for name, options in (datasets or {}).items():
        if not is_own(options):
            continue
        if name in names() and name not in _OWN:
            raise WPError(f"config: datasets.{name}: {name!r} is a built-in dataset: give yours another name")
        register_dataset(spec_for(name, options))
        _OWN.add(name)
        added.append(name)
    return added
