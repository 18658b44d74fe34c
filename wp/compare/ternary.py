"""Comparison jobs ``compare --method ternary``: ternary weights (TWN), optionally ternary activations (TWTA-Net),
retrained with a straight-through estimator from the shared pretrained network (see wp.methods.ternary)."""

from __future__ import annotations

from pathlib import Path

from wp import WPError
from wp.compare import common as compare_common
from wp.data import augment_for
from wp.methods import layers as layer_choice
from wp.methods import ternary
from wp.train import evaluate, fit, seed_everything

SETTINGS = {"weights": False, "weights_acts": True}  # setting -> ternary activations too


def job(setting: str, options: dict, *, data_path, ckpt_path, network, hp, out_ckpt, out_metrics, seed, device,
        stop_after_epoch=None, pretrain_metrics=None) -> dict:
    """Setting: ``weights`` or ``weights_acts``; no options."""
    if setting not in SETTINGS:
        raise WPError(f"ternary setting {setting!r} is unknown: use {' or '.join(SETTINGS)}")
    return run(data_path, ckpt_path, network, hp, out_ckpt, out_metrics, activations=SETTINGS[setting], seed=seed,
               device=device, stop_after_epoch=stop_after_epoch)


def run(data_path: str | Path, ckpt_path: str | Path, network: str, hp: dict, out_ckpt: str | Path,
        out_metrics: str | Path, *, activations: bool, seed: int, device: str,
        stop_after_epoch: int | None = None) -> dict:
    s = compare_common.start(data_path, ckpt_path, network, device)
    sel, train, val, test = compare_common.splits(s, hp, seed, "ternary")
    seed_everything(seed)
    model = s.model
    compare_common.float_top1(s, test, hp["eval_batch_size"])
    layers = layer_choice.select(model, keep_first=True, keep_last=True)
    ternary.attach(model, layers, activations=activations)
    direct = evaluate(model, test, hp["eval_batch_size"])
    print(f"ternary {network} ({'weights and activations' if activations else 'weights'}): {len(layers)} ternary layers, "
          f"direct top-1 {direct:.2f}%, {hp['epochs']} epochs, {s.device}", flush=True)
    result = fit(model, train, hp, seed=seed, augment=augment_for(s.ds), val=val, resume=f"{out_ckpt}.resume",
                 resume_tag=f"{compare_common.inputs_digest(data_path, ckpt_path)} activations {activations}",
                 stop_after_epoch=stop_after_epoch)
    seconds = result["seconds"]  # a resumed job's killed runs included
    ternary.bake(model)
    top1 = evaluate(model, test, hp["eval_batch_size"])  # the activation quantizers stay on
    modules = dict(model.named_modules())
    alphas = {n: float(modules[n].weight.detach().abs().max()) for n in layers}
    zeros = {n: float((modules[n].weight.detach() == 0).float().mean()) for n in layers}
    return compare_common.finish(
        s, model, method="ternary", setting="weights_acts" if activations else "weights", network=network, test=test,
        top1=top1, footprint=ternary.footprint(model, layers), retrain_epochs=hp["epochs"], seconds=seconds, hp=hp,
        seed=seed, out_ckpt=out_ckpt, out_metrics=out_metrics, sel=sel,
        details={"direct_top1": direct, "ternary_activations": activations, "ternary_layers": layers,
                 "alpha": alphas, "zero_fraction": zeros, "history": result["history"]})
