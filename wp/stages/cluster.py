"""Stage ``cluster``: z-vectors of the pooled layers of a pretrained network → a pool of K vectors,
written as a pool file (:mod:`wp.poolfile`). With a pool scale (``pool_scale`` "layer" or "channel",
:mod:`wp.pool`) the k-means clusters each layer's (channel's) z-vectors normalised to unit RMS norm,
and ``wp_train`` fits the scales.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wp import WPError, checkpoint, models, pool, poolfile, settings
from wp.io import sha256
from wp.kmeans import kmeans, kmeans_pytorch
from wp.settings import cli_only, setting
from wp.train import resolve_device


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--k", type=int, required=True)
    setting(p, "--backend", "kmeans.backend")
    setting(p, "--init", "kmeans.init")
    setting(p, "--max-iter", "kmeans.max_iter")
    setting(p, "--tol", "kmeans.tol")
    setting(p, "--pool-fc", "pool_fc")
    cli_only(p, "--layer-selection", default="{}",
             help="JSON pooled-layer selection (config key pooled_layers.<network>): include, exclude, "
                  "include_kinds, exclude_kinds, pool_fc (default {}: every poolable layer)")
    setting(p, "--pool-scale", "pool_scale")
    p.add_argument("--out", required=True, help="pool .h5")
    settings.job_options(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.checkpoint, args.network, args.k, args.out, seed=args.seed, backend=args.backend, init=args.init,
        max_iter=args.max_iter, tol=args.tol, pool_fc=args.pool_fc, scale=args.pool_scale,
        selection=settings.json_object(args.layer_selection, "--layer-selection"), device=args.device)


def run(ckpt_path: str | Path, network: str, k: int, out: str | Path, *, seed: int, backend: str, init: str,
        max_iter: int, tol: float, pool_fc: bool, scale: str, device: str, selection: dict | None = None) -> dict:
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
    poolfile.write(out, res.centers, res.labels, counts, {
        "network": network, "dataset": ckpt["dataset"], "k": k, "seed": seed,
        "backend": res.backend, "init": init if backend == "torch" else "random",
        "inertia": res.inertia, "iterations": res.iterations, "converged": res.converged,
        "seconds": res.seconds, "pool_fc": selection["pool_fc"], "selection": json.dumps(selection, sort_keys=True),
        "pool_scale": scale, "layers": json.dumps(layers),
        "checkpoint_sha256": sha256(ckpt_path),
    })
    return {"k": k, "vectors": len(vectors), "inertia": res.inertia, "iterations": res.iterations}

