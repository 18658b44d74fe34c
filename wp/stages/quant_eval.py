"""Stage ``quant_eval``: one point of the precision sweeps (Tables 5 and 6).

Evaluates a weight-pool checkpoint (``wp{K}.pt``, or one retrained with quantized activations by
``act_train``) with every pooled layer's input quantized to ``act_bits`` and the layer run bit-serially
from the lookup table quantized to ``lut_bits`` (``None``: no table, the quantized activations times
the float pool weights). Activation ranges come from the checkpoint when it was retrained with them,
otherwise they are calibrated for ``act_bits`` on training images (never the test set). The test images are the ones
``wp_train`` scored (same ``test_subset`` and seed), so the numbers sit beside Table 4's; with ``test_images``
(``sweeps.test_images``) a seeded class-balanced subset of them, the same for every sweep point.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from wp import WPError, checkpoint, data, lutnet, provenance, quant
from wp.io import write_json
from wp.stages.common import check_dataset, seed_everything, splits
from wp.train import Tensors, as_float, evaluate, resolve_device, subset_indices


def calibration_batches(train: Tensors, images: int, seed: int, batch_size: int = 256):
    """A seeded sample of ``images`` training images, as float batches (no augmentation)."""
    n = min(images, len(train))
    order = np.sort(np.random.default_rng(seed + 2).permutation(len(train))[:n])
    idx = torch.from_numpy(order).to(train.images.device)
    for start in range(0, n, batch_size):
        yield as_float(train.images[idx[start:start + batch_size]])


def load_pooled(ckpt_path: str | Path, network: str, device: torch.device) -> tuple[dict, torch.nn.Module]:
    """A pooled checkpoint and its model on ``device``, its weights checked against pool and indices."""
    ckpt = checkpoint.load(ckpt_path, network=network, kind="pooled")
    model = checkpoint.build(ckpt, device).eval()
    lutnet.check_indices(model, ckpt["pool"], ckpt["indices"], checkpoint.pool_scale(ckpt)[1])
    return ckpt, model


def check_trained_bits(ckpt: dict, act_bits: int, ckpt_path) -> int | None:
    """A checkpoint retrained by ``act_train`` runs only at its own bit width; returns that width (or None)."""
    trained_bits = ckpt.get("act_bits")
    if trained_bits is not None and trained_bits != act_bits:
        raise WPError(f"checkpoint {ckpt_path} was retrained for {trained_bits}-bit activations, not {act_bits}: use it at {trained_bits} bits")
    return trained_bits


def act_ranges(ckpt: dict, model: torch.nn.Module, train: Tensors, images: int, seed: int, *, bits: int,
               method: str = "mse") -> dict[str, tuple[float, bool]]:
    """The checkpoint's own ranges (retrained with them) or ranges calibrated on training images for
    ``bits``-bit activations (``method``: see :func:`wp.quant.calibrated_ranges`)."""
    if ckpt.get("act_ranges"):
        return {name: (float(a), bool(s)) for name, (a, s) in ckpt["act_ranges"].items()}
    if method not in quant.RANGE_METHODS:
        raise WPError(f"unknown activation range method {method!r}: use one of {', '.join(quant.RANGE_METHODS)}")
    return lutnet.calibrate(model, ckpt["pooled_layers"], calibration_batches(train, images, seed), method=method, bits=bits)


def sweep_test_set(test: Tensors, images: int | None, seed: int) -> Tensors:
    """The test images a sweep point scores: all of ``test`` (``images`` None), else a seeded class-balanced
    subset of ``images`` of them (the same for every point of a config)."""
    if images is None or images >= len(test):
        return test
    if images < 1:
        raise WPError(f"sweeps.test_images {images} must be at least 1 (or null for all of wp_train's test images)")
    keep = torch.from_numpy(subset_indices(test.labels.cpu().numpy(), images, seed + 3)).to(test.labels.device)
    return Tensors(test.images[keep], test.labels[keep])


def run(data_path: str | Path, ckpt_path: str | Path, network: str, act_bits: int, lut_bits: int | None,
        hp: dict, out_metrics: str | Path, *, lut_mode: str = "strict", signed_mode: str = "twos",
        calibration_images: int = 512, act_range: str = "mse", seed: int = 0, device: str = "auto",
        test_images: int | None = None) -> dict:
    if not 2 <= act_bits <= 16:
        raise WPError(f"activation bits {act_bits} out of range: choose 2..16")
    if lut_bits is not None and not 2 <= lut_bits <= 32:
        raise WPError(f"LUT bits {lut_bits} out of range: choose 2..32 (or none for no table)")
    dev = resolve_device(device)
    ds = data.read(data_path)
    ckpt, model = load_pooled(ckpt_path, network, dev)
    check_dataset(ckpt, ds, ckpt_path)
    trained_bits = check_trained_bits(ckpt, act_bits, ckpt_path)
    train, _, test = splits(ds, {**hp, "selection": "final"}, seed, dev)
    test = sweep_test_set(test, test_images, seed)
    seed_everything(seed)
    float_top1 = evaluate(model, test, hp["eval_batch_size"])
    ranges = act_ranges(ckpt, model, train, calibration_images, seed, bits=act_bits, method=act_range)
    scale, scales = checkpoint.pool_scale(ckpt)
    lutnet.convert(model, ckpt["pool"], ckpt["indices"], ranges, act_bits, lut_bits,
                   lut_mode=lut_mode, signed_mode=signed_mode, use_table=lut_bits is not None, scales=scales)
    t0 = time.perf_counter()
    top1 = evaluate(model, test, hp["eval_batch_size"])
    seconds = time.perf_counter() - t0
    lut_name = "no LUT" if lut_bits is None else f"{lut_bits}-bit LUT"
    print(f"quant_eval {network} K={ckpt['k']} {act_bits}-bit activations, {lut_name}"
          f"{' (retrained)' if trained_bits else ''}: test top-1 {top1:.2f}% (float {float_top1:.2f}%), "
          f"{len(test) / seconds:.0f} img/s", flush=True)
    metrics = {"stage": "quant_eval", "dataset": ds.name, "network": network, "k": int(ckpt["k"]), "pool_scale": scale,
               "act_bits": act_bits, "lut_bits": lut_bits, "lut_mode": lut_mode, "signed_mode": signed_mode,
               "retrained": trained_bits is not None, "selection": hp["selection"],
               **checkpoint.pooled_summary(ckpt["state_dict"], ckpt["pooled_layers"]), "test_top1": top1, "float_top1": float_top1,
               "test_images": len(test), "seconds": seconds, "images_per_s": len(test) / seconds,
               "act_ranges": {n: [a, s] for n, (a, s) in ranges.items()},
               "calibration": "checkpoint" if ckpt.get("act_ranges") else f"{act_range} over {min(calibration_images, len(train))} training images",
               "provenance": provenance.collect(dev, seed, {"stage": "quant_eval", "dataset": ds.name, "network": network,
                                                            "k": int(ckpt["k"]), "act_bits": act_bits, "lut_bits": lut_bits,
                                                            "lut_mode": lut_mode, "signed_mode": signed_mode, "act_range": act_range,
                                                            "test_images": test_images, "hparams": hp})}
    write_json(out_metrics, metrics)
    return metrics
