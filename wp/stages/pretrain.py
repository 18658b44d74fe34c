"""Stage ``pretrain``: train the float network; write its checkpoint (with the images it chose,
:mod:`wp.selection`) and metrics JSON (``scored_on``: the digest of the test images scored)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from wp import checkpoint, data, models, provenance, settings
from wp.data import augment_for, model_args
from wp.io import sha256, write_json
from wp import selection
from wp.train import evaluate, fit, hparams, resolve_device, seed_everything


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--network", required=True)
    settings.hparams_option(p)
    p.add_argument("--out", required=True, help="checkpoint .pt")
    p.add_argument("--metrics", required=True, help="metrics .json")
    settings.stop_option(p)
    settings.job_options(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.data, args.network, hparams(settings.json_object(args.hparams, "--hparams")), args.out, args.metrics,
        seed=args.seed, device=args.device, stop_after_epoch=args.stop_after_epoch)


def run(data_path: str | Path, network: str, hp: dict, out_ckpt: str | Path, out_metrics: str | Path, *,
        seed: int, device: str, stop_after_epoch: int | None = None) -> dict:
    models.check_name(network)
    dev = resolve_device(device)
    ds = data.read(data_path)
    sel = selection.select(ds, hp, seed, "pretrain")
    train, val, test = selection.tensors(ds, sel, dev)
    seed_everything(seed)
    args = model_args(ds)
    model = models.create(network, **args).to(dev, memory_format=torch.channels_last)
    print(f"pretrain {network} on {ds.name}: {len(train)} train / {len(test)} test images, {hp['epochs']} epochs, {dev}", flush=True)
    result = fit(model, train, hp, seed=seed, augment=augment_for(ds), val=val,
                 resume=f"{out_ckpt}.resume", resume_tag=sha256(data_path), stop_after_epoch=stop_after_epoch)
    top1 = evaluate(model, test, hp["eval_batch_size"], hp["amp"])
    print(f"pretrained {network}: test top-1 {top1:.2f}%", flush=True)
    metrics = {"stage": "pretrain", "dataset": ds.name, "network": network, "test_top1": top1,
               "test_images": len(test), selection.SCORED_ON: selection.digest(test), "train_images": len(train), "epochs": hp["epochs"],
               "kept_epoch": result["kept_epoch"], "seconds": result["seconds"], "hparams": hp,
               "parameters": sum(p.numel() for p in model.parameters()), "history": result["history"],
               "provenance": provenance.collect(dev, seed, {"stage": "pretrain", "dataset": ds.name, "network": network, "hparams": hp})}
    checkpoint.save(out_ckpt, model, network=network, dataset=ds.name, model_args=args, kind="float",
                    selection=selection.record(sel))
    write_json(out_metrics, metrics)
    return metrics
