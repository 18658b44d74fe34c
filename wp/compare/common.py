"""What every comparison job shares: start from the pretrained float network, write the results.

Each comparison job (one method, one setting, one network) writes the compressed model as a
checkpoint of kind ``compressed`` (weights as the values the method stores, e.g. ``α·t`` or the
centroids, so ``checkpoint.build`` evaluates it) and a metrics JSON: ``stage: compare``, ``method``,
``setting``, ``test_top1``, ``float_top1``, ``retrain_epochs``, ``seconds``, ``device``, ``hparams``,
``footprint`` (bytes and ratio vs fp32 and int8), ``scored_on`` (:func:`wp.selection.digest`), method details
and provenance. A job scores the test images the pretrained checkpoint records (``Start.selection``), the
float network's own, and its checkpoint records the job's selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from wp import WPError, checkpoint, data, provenance, selection
from wp.checkpoint import check_dataset
from wp.compression import Footprint
from wp.io import sha256, write_json
from wp.train import Tensors, evaluate, resolve_device


@dataclass
class Start:
    """A comparison job's starting point: the data, the float network and where it runs."""

    ds: data.CachedDataset
    ckpt: dict
    model: nn.Module
    device: torch.device
    selection: selection.Selection  # the images pretraining chose (its test images are every job's)
    float_top1: float | None = None


def start(data_path: str | Path, ckpt_path: str | Path, network: str, device: str) -> Start:
    dev = resolve_device(device)
    ds = data.read(data_path)
    ckpt = checkpoint.load(ckpt_path, network=network, kind="float")
    check_dataset(ckpt, ds.name, ckpt_path)
    return Start(ds, ckpt, checkpoint.build(ckpt, dev), dev, selection.recorded(ckpt, ckpt_path))


def splits(s: Start, hp: dict, seed: int, method: str) -> tuple[selection.Selection, Tensors, Tensors | None, Tensors]:
    """A retraining job's selection (its training images from its settings, the float network's test
    images) and its (train, validation or None, test) images on the job's device."""
    sel = selection.select(s.ds, hp, seed, method).with_test(s.selection)
    return (sel, *selection.tensors(s.ds, sel, s.device))


def inputs_digest(*paths: str | Path) -> str:
    """The resume tag of a job: the sha256 of each input file."""
    return " ".join(sha256(p) for p in paths)


def finish(s: Start, model: nn.Module, *, method: str, setting: str, network: str, test: Tensors, top1: float,
           footprint: Footprint, retrain_epochs: int, seconds: float, hp: dict, seed: int, out_ckpt: str | Path,
           out_metrics: str | Path, details: dict, sel: selection.Selection) -> dict:
    """Save the compressed model and the metrics JSON (both atomically); return the metrics."""
    fp = footprint.summary()
    print(f"{method} {setting} {network}: test top-1 {top1:.2f}% (float {s.float_top1:.2f}%), "
          f"{fp['ratio_fp32']:.2f}x vs fp32, {fp['ratio_int8']:.2f}x vs int8", flush=True)
    metrics = {"stage": "compare", "method": method, "setting": setting, "dataset": s.ds.name, "network": network,
               "test_top1": top1, "float_top1": s.float_top1, "test_images": len(test),
               selection.SCORED_ON: selection.digest(test), "retrain_epochs": retrain_epochs,
               "seconds": seconds, "device": provenance.device_name(s.device), "hparams": hp, "footprint": fp, **details,
               "provenance": provenance.collect(s.device, seed, {"stage": "compare", "method": method, "setting": setting,
                                                                 "dataset": s.ds.name, "network": network, "hparams": hp})}
    checkpoint.save(out_ckpt, model, network=network, dataset=s.ds.name, model_args=s.ckpt["model_args"],
                    kind="compressed", method=method, setting=setting,
                    selection=selection.record(sel))
    write_json(out_metrics, metrics)
    return metrics


def float_top1(s: Start, test: Tensors, batch_size: int) -> float:
    s.float_top1 = evaluate(s.model, test, batch_size)
    return s.float_top1


def number(setting: str, what: str) -> float:
    """A numeric setting string (prune's sparsity, sharing's budget)."""
    try:
        return float(setting)
    except ValueError:
        raise WPError(f"{what} setting {setting!r} is not a number: pass e.g. 0.9") from None
