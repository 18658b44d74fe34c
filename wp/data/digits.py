"""scikit-learn's bundled ``digits`` (8x8 grayscale, 10 classes, 1,797 images): a tiny dataset for tests.

Pixel values 0..16 are scaled to 0..255. The train/test split is stratified and seeded (80/20).
"""

from __future__ import annotations

import numpy as np

from wp.data.registry import DatasetSpec, Split, register_dataset


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split; returns sorted (train_idx, test_idx)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load(data_dir, seed: int, options: dict) -> tuple[Split, Split, dict]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    tr, te = stratified_split(labels, 0.2, seed)
    provenance = {"source": "sklearn.datasets.load_digits", "split": "stratified 80/20", "split_seed": seed}
    return Split(images[tr], labels[tr]), Split(images[te], labels[te]), provenance


register_dataset(DatasetSpec(
    name="digits", load=load, classes=tuple(str(i) for i in range(10)), channels=1, image_size=8,
    augment={"crop_padding": 1, "flip": False},
    description="scikit-learn's bundled 8x8 digits (tiny, for tests)",
))
