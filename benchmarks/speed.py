"""Speed benchmark: prints, per network, images/s for pretraining, weight-pool retraining and
evaluation, the pool projection's cost per step, k-means seconds (ours vs kmeans-pytorch 0.3 on the
same vectors and K) with both inertias, and peak GPU memory; writes a CSV.

    python benchmarks/speed.py                      # CPU-sized run (small batches, few steps)
    python benchmarks/speed.py --device cuda --steps 50 --kmeans-vectors 0   # on a GPU, all vectors

Inputs are random tensors of the paper's shapes (CIFAR-10 for the ResNets, QuickDraw-100 for
tinyconv and mobilenet_v2): speed does not depend on the pixel values. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wp import models, pool  # noqa: E402
from wp.kmeans import kmeans, kmeans_pytorch  # noqa: E402
from wp.train import Tensors, evaluate, fit, hparams, resolve_device  # noqa: E402

SHAPES = {"resnet_10": (3, 32, 10), "resnet_14": (3, 32, 10), "resnet_mlperf": (3, 32, 10),
          "tinyconv": (1, 28, 100), "mobilenet_v2": (1, 28, 100)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def bench(name: str, args, device: torch.device) -> dict:
    c, s, k = SHAPES[name]
    n = args.batch_size * args.steps
    gen = torch.Generator().manual_seed(0)
    data = Tensors(torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=gen).to(device),
                   torch.randint(0, k, (n,), generator=gen).to(device))
    hp = hparams({"epochs": 1, "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size, "schedule": "constant"})
    model = models.create(name, in_channels=c, num_classes=k, image_size=s).to(device, memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    quiet = lambda _msg: None  # noqa: E731
    fit(model, Tensors(data.images[: 2 * args.batch_size], data.labels[: 2 * args.batch_size]), hp, seed=0, augment={}, log=quiet)  # warm-up
    t_pre = timed(lambda: fit(model, data, hp, seed=0, augment={"crop_padding": 4, "flip": True}, log=quiet), device)
    t_eval = timed(lambda: evaluate(model, data, args.eval_batch_size), device)

    layers = pool.pooled_layers(model)
    vectors, _ = pool.model_vectors(model, layers)
    sub = vectors if args.kmeans_vectors <= 0 else vectors[torch.randperm(len(vectors), generator=gen)[: args.kmeans_vectors]]
    ours = kmeans(sub, args.k, seed=0, device=device)
    row = {"network": name, "device": str(device), "batch_size": args.batch_size,
           "pretrain_img_s": n / t_pre, "eval_img_s": n / t_eval,
           "kmeans_vectors": len(sub), "k": args.k, "kmeans_s": ours.seconds, "kmeans_iterations": ours.iterations,
           "kmeans_inertia": ours.inertia}
    if args.reference_kmeans:
        ref = kmeans_pytorch(sub, args.k, seed=0, device=device)
        row.update({"kmeans_pytorch_s": ref.seconds, "kmeans_pytorch_inertia": ref.inertia})
    pool.attach(model, ours.centers.to(device), layers)
    t_proj = timed(lambda: [dict(model.named_modules())[l].weight for l in layers], device)
    t_wp = timed(lambda: fit(model, data, hp, seed=0, augment={"crop_padding": 4, "flip": True}, log=quiet), device)
    row.update({"wp_train_img_s": n / t_wp, "projection_ms_per_step": 1000 * t_proj,
                "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None})
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--kmeans-vectors", type=int, default=20000, help="subsample for k-means (0 = all)")
    p.add_argument("--no-reference-kmeans", dest="reference_kmeans", action="store_false")
    p.add_argument("--out", default="results/benchmarks/speed.csv")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    rows = []
    for name in args.networks:
        row = bench(name, args, device)
        rows.append(row)
        print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
