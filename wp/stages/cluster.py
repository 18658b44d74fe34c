"""Stage ``cluster``: z-vectors of the pooled layers of a pretrained network → a pool of K vectors.

The pool file (HDF5): ``centers`` (K x 8 float32), ``assignments`` (one pool index per z-vector,
layers concatenated in ``layers`` order), ``layer_vectors`` (vectors per layer); attributes
``format``, ``network``, ``dataset``, ``k``, ``seed``, ``backend``, ``init``, ``inertia``,
``iterations``, ``converged``, ``seconds``, ``pool_fc``, ``selection`` (JSON: the config's
``pooled_layers`` entry with ``pool_fc``), ``pool_scale``, ``layers`` (JSON list) and
``checkpoint_sha256``. The layers listed are exactly the layers ``wp_train`` pools. With a pool scale
(``pool_scale`` "layer" or "channel", :mod:`wp.pool`) the k-means clusters each layer's (channel's)
z-vectors normalised to unit RMS norm, and ``wp_train`` fits the scales; a file without the attribute
is a pool without scale ("none").
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from wp import WPError, checkpoint, pool
from wp.io import atomic_path, read_h5, sha256
from wp.kmeans import kmeans, kmeans_pytorch
from wp.train import resolve_device

FORMAT = "wp-pool/1"


def run(ckpt_path: str | Path, network: str, k: int, out: str | Path, *, seed: int = 0, backend: str = "torch",
        init: str = "kmeans++", max_iter: int = 300, tol: float = 1e-4, pool_fc: bool = False,
        selection: dict | None = None, scale: str = "none", device: str = "auto") -> dict:
    """``selection``: which poolable layers share the pool (:func:`wp.pool.pooled_layers`); ``pool_fc``
    applies where it does not say. ``scale``: the pool scale (:mod:`wp.pool`)."""
    if not 2 <= k <= 256:
        raise WPError(f"pool size {k} is out of range: choose 2 <= K <= 256 (an index must fit one byte)")
    pool.check_scale(scale)
    ckpt = checkpoint.load(ckpt_path, network=network, kind="float")
    model = checkpoint.build(ckpt)
    selection = {"pool_fc": pool_fc, **(selection or {})}
    layers = pool.pooled_layers(model, selection=selection, network=network)
    if not layers:
        raise WPError(f"network {network} has no poolable layers (in_channels divisible by 8): nothing to cluster")
    vectors, counts = pool.model_vectors(model, layers, scale)
    dev = resolve_device(device)
    if backend == "torch":
        res = kmeans(vectors, k, seed=seed, init=init, max_iter=max_iter, tol=tol, device=dev)
    elif backend == "kmeans_pytorch":
        res = kmeans_pytorch(vectors, k, seed=seed, tol=tol, device=dev)
    else:
        raise WPError(f"unknown k-means backend {backend!r}: use 'torch' or 'kmeans_pytorch'")
    print(f"cluster {network} K={k}: {len(vectors)} z-vectors from {len(layers)} layers, inertia {res.inertia:.2f}, "
          f"{res.iterations} iterations, {res.seconds:.2f}s ({res.backend}), pool scale {scale}", flush=True)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("centers", data=res.centers.numpy().astype(np.float32))
            f.create_dataset("assignments", data=res.labels.numpy().astype(np.int32), compression="gzip")
            f.create_dataset("layer_vectors", data=np.asarray(counts, dtype=np.int64))
            f.attrs.update({
                "format": FORMAT, "network": network, "dataset": ckpt["dataset"], "k": k, "seed": seed,
                "backend": res.backend, "init": init if backend == "torch" else "random",
                "inertia": res.inertia, "iterations": res.iterations, "converged": res.converged,
                "seconds": res.seconds, "pool_fc": selection["pool_fc"], "selection": json.dumps(selection, sort_keys=True),
                "pool_scale": scale, "layers": json.dumps(layers),
                "checkpoint_sha256": sha256(ckpt_path),
            })
    return {"k": k, "vectors": len(vectors), "inertia": res.inertia, "iterations": res.iterations}


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
