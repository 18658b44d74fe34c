"""The pool file (HDF5) that ``cluster`` writes and ``wp_train`` reads.

``centers`` (K x 8 float32), ``assignments`` (one pool index per z-vector, layers concatenated in
``layers`` order), ``layer_vectors`` (vectors per layer); attributes ``format``, ``network``,
``dataset``, ``k``, ``seed``, ``backend``, ``init``, ``inertia``, ``iterations``, ``converged``,
``seconds``, ``pool_fc``, ``selection`` (JSON: the config's ``pooled_layers`` entry with ``pool_fc``),
``pool_scale``, ``layers`` (JSON list) and ``checkpoint_sha256``. The layers listed are exactly the
layers ``wp_train`` pools. A file without ``pool_scale`` is a pool without scale ("none", :mod:`wp.pool`).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from wp import WPError, pool
from wp.io import atomic_path, read_h5

FORMAT = "wp-pool/1"


def write(path: str | Path, centers: torch.Tensor, assignments: torch.Tensor, layer_vectors, attrs: dict) -> None:
    """Write a pool file (atomically); ``attrs``: every attribute above but ``format``."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("centers", data=centers.numpy().astype(np.float32))
            f.create_dataset("assignments", data=assignments.numpy().astype(np.int32), compression="gzip")
            f.create_dataset("layer_vectors", data=np.asarray(layer_vectors, dtype=np.int64))
            f.attrs.update({"format": FORMAT, **attrs})


def read(path: str | Path, *, network: str | None = None) -> dict:
    """Load a pool file: centers (tensor), layers, and its attributes."""
    out, arrays = read_h5(path, FORMAT, "pool file", "cluster")
    out["centers"] = torch.from_numpy(arrays["centers"])
    out["assignments"] = torch.from_numpy(arrays["assignments"]).long()
    out["layers"] = json.loads(out["layers"])
    out["pool_scale"] = pool.check_scale(out.get("pool_scale", "none"))
    if network is not None and out["network"] != network:
        raise WPError(f"pool file {path} was made for network {out['network']!r}, not {network!r}: pass that network's pool")
    return out
