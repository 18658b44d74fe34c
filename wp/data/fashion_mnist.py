"""Fashion-MNIST, the embedded default dataset (28x28 grayscale, 10 classes, 60k/10k).

Read offline from Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist) or from
torchvision's raw layout ``<data_dir>/FashionMNIST/raw``; files may be gzip-compressed or not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wp import WPError
from wp.data.idx import read_idx
from wp.data.registry import DatasetSpec, Split, register_dataset
from wp.io import sha256

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


def candidate_dirs(data_dir: str | Path) -> list[Path]:
    data_dir = Path(data_dir)
    return [data_dir / "FashionMNIST" / "raw", data_dir / "fashion-mnist", DEBIAN_DIR]


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def locate(data_dir: str | Path) -> dict[str, Path]:
    """The first candidate directory holding all four files."""
    for directory in candidate_dirs(data_dir):
        found = {key: _find(directory, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    dirs = ", ".join(str(d) for d in candidate_dirs(data_dir))
    raise WPError(
        f"Fashion-MNIST not found (looked in {dirs}): run 'apt-get install dataset-fashion-mnist' "
        f"or put the four IDX files in {Path(data_dir) / 'FashionMNIST' / 'raw'}"
    )


def load(data_dir: str | Path, seed: int, options: dict) -> tuple[Split, Split, dict]:
    files = locate(data_dir)
    arrays = {key: read_idx(path) for key, path in files.items()}
    for part in ("train", "test"):
        x, y = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
            raise WPError(f"Fashion-MNIST {part} files have shapes {x.shape} / {y.shape}, expected (n, 28, 28) / (n,): replace them")
        if y.min() < 0 or y.max() >= len(CLASSES):
            raise WPError(f"Fashion-MNIST {part} labels out of range 0..9: replace {files[f'{part}_labels']}")
    train = Split(arrays["train_images"][:, None].astype(np.uint8), arrays["train_labels"].astype(np.int64))
    test = Split(arrays["test_images"][:, None].astype(np.uint8), arrays["test_labels"].astype(np.int64))
    provenance = {"source": str(files["train_images"].parent), "sha256": {p.name: sha256(p) for p in files.values()}}
    return train, test, provenance


register_dataset(DatasetSpec(
    name="fashion_mnist", load=load, classes=CLASSES, channels=1, image_size=28,
    augment={"crop_padding": 2, "flip": True},
    description="Fashion-MNIST, read offline from Debian's dataset-fashion-mnist or torchvision's raw layout",
))
