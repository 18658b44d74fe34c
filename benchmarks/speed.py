"""Speed benchmark: prints, per network, images/s for pretraining, weight-pool retraining and
evaluation (float, and bit-serial LUT execution), seconds per epoch of the paper's training-set
size at that speed, the batched pool projection's cost per step, k-means seconds (ours vs
kmeans-pytorch 0.3 on the same vectors and K) with both inertias, peak GPU memory and the amp mode;
writes a CSV.

    python benchmarks/speed.py                                        # CPU-sized run (small batches, few steps)
    python benchmarks/speed.py --device cuda --batch-size 128 --steps 390 --kmeans-vectors 0 --k 128
    python benchmarks/speed.py --networks-from examples/my_network.py --networks vgg_small --shape 3 32 10

Inputs are random tensors of the paper's shapes (CIFAR-10 for the ResNets, 28x28 single-channel,
100 classes for tinyconv and mobilenet_v2): speed does not depend on the pixel values. Training
runs through ``wp.train.fit`` (the engine the stages use) with crop and flip augmentation.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wp import WPError, lutnet, models, pool, quant  # noqa: E402
from wp.kmeans import kmeans, kmeans_pytorch  # noqa: E402
from wp.train import Tensors, autocast_dtype, batch_input, evaluate, fit, hparams, resolve_device  # noqa: E402

SHAPES = {"resnet_10": (3, 32, 10), "resnet_14": (3, 32, 10), "resnet_mlperf": (3, 32, 10),
          "tinyconv": (1, 28, 100), "mobilenet_v2": (1, 28, 100)}
# training-set sizes behind the per-epoch reference times (50,000 CIFAR-10 images; 60,000 28x28 images)
EPOCH_IMAGES = {"resnet_10": 50_000, "resnet_14": 50_000, "resnet_mlperf": 50_000, "tinyconv": 60_000, "mobilenet_v2": 60_000}
AUGMENT = {"crop_padding": 4, "flip": True}
PROJECTION_REPEATS = 20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    """Wall seconds of ``fn()``, with the GPU's queued work finished before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def random_data(name: str, n: int, device: torch.device) -> Tensors:
    c, s, k = SHAPES[name]
    gen = torch.Generator().manual_seed(0)
    return Tensors(torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=gen).to(device),
                   torch.randint(0, k, (n,), generator=gen).to(device))


def new_model(name: str, device: torch.device) -> torch.nn.Module:
    c, s, k = SHAPES[name]
    torch.manual_seed(0)
    return models.create(name, in_channels=c, num_classes=k, image_size=s).to(device, memory_format=torch.channels_last)


def train_images_per_s(model: torch.nn.Module, data: Tensors, hp: dict, device: torch.device) -> float:
    """Images/s of one epoch of ``fit`` over ``data`` (after a two-step warm-up that also lets cuDNN
    pick its kernels)."""
    quiet = lambda _msg: None  # noqa: E731
    warm = 2 * hp["batch_size"]
    fit(model, Tensors(data.images[:warm], data.labels[:warm]), hp, seed=0, augment=AUGMENT, log=quiet)
    return len(data) / timed(lambda: fit(model, data, hp, seed=0, augment=AUGMENT, log=quiet), device)


def eval_images_per_s(model: torch.nn.Module, data: Tensors, hp: dict, device: torch.device, amp: str) -> float:
    """Images/s of ``evaluate`` over ``data`` under ``amp`` (after a one-batch warm-up)."""
    bs = hp["eval_batch_size"]
    evaluate(model, Tensors(data.images[:bs], data.labels[:bs]), bs, amp)
    return len(data) / timed(lambda: evaluate(model, data, bs, amp), device)


def projection_ms_per_step(model: torch.nn.Module, device: torch.device) -> float:
    """Milliseconds of the batched projection of all pooled layers, as one training step runs it
    (with gradient), averaged over a few repeats."""
    pool.projected_weights(model)
    seconds = timed(lambda: [pool.projected_weights(model) for _ in range(PROJECTION_REPEATS)], device)
    return 1000 * seconds / PROJECTION_REPEATS


def lut_eval_images_per_s(model: torch.nn.Module, centers: torch.Tensor, layers: list[str], data: Tensors,
                          hp: dict, device: torch.device) -> float:
    """Images/s of the pooled ``model`` (weights baked to pool vectors) run with bit-serial LUT
    execution (8-bit activations and table entries, ranges calibrated on one batch). Converts ``model``
    in place."""
    batch = [batch_input(data.images[: hp["eval_batch_size"]])]
    ranges = quant.calibrated_ranges(model, layers, batch, device=device, method="max")
    lut_model = lutnet.convert(model, centers, pool.indices(model, centers, layers), ranges, act_bits=8, lut_bits=8,
                               lut_mode="strict", signed_mode="twos")
    return eval_images_per_s(lut_model, data, hp, device, amp="off")  # LUT arithmetic stays exact


def kmeans_columns(model: torch.nn.Module, args, device: torch.device) -> dict:
    """k-means of the model's pooled z-vectors (all of them with ``--kmeans-vectors 0``, else a seeded
    sample): ours, and kmeans-pytorch on the same vectors unless ``--no-reference-kmeans``."""
    layers = pool.pooled_layers(model)
    vectors, _ = pool.model_vectors(model, layers)
    if 0 < args.kmeans_vectors < len(vectors):
        vectors = vectors[torch.randperm(len(vectors), generator=torch.Generator().manual_seed(0))[: args.kmeans_vectors]]
    ours = kmeans(vectors, args.k, seed=0, init="kmeans++", max_iter=args.kmeans_max_iter, tol=1e-4, device=device)
    row = {"kmeans_vectors": len(vectors), "k": args.k, "kmeans_s": ours.seconds, "kmeans_iterations": ours.iterations,
           "kmeans_converged": ours.converged,
           "kmeans_inertia": ours.inertia, "kmeans_pytorch_s": "n/a", "kmeans_pytorch_inertia": "n/a"}
    if args.reference_kmeans:
        ref = kmeans_pytorch(vectors, args.k, seed=0, device=device)
        row.update({"kmeans_pytorch_s": ref.seconds, "kmeans_pytorch_inertia": ref.inertia})
    row["_centers"] = ours.centers
    return row


def bench(name: str, args, device: torch.device) -> dict:
    """One network's row: pretraining, evaluation, k-means, then retraining with the pool attached."""
    hp = hparams({"epochs": 1, "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
                  "schedule": "constant", "amp": args.amp})
    data = random_data(name, args.batch_size * args.steps, device)
    model = new_model(name, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row = {"network": name, "device": str(device), "amp": "bf16" if autocast_dtype(args.amp, device) else "off",
           "batch_size": args.batch_size, "steps": args.steps}
    row["pretrain_img_s"] = train_images_per_s(model, data, hp, device)
    row["eval_float_img_s"] = eval_images_per_s(model, data, hp, device, hp["amp"])
    row.update(kmeans_columns(model, args, device))
    centers = row.pop("_centers").to(device)
    layers = pool.pooled_layers(model)
    pool.attach(model, centers, layers)
    row["projection_ms_per_step"] = projection_ms_per_step(model, device)
    row["pooled_vectors"] = sum(v.numel() for v in pool.projected_weights(model)) // pool.VECTOR
    row["wp_train_img_s"] = train_images_per_s(model, data, hp, device)
    pool.detach(model)
    row["eval_lut_img_s"] = lut_eval_images_per_s(model, centers, layers, data, hp, device)
    row["pretrain_epoch_s"] = EPOCH_IMAGES[name] / row["pretrain_img_s"]
    row["wp_train_epoch_s"] = EPOCH_IMAGES[name] / row["wp_train_img_s"]
    row["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else "n/a"
    return row


def show(row: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def write_csv(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", nargs="+", default=list(SHAPES), help=f"built-in: {' '.join(SHAPES)}, or your own")
    p.add_argument("--networks-from", action="append", default=[], metavar="FILE",
                   help="a Python file that registers networks of your own (as the workflow's network_modules)")
    p.add_argument("--shape", type=int, nargs=3, default=[3, 32, 10], metavar=("CHANNELS", "SIDE", "CLASSES"),
                   help="input and classes for networks of your own (default: CIFAR-10's 3 32 10)")
    p.add_argument("--epoch-images", type=int, default=50_000, help="training-set size behind the epoch times of your own networks")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=32, help="training batch (the paper recipe uses 128)")
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=4, help="timed training steps per network (390 at batch 128 is one CIFAR-10 epoch)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"], help="as the training setting amp")
    p.add_argument("--k", type=int, default=64, help="pool size for k-means")
    p.add_argument("--kmeans-vectors", type=int, default=20000, help="sample this many z-vectors for k-means (0 = all)")
    p.add_argument("--kmeans-max-iter", type=int, default=300, help="our k-means' iteration cap (the workflow's kmeans.max_iter)")
    p.add_argument("--no-reference-kmeans", dest="reference_kmeans", action="store_false", help="skip kmeans-pytorch")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("--out", default="results/benchmarks/speed.csv")
    args = p.parse_args(argv)
    try:
        models.load_files(args.networks_from)
        for name in args.networks:
            models.check_name(name)
    except WPError as exc:
        p.error(str(exc))
    for name in set(args.networks) - set(SHAPES):  # a network of the user's own
        SHAPES[name], EPOCH_IMAGES[name] = tuple(args.shape), args.epoch_images
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}", flush=True)
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__}", flush=True)
    rows = []
    for name in args.networks:
        rows.append(bench(name, args, device))
        print(show(rows[-1]), flush=True)
    write_csv(rows, Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
