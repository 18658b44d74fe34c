"""Stage ``act_train``: retrain a weight-pool network with its pooled layers' inputs quantized (Table 6).

Starts from ``wp{K}.pt``: by default from its latent (unprojected) weights, as the reference does
(``start="projected"``: from the projected weights, the pool vectors themselves; both project to the
same network, they differ in where the gradient steps accumulate). The activation range of every pooled layer is calibrated on training images
(a power of two, see :func:`wp.quant.calibrated_ranges`) and then fixed; training runs with the pool projection attached (latent
weights, straight-through) and every pooled layer's input fake-quantized to ``act_bits``, with the
straight-through estimator by default (``ste=False``: the reference's zero gradient through ``round``).
The checkpoint (kind ``pooled``) carries the quantizers (:class:`wp.quant.ActQuantizer`: bit width, range,
signedness) in its ``state_dict``, so ``quant_eval`` scores it with the same quantizers, from the lookup table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import WPError, checkpoint, data, models, pool, provenance, quant, settings
from wp.checkpoint import check_dataset
from wp.data import augment_for
from wp.io import sha256, write_json
from wp.lutnet import act_ranges, load_pooled
from wp import selection
from wp.settings import setting
from wp.train import evaluate, fit, hparams, resolve_device, seed_everything

START = ("latent", "projected")  # act_train's starting weights: wp_train's latent ones or the projected ones


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True, help="wp{K}.pt")
    p.add_argument("--network", required=True)
    p.add_argument("--act-bits", type=int, required=True)
    setting(p, "--no-ste", "sweeps.table6.ste", negate=True, dest="ste",
            help="the reference's zero gradient through round() instead of the straight-through estimator")
    setting(p, "--start", "sweeps.table6.start")
    setting(p, "--calibration-images", "sweeps.calibration_images")
    setting(p, "--act-range", "sweeps.act_range")
    settings.hparams_option(p)
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", required=True)
    settings.stop_option(p)
    settings.job_options(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.data, args.checkpoint, args.network, args.act_bits, hparams(settings.json_object(args.hparams, "--hparams")),
        args.out, args.metrics, ste=args.ste, calibration_images=args.calibration_images, act_range=args.act_range,
        start=args.start, seed=args.seed, device=args.device, stop_after_epoch=args.stop_after_epoch)


def run(data_path: str | Path, ckpt_path: str | Path, network: str, act_bits: int, hp: dict,
        out_ckpt: str | Path, out_metrics: str | Path, *, ste: bool, calibration_images: int, act_range: str,
        start: str, seed: int, device: str, stop_after_epoch: int | None = None) -> dict:
    if not 2 <= act_bits <= 16:
        raise WPError(f"activation bits {act_bits} out of range: choose 2..16")
    if start not in START:
        raise WPError(f"unknown act_train start {start!r}: use {' or '.join(START)}")
    dev = resolve_device(device)
    ds = data.read(data_path)
    ckpt, model = load_pooled(ckpt_path, network, dev)
    if ckpt.get("act_bits") is not None:
        raise WPError(f"{ckpt_path} is already retrained for {ckpt['act_bits']}-bit activations: start from the wp{ckpt['k']}.pt checkpoint")
    check_dataset(ckpt, ds.name, ckpt_path)
    if start == "latent":
        checkpoint.require_latent(ckpt, ckpt_path)
    sel = selection.select(ds, hp, seed, "act_train").with_test(selection.recorded(ckpt, ckpt_path))  # wp_train's test images
    train, val, test = selection.tensors(ds, sel, dev)
    seed_everything(seed)
    centers, layers, k = ckpt["pool"], ckpt["pooled_layers"], int(ckpt["k"])
    scale, ckpt_scales = checkpoint.pool_scale(ckpt)
    assign = checkpoint.pool_assign(ckpt)  # the trained pool of a soft one is ckpt["pool"]: retrained hard here
    ranges = act_ranges(ckpt, model, train, calibration_images, seed, bits=act_bits, method=act_range)
    if start == "latent":  # after calibration, which runs the projected network; the latents project to it
        checkpoint.load_latent(model, ckpt, ckpt_path)
    pool.attach(model, centers, layers, scale, init_scales=ckpt_scales)
    quant.attach_input_quantizers(model, ranges, act_bits, ste=ste)  # kept: the checkpoint's state_dict holds them
    before = evaluate(model, test, hp["eval_batch_size"])
    print(f"act_train {network} K={k} {act_bits}-bit activations ({'STE' if ste else 'no gradient through round'}): "
          f"before {before:.2f}%, {hp['epochs']} epochs, {dev}", flush=True)
    result = fit(model, train, hp, seed=seed, augment=augment_for(ds), val=val, resume=f"{out_ckpt}.resume",
                 resume_tag=f"{sha256(data_path)} {sha256(ckpt_path)} {act_bits} {ste} {start}", stop_after_epoch=stop_after_epoch)
    top1 = evaluate(model, test, hp["eval_batch_size"])
    indices = pool.indices(model, centers, layers)
    scales = pool.scales(model, centers, layers, scale)
    pool.detach(model)
    pool.bake(model, centers, indices, scales)
    print(f"act_train {network} {act_bits}-bit: test top-1 {top1:.2f}% (before {before:.2f}%)", flush=True)
    json_ranges = {n: [a, s] for n, (a, s) in ranges.items()}
    metrics = {"stage": "act_train", "dataset": ds.name, "network": network, "k": k, "pool_scale": scale,
               "pool_assign": assign,
               "act_bits": act_bits, "ste": ste, "start": start,
               "test_top1": top1, "before_top1": before, "test_images": len(test), selection.SCORED_ON: selection.digest(test), "train_images": len(train),
               "epochs": hp["epochs"], "kept_epoch": result["kept_epoch"], "seconds": result["seconds"], "hparams": hp,
               "act_ranges": json_ranges, "history": result["history"],
               "provenance": provenance.collect(dev, seed, {"stage": "act_train", "dataset": ds.name, "network": network, "k": k,
                                                            "act_bits": act_bits, "ste": ste, "act_range": act_range, "start": start,
                                                            "hparams": hp})}
    checkpoint.save(out_ckpt, model, network=network, dataset=ds.name, model_args=ckpt["model_args"], kind="pooled",
                    pool=centers.clone(), pooled_layers=layers, indices=indices, k=k, act_bits=act_bits,
                    act_ste=ste, selection=selection.record(sel), **checkpoint.scale_entries(scale, scales),
                    **checkpoint.assign_entries(assign))
    write_json(out_metrics, metrics)
    return metrics
