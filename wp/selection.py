"""Which images a stage trains, validates, calibrates and scores on: the one home of data selection.

**The selection settings** (``KEYS``) are the data-selection group of a stage's training settings
(``hparams.<stage>`` in the config, ``wp.recipes``): they say which images, never how to optimise.
They travel in the stage's one hyperparameter dict (the config format is unchanged), but only this
module reads them (:func:`settings` picks them out of a resolved recipe):

- ``train_subset``: training images used (a seeded, class-balanced subset); null = all
- ``test_subset``: test images scored (seeded, class-balanced); null = all. Chosen by the stages that
  start from data alone or from the float network with a pool (``pretrain``, ``wp_train``); the stages
  that start from a checkpoint of theirs score the test images recorded in it (``act_train``, the
  comparison methods, ``quant_eval``, ``export``), so their ``test_subset`` is not read
- ``selection``: ``final`` (keep the last epoch's weights) or ``best_val`` (keep the epoch with the best
  accuracy on a seeded hold-out of the training images; the test set never selects anything)
- ``val_fraction``: that hold-out's share of the training images (``best_val`` only)

Every subset is seeded from the run's ``seed`` plus a fixed offset per purpose (``OFFSETS``).

**Recorded, not re-derived.** A training stage decides its images once (:func:`select`) and stores
them in the checkpoint it writes (:func:`record`, key ``selection``: the index arrays ``train``,
``val``, ``test`` as int64 tensors, with the stage, seed and settings); a later stage reads them from
the checkpoint it starts from (:func:`recorded`): ``quant_eval`` and ``export`` calibrate on and score
wp_train's images, ``act_train`` and the comparison methods score the test images of the network they
start from, weight sharing validates on training images pretraining did not fit. A checkpoint written
before selections were recorded stops with one line naming the stage to rerun.

**Scored on.** Every metrics JSON that reports an accuracy records, under ``scored_on``
(:data:`SCORED_ON`), the :func:`digest` of the images it scored: ``sha256:`` + the SHA-256 over the
images' shape and dtype (as JSON), their uint8 bytes (N, C, H, W, in the order scored) and their
labels as int64: equal for the same images in the same order, whatever the data file or its indices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wp import WPError
from wp import data as wpdata
from wp.train import Tensors, as_float, to_device

# the selection settings of a stage's training settings, and what each means (see the module docstring)
KEYS = {
    "train_subset": "training images used (seeded, class-balanced); null = all",
    "test_subset": "test images scored (seeded, class-balanced); null = all; read by pretrain and wp_train, the later "
                   "stages score the test images recorded in the checkpoint they start from",
    "selection": "final (the last epoch's weights) or best_val (best on a seeded hold-out of the training images)",
    "val_fraction": "hold-out of the training images with selection best_val",
}

# seed offsets: the run's seed + this draws each purpose's images (subset_indices itself uses seed + 0);
# sharing_validation is weight sharing's validation draw (its own seed + 2, a purpose of its own)
OFFSETS = {"subset": 0, "validation": 1, "calibration": 2, "sweep_test": 3, "sharing_validation": 2}

SCORED_ON = "scored_on"  # the metrics key of the digest of the images an accuracy was scored on

# the stage that writes each kind of checkpoint (what to rerun when one records no selection)
_WRITER = {"float": "pretrain", "pooled": "wp_train", "compressed": "compare"}


def settings(hp: dict) -> dict:
    """The selection settings (``KEYS``) of a stage's resolved training settings."""
    missing = [k for k in KEYS if k not in hp]
    if missing:
        raise WPError(f"training settings lack the selection settings {', '.join(missing)}: resolve them with wp.recipes.resolve "
                      f"or wp.train.hparams")
    return {k: hp[k] for k in KEYS}


@dataclass(frozen=True)
class Selection:
    """The images of one stage: indices into the dataset's training split (``train``, ``val``: None
    without a hold-out) and test split (``test``), sorted; the stage that chose them, its seed and
    selection settings."""

    stage: str
    seed: int
    settings: dict
    train: np.ndarray
    val: np.ndarray | None
    test: np.ndarray

    def training_pool(self) -> np.ndarray:
        """The training subset before the hold-out (``train`` and ``val`` together): what calibration
        samples from."""
        return self.train if self.val is None else np.sort(np.concatenate([self.train, self.val]))

    def with_test(self, start: "Selection") -> "Selection":
        """This selection scoring ``start``'s test images (a stage that starts from ``start``'s checkpoint)."""
        return dataclasses.replace(self, test=start.test)


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
    hp = settings(hp)
    tr = subset_indices(ds.train.labels, hp["train_subset"], seed + OFFSETS["subset"])
    val_idx = None
    if hp["selection"] == "best_val":
        perm = np.random.default_rng(seed + OFFSETS["validation"]).permutation(tr)
        n_val = max(1, int(round(len(perm) * hp["val_fraction"])))
        val_idx, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    te = subset_indices(ds.test.labels, hp["test_subset"], seed + OFFSETS["subset"])
    return tr, val_idx, te


def select(ds: wpdata.CachedDataset, hp: dict, seed: int, stage: str) -> Selection:
    """The images ``stage`` chooses from its selection settings and seed."""
    tr, val, te = split_indices(ds, hp, seed)
    return Selection(stage, int(seed), settings(hp), tr, val, te)


def images(split: wpdata.Split, idx: np.ndarray, device: torch.device) -> Tensors:
    """The images ``idx`` of one split (``ds.train`` or ``ds.test``) on ``device``."""
    return to_device(split.images[idx], split.labels[idx], device)


def tensors(ds: wpdata.CachedDataset, sel: Selection, device: torch.device) -> tuple[Tensors, Tensors | None, Tensors]:
    """(train, validation or None, test) of ``sel`` on ``device``."""
    val = None if sel.val is None else images(ds.train, sel.val, device)
    return images(ds.train, sel.train, device), val, images(ds.test, sel.test, device)


def splits(ds: wpdata.CachedDataset, hp: dict, seed: int, device: torch.device) -> tuple[Tensors, Tensors | None, Tensors]:
    """(train, validation or None, test) on ``device``, after the recipe's subsets and hold-out."""
    return tensors(ds, select(ds, hp, seed, ""), device)


def _as_tensor(idx: np.ndarray | None) -> torch.Tensor | None:
    return None if idx is None else torch.from_numpy(np.asarray(idx, dtype=np.int64))


def record(sel: Selection) -> dict:
    """The checkpoint entry (key ``selection``) of ``sel``: loads with ``weights_only=True``."""
    return {"stage": sel.stage, "seed": sel.seed, "settings": dict(sel.settings),
            "train": _as_tensor(sel.train), "val": _as_tensor(sel.val), "test": _as_tensor(sel.test)}


def recorded(ckpt: dict, ckpt_path: str | Path) -> Selection:
    """The selection a checkpoint records; one that records none (written before stages kept it)
    stops with the stage to rerun."""
    rec = ckpt.get("selection")
    if not isinstance(rec, dict) or not all(isinstance(rec.get(k), torch.Tensor) for k in ("train", "test")):
        stage = "act_train" if ckpt.get("act_bits") is not None else _WRITER.get(ckpt.get("kind"), "pretrain")
        raise WPError(f"checkpoint {ckpt_path} records no data selection (written before stages kept the images they used): "
                      f"rerun {stage} (snakemake --forcerun {stage})")
    val = rec.get("val")
    return Selection(rec["stage"], int(rec["seed"]), dict(rec["settings"]), rec["train"].numpy(),
                     None if val is None else val.numpy(), rec["test"].numpy())


def digest(t: Tensors) -> str:
    """``sha256:`` + the SHA-256 of the images' shape and dtype, their uint8 bytes (N, C, H, W, in
    order) and their labels as int64: the ``scored_on`` value of a metrics JSON."""
    imgs = t.images.detach().cpu().contiguous()
    h = hashlib.sha256(json.dumps([list(imgs.shape), str(imgs.dtype)]).encode())
    h.update(imgs.numpy().tobytes())
    h.update(t.labels.detach().cpu().to(torch.int64).contiguous().numpy().tobytes())
    return f"sha256:{h.hexdigest()}"


def sharing_validation(n_train: int, fitted: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, bool]:
    """(indices of ``n`` validation images of a training split of ``n_train`` images, whether they were
    seen in pretraining): drawn (``seed`` + its offset) from the images the float network was not
    fitted on (``fitted``: its recorded training images) when there are enough, otherwise from all."""
    unseen = np.setdiff1d(np.arange(n_train), fitted)
    rng = np.random.default_rng(seed + OFFSETS["sharing_validation"])
    if len(unseen) >= n:
        return np.sort(rng.choice(unseen, n, replace=False)), False
    return np.sort(rng.choice(n_train, min(n, n_train), replace=False)), True


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
