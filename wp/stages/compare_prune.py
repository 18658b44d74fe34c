"""Stage ``compare --method prune``: iterative magnitude pruning with retraining (see wp.methods.prune).

Every conv and linear weight is pruned (as Han et al.), to ``sparsity`` over ``rounds`` prune →
retrain rounds of ``hp['epochs']`` epochs each, from the shared pretrained network.
"""

from __future__ import annotations

import time
from pathlib import Path

from wp.compression import weight_layers
from wp.methods import prune
from wp.methods.steps import after_every_step
from wp.stages import compare_common
from wp.stages.common import augment_for, seed_everything, splits
from wp.train import evaluate, fit


def run(data_path: str | Path, ckpt_path: str | Path, network: str, hp: dict, sparsity: float, out_ckpt: str | Path,
        out_metrics: str | Path, *, rounds: int = 3, seed: int = 0, device: str = "auto") -> dict:
    targets = prune.schedule(sparsity, rounds)
    s = compare_common.start(data_path, ckpt_path, network, device)
    train, val, test = splits(s.ds, hp, seed, s.device)
    seed_everything(seed)
    model = s.model
    compare_common.float_top1(s, test, hp["eval_batch_size"])
    layers = list(weight_layers(model))
    print(f"prune {network} to sparsity {sparsity} in {rounds} rounds of {hp['epochs']} epochs; "
          f"{len(layers)} layers, {len(train)} train images, {s.device}", flush=True)
    tag = compare_common.inputs_digest(data_path, ckpt_path)
    t0 = time.perf_counter()
    history = []
    for r, target in enumerate(targets, start=1):
        q = prune.quality([dict(model.named_modules())[n].weight for n in layers], target)
        keeper = prune.MaskKeeper(model, prune.masks(model, layers, q))
        keeper.apply()
        pruned = evaluate(model, test, hp["eval_batch_size"])
        with after_every_step(keeper.apply):
            result = fit(model, train, hp, seed=seed + r, augment=augment_for(s.ds), val=val,
                         resume=f"{out_ckpt}.resume{r}", resume_tag=f"{tag} round {r} of {rounds} q {q!r}")
        keeper.apply()  # a kept best_val state or BN recalibration never un-prunes; make it explicit
        row = {"round": r, "target_sparsity": target, "q": q, "sparsity": prune.sparsity_of(model, layers),
               "pruned_top1": pruned, "retrained_top1": evaluate(model, test, hp["eval_batch_size"]),
               "history": result["history"]}
        print(f"round {r}: q {q:.3f}, sparsity {row['sparsity']:.4f}, top-1 pruned {pruned:.2f}% -> "
              f"retrained {row['retrained_top1']:.2f}%", flush=True)
        history.append(row)
    seconds = time.perf_counter() - t0
    top1 = history[-1]["retrained_top1"]
    modules = dict(model.named_modules())
    density = {n: float((modules[n].weight != 0).float().mean()) for n in layers}
    return compare_common.finish(
        s, model, method="prune", setting=f"{sparsity:g}", network=network, test=test, top1=top1,
        footprint=prune.footprint(model, layers), retrain_epochs=rounds * hp["epochs"], seconds=seconds, hp=hp,
        seed=seed, out_ckpt=out_ckpt, out_metrics=out_metrics,
        details={"sparsity": prune.sparsity_of(model, layers), "han_ratio": prune.han_ratio(model), "rounds": rounds,
                 "layer_density": density, "round_history": history})
