"""Comparison jobs ``compare --method sharing``: retraining-free per-layer weight sharing (see wp.methods.sharing).

The search is scored on a validation split of ``val_images`` training images, drawn (seeded) from the
training images the float network did *not* train on when there are enough of them (the pretrain
recipe used a subset or held some out), otherwise from the whole training set (then the metrics say
``validation_seen_in_training: true``): :func:`wp.selection.sharing_validation` over the training images
the pretrained checkpoint records. The test set, the same images the float network was scored on (the
checkpoint's too), is used once, for the final choice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from wp import WPError, selection
from wp.compare import common as compare_common
from wp.compression import weight_layers
from wp.methods import sharing
from wp.train import evaluate, seed_everything


def job(setting: str, options: dict, *, data_path, ckpt_path, network, hp, out_ckpt, out_metrics, seed, device,
        stop_after_epoch=None, pretrain_metrics=None) -> dict:
    """Setting: the accuracy budget (``0.99``); options: ``clusters``, ``val_images``, ``max_iter``. No
    training (``hp``, ``stop_after_epoch`` unused); needs the float network's metrics."""
    if pretrain_metrics is None:
        raise WPError("sharing needs the float network's metrics: pass --pretrain-metrics pretrained.json")
    return run(data_path, ckpt_path, pretrain_metrics, network, compare_common.number(setting, "sharing"), out_ckpt, out_metrics,
               clusters=[int(k) for k in options["clusters"]], val_images=int(options["val_images"]),
               max_iter=int(options["max_iter"]), seed=seed, device=device)


def run(data_path: str | Path, ckpt_path: str | Path, pretrain_metrics: str | Path, network: str, budget: float,
        out_ckpt: str | Path, out_metrics: str | Path, *, clusters: list[int] | tuple[int, ...], val_images: int,
        max_iter: int, seed: int, device: str) -> dict:
    sharing.check_budget(budget)
    if not clusters or min(clusters) < 2:
        raise WPError(f"sharing cluster counts {list(clusters)} are invalid: give a list of integers >= 2")
    try:
        pre = json.loads(Path(pretrain_metrics).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WPError(f"pretrain metrics {pretrain_metrics} are missing or corrupt ({exc}): rerun pretrain") from exc
    s = compare_common.start(data_path, ckpt_path, network, device)
    val_idx, seen = selection.sharing_validation(len(s.ds.train.labels), s.selection.train, val_images, seed)
    sel = selection.Selection("sharing", seed, s.selection.settings, s.selection.train, val_idx, s.selection.test)
    val, test = selection.images(s.ds.train, val_idx, s.device), selection.images(s.ds.test, sel.test, s.device)
    bs = pre["hparams"].get("eval_batch_size", 1024)
    seed_everything(seed)
    model = s.model
    compare_common.float_top1(s, test, bs)
    t0 = time.perf_counter()
    base_val = evaluate(model, val, bs)
    modules = weight_layers(model)
    names = list(modules)
    originals = {n: modules[n].weight.detach().clone() for n in names}
    shared = {(n, k): sharing.share(originals[n], k, max_iter) for n in names for k in sorted(set(clusters))}
    print(f"sharing {network}: {len(names)} layers x {len(set(clusters))} cluster counts, {len(val)} validation images "
          f"({'seen' if seen else 'not seen'} in pretraining), float val top-1 {base_val:.2f}%, budget {budget}", flush=True)

    @torch.no_grad()
    def set_weights(choice: dict[str, sharing.Option]) -> None:
        for n in names:
            opt = choice.get(n)
            modules[n].weight.copy_(originals[n] if opt is None or opt.k == 0 else shared[(n, opt.k)][0])

    sweep = []
    for n in names:
        for k in sorted(set(clusters)):
            set_weights({n: sharing.Option(k, shared[(n, k)][1], 0.0)})
            sweep.append({"layer": n, "k": k, "k_used": shared[(n, k)][1], "val_top1": evaluate(model, val, bs)})
    set_weights({})
    options = {n: sharing.candidates(sweep, n, base_val, budget) for n in names}

    def score(choice: dict[str, sharing.Option]) -> float:
        set_weights(choice)
        return evaluate(model, val, bs)

    choice, val_top1, evaluations = sharing.greedy(options, {n: modules[n].weight.numel() for n in names}, base_val,
                                                   budget, score, resolution=100.0 / len(val))
    set_weights(choice)
    seconds = time.perf_counter() - t0
    top1 = evaluate(model, test, bs)
    k_used = {n: c.k_used for n, c in choice.items() if c.k > 0}
    print(f"sharing {network}: {len(k_used)}/{len(names)} layers shared, val top-1 {val_top1:.2f}% "
          f"(needs >= {budget * base_val:.2f}%), {len(sweep)} sweep + {evaluations} search evaluations", flush=True)
    return compare_common.finish(
        s, model, method="sharing", setting=f"{budget:g}", network=network, test=test, top1=top1,
        footprint=sharing.footprint(model, k_used), retrain_epochs=0, seconds=seconds, hp={"eval_batch_size": bs},
        seed=seed, out_ckpt=out_ckpt, out_metrics=out_metrics, sel=sel,
        details={"budget": budget, "float_val_top1": base_val, "val_top1": val_top1, "val_images": len(val),
                 "validation_seen_in_training": seen, "clusters": sorted(set(clusters)),
                 "layer_clusters": {n: c.k_used for n, c in choice.items()}, "sweep": sweep,
                 "sweep_evaluations": len(sweep), "search_evaluations": evaluations})
