"""Stage ``pretrain``: train the float network; write its checkpoint (with the images it chose,
:mod:`wp.selection`) and metrics JSON (``scored_on``: the digest of the test images scored)."""

from __future__ import annotations

from pathlib import Path

import torch

from wp import checkpoint, data, models, provenance
from wp.data import augment_for, model_args
from wp.io import sha256, write_json
from wp import selection
from wp.train import evaluate, fit, resolve_device, seed_everything


def run(data_path: str | Path, network: str, hp: dict, out_ckpt: str | Path, out_metrics: str | Path,
        seed: int = 0, device: str = "auto", stop_after_epoch: int | None = None) -> dict:
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
