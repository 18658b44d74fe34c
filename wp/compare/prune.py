"""Comparison jobs ``compare --method prune``: iterative magnitude pruning with retraining (see wp.methods.prune).

Every conv and linear weight is pruned (as Han et al.), to ``sparsity`` over ``rounds`` prune →
retrain rounds of ``hp['epochs']`` epochs each, from the shared pretrained network.

A killed job resumes where it stopped: within a round from that round's resume file (``wp.train.fit``),
and past the rounds it finished from ``{out}.round{r}`` files (the weights and history after round
``r``), which are written only under the same inputs and settings and removed once the job is done.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from wp.compare import common as compare_common
from wp.compression import weight_layers
from wp.data import augment_for
from wp.io import atomic_path
from wp.methods import prune
from wp.train import evaluate, fit, seed_everything


def round_path(out_ckpt: str | Path, r: int) -> Path:
    return Path(f"{out_ckpt}.round{r}")


def save_round(out_ckpt: str | Path, r: int, key: str, model, history: list) -> None:
    with atomic_path(round_path(out_ckpt, r)) as tmp:
        torch.save({"key": key, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "history": json.dumps(history)}, tmp)


def load_finished_rounds(out_ckpt: str | Path, rounds: int, key: str, model) -> tuple[int, list]:
    """The last round whose state file matches ``key`` (0 if none), loaded into ``model``, and the
    history up to it."""
    for r in range(rounds, 0, -1):
        path = round_path(out_ckpt, r)
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged round file only costs redoing the round
            print(f"ignoring unreadable {path} ({type(exc).__name__})", flush=True)
            continue
        if state.get("key") != key:
            print(f"ignoring {path}: it was written with other inputs or settings", flush=True)
            continue
        model.load_state_dict(state["state_dict"])
        print(f"resuming after prune round {r} of {rounds} from {path}", flush=True)
        return r, json.loads(state["history"])
    return 0, []


def job(setting: str, options: dict, *, data_path, ckpt_path, network, hp, out_ckpt, out_metrics, seed, device,
        stop_after_epoch=None, pretrain_metrics=None) -> dict:
    """Setting: the target sparsity (``0.9``); options: ``rounds``."""
    return run(data_path, ckpt_path, network, hp, compare_common.number(setting, "prune"), out_ckpt, out_metrics,
               rounds=int(options["rounds"]), seed=seed, device=device, stop_after_epoch=stop_after_epoch)


def run(data_path: str | Path, ckpt_path: str | Path, network: str, hp: dict, sparsity: float, out_ckpt: str | Path,
        out_metrics: str | Path, *, rounds: int, seed: int, device: str, stop_after_epoch: int | None = None) -> dict:
    """``stop_after_epoch`` (tests): SIGKILL after that epoch, counted over all rounds."""
    targets = prune.schedule(sparsity, rounds)
    s = compare_common.start(data_path, ckpt_path, network, device)
    sel, train, val, test = compare_common.splits(s, hp, seed, "prune")
    seed_everything(seed)
    model = s.model
    compare_common.float_top1(s, test, hp["eval_batch_size"])
    layers = list(weight_layers(model))
    print(f"prune {network} to sparsity {sparsity} in {rounds} rounds of {hp['epochs']} epochs; "
          f"{len(layers)} layers, {len(train)} train images, {s.device}", flush=True)
    tag = compare_common.inputs_digest(data_path, ckpt_path)
    key = f"{tag} sparsity {sparsity!r} rounds {rounds} seed {seed} hp {json.dumps(hp, sort_keys=True)}"
    done, history = load_finished_rounds(out_ckpt, rounds, key, model)
    for r, target in enumerate(targets, start=1):
        if r <= done:
            continue
        t_round = time.perf_counter()
        q = prune.quality([dict(model.named_modules())[n].weight for n in layers], target)
        keeper = prune.MaskKeeper(model, prune.masks(model, layers, q))
        keeper.apply()
        pruned = evaluate(model, test, hp["eval_batch_size"])
        stop = stop_after_epoch - (r - 1) * hp["epochs"] if stop_after_epoch is not None else None
        result = fit(model, train, hp, seed=seed + r, augment=augment_for(s.ds), val=val, on_step=keeper.apply,
                     resume=f"{out_ckpt}.resume{r}", resume_tag=f"{tag} round {r} of {rounds} q {q!r}",
                     stop_after_epoch=stop if stop is not None and 1 <= stop <= hp["epochs"] else None)
        keeper.apply()  # a kept best_val state or BN recalibration never un-prunes; make it explicit
        row = {"round": r, "target_sparsity": target, "q": q, "sparsity": prune.sparsity_of(model, layers),
               "pruned_top1": pruned, "retrained_top1": evaluate(model, test, hp["eval_batch_size"]),
               "history": result["history"],
               "seconds": time.perf_counter() - t_round + result["earlier_seconds"]}  # a killed run's share included
        print(f"round {r}: q {q:.3f}, sparsity {row['sparsity']:.4f}, top-1 pruned {pruned:.2f}% -> "
              f"retrained {row['retrained_top1']:.2f}%", flush=True)
        history.append(row)
        if r < rounds:
            save_round(out_ckpt, r, key, model, history)
    seconds = sum(row.get("seconds", 0.0) for row in history)  # rounds finished by earlier runs included
    top1 = history[-1]["retrained_top1"]
    modules = dict(model.named_modules())
    density = {n: float((modules[n].weight != 0).float().mean()) for n in layers}
    metrics = compare_common.finish(
        s, model, method="prune", setting=f"{sparsity:g}", network=network, test=test, top1=top1,
        footprint=prune.footprint(model, layers), retrain_epochs=rounds * hp["epochs"], seconds=seconds, hp=hp,
        seed=seed, out_ckpt=out_ckpt, out_metrics=out_metrics, sel=sel,
        details={"sparsity": prune.sparsity_of(model, layers), "han_ratio": prune.han_ratio(model), "rounds": rounds,
                 "layer_density": density, "round_history": history})
    for r in range(1, rounds):
        round_path(out_ckpt, r).unlink(missing_ok=True)
    return metrics
