"""Stage ``quant_eval``: one point of the precision sweeps (Tables 5 and 6).

Evaluates a weight-pool checkpoint (``wp{K}.pt``, or one retrained with quantized activations by
``act_train``) with every pooled layer's input quantized to ``act_bits`` and the layer run bit-serially
from the lookup table quantized to ``lut_bits`` (``None``: no table, the quantized activations times
the float pool weights). Activation ranges come from the checkpoint when it was retrained with them,
otherwise they are calibrated for ``act_bits`` on training images (never the test set). The images are the
ones the checkpoint records (:func:`wp.selection.recorded`): wp_train's test images, so the numbers sit beside
Table 4's (``scored_on`` in both metrics says so); with ``test_images`` (``sweeps.test_images``) a seeded
class-balanced subset of them, the same for every sweep point; calibration samples wp_train's training images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wp import WPError, checkpoint, data, lutnet, models, provenance, quant, settings
from wp.checkpoint import check_dataset
from wp.io import write_json
from wp.lutnet import act_ranges, check_trained_bits, load_pooled
from wp import selection
from wp.selection import sweep_test_set
from wp.settings import setting
from wp.sweeps import parse_lut
from wp.train import evaluate, hparams, resolve_device, seed_everything


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True, help="wp{K}.pt, or a checkpoint from act_train (it carries its ranges)")
    p.add_argument("--network", required=True)
    p.add_argument("--act-bits", type=int, required=True)
    p.add_argument("--lut-bits", required=True, help="LUT entry bits, or 'none' for no table")
    setting(p, "--lut-mode", "sweeps.lut_mode")
    setting(p, "--signed-mode", "sweeps.signed_mode")
    setting(p, "--calibration-images", "sweeps.calibration_images")
    setting(p, "--act-range", "sweeps.act_range")
    settings.hparams_option(p, "JSON settings of wp_train (its test subset is scored)")
    setting(p, "--test-images", "sweeps.test_images")
    p.add_argument("--metrics", required=True)
    settings.job_options(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.data, args.checkpoint, args.network, args.act_bits, parse_lut(args.lut_bits),
        hparams(settings.json_object(args.hparams, "--hparams")), args.metrics, lut_mode=args.lut_mode,
        signed_mode=args.signed_mode, calibration_images=args.calibration_images, act_range=args.act_range,
        seed=args.seed, device=args.device, test_images=args.test_images)


def run(data_path: str | Path, ckpt_path: str | Path, network: str, act_bits: int, lut_bits: int | None,
        hp: dict, out_metrics: str | Path, *, lut_mode: str, signed_mode: str, calibration_images: int,
        act_range: str, seed: int, device: str, test_images: int | None) -> dict:
    if not 2 <= act_bits <= 16:
        raise WPError(f"activation bits {act_bits} out of range: choose 2..16")
    if lut_bits is not None and not 2 <= lut_bits <= 32:
        raise WPError(f"LUT bits {lut_bits} out of range: choose 2..32 (or none for no table)")
    dev = resolve_device(device)
    ds = data.read(data_path)
    ckpt, model = load_pooled(ckpt_path, network, dev)
    check_dataset(ckpt, ds.name, ckpt_path)
    trained_bits = check_trained_bits(ckpt, act_bits, ckpt_path)
    sel = selection.recorded(ckpt, ckpt_path)
    train, test = selection.images(ds.train, sel.training_pool(), dev), selection.images(ds.test, sel.test, dev)
    test = sweep_test_set(test, test_images, seed)
    seed_everything(seed)
    with quant.disabled(model):  # a retrained checkpoint's quantizers are attached: the float network without them
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
               "pool_assign": checkpoint.pool_assign(ckpt), "act_bits": act_bits, "lut_bits": lut_bits, "lut_mode": lut_mode, "signed_mode": signed_mode,
               "retrained": trained_bits is not None, "selection": sel.settings["selection"],
               **checkpoint.pooled_summary(ckpt["state_dict"], ckpt["pooled_layers"]), "test_top1": top1, "float_top1": float_top1,
               "test_images": len(test), selection.SCORED_ON: selection.digest(test), "seconds": seconds, "images_per_s": len(test) / seconds,
               "act_ranges": {n: [a, s] for n, (a, s) in ranges.items()},
               "calibration": "checkpoint" if trained_bits is not None else f"{act_range} over {min(calibration_images, len(train))} training images",
               "provenance": provenance.collect(dev, seed, {"stage": "quant_eval", "dataset": ds.name, "network": network,
                                                            "k": int(ckpt["k"]), "act_bits": act_bits, "lut_bits": lut_bits,
                                                            "lut_mode": lut_mode, "signed_mode": signed_mode, "act_range": act_range,
                                                            "test_images": test_images, "hparams": hp})}
    write_json(out_metrics, metrics)
    return metrics
