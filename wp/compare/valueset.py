"""Comparison jobs ``compare --method valueset``: SLB-style categorical search of every weight over a value set,
warm-started from the shared pretrained network (see wp.methods.valueset)."""

from __future__ import annotations

from pathlib import Path

from wp import WPError
from wp.compare import common as compare_common
from wp.data import augment_for
from wp.methods import layers as layer_choice
from wp.methods import valueset
from wp.train import evaluate, fit, seed_everything, steps_per_epoch


def job(setting: str, options: dict, *, data_path, ckpt_path, network, hp, out_ckpt, out_metrics, seed, device,
        stop_after_epoch=None, pretrain_metrics=None) -> dict:
    """Setting: a value-set name (``pm1``); options: ``temperature`` (start, decay, min), ``sharpness``,
    ``quantize_first``, ``quantize_last``."""
    t = options["temperature"]
    return run(data_path, ckpt_path, network, hp, setting, out_ckpt, out_metrics, t0=float(t["start"]),
               decay=float(t["decay"]), t_min=float(t["min"]), sharpness=float(options["sharpness"]),
               quantize_first=bool(options["quantize_first"]), quantize_last=bool(options["quantize_last"]), seed=seed,
               device=device, stop_after_epoch=stop_after_epoch)


def run(data_path: str | Path, ckpt_path: str | Path, network: str, hp: dict, value_set: str, out_ckpt: str | Path,
        out_metrics: str | Path, *, t0: float, decay: float, t_min: float, sharpness: float, quantize_first: bool,
        quantize_last: bool, seed: int, device: str, stop_after_epoch: int | None = None) -> dict:
    vals = valueset.values(value_set)
    if sharpness < 0:
        raise WPError(f"value-set warm-start sharpness {sharpness} is negative: use 0 (the original's uniform start) or more")
    s = compare_common.start(data_path, ckpt_path, network, device)
    sel, train, val, test = compare_common.splits(s, hp, seed, "valueset")
    seed_everything(seed)
    model = s.model
    compare_common.float_top1(s, test, hp["eval_batch_size"])
    layers = layer_choice.select(model, keep_first=not quantize_first, keep_last=not quantize_last)
    params = valueset.attach(model, layers, vals.to(s.device), t0=t0, decay=decay, t_min=t_min, sharpness=sharpness)
    before = valueset.choices(model, layers)
    direct = evaluate(model, test, hp["eval_batch_size"])
    print(f"valueset {network} over {value_set} {vals.tolist()}: {len(layers)} searched layers, "
          f"start top-1 {direct:.2f}%, {hp['epochs']} epochs, {s.device}", flush=True)
    per_epoch = steps_per_epoch(len(train), hp["batch_size"])

    def advance(_optimizer) -> None:
        for p in params:
            p.advance(per_epoch)

    result = fit(model, train, hp, seed=seed, augment=augment_for(s.ds), val=val, on_step=advance, resume=f"{out_ckpt}.resume",
                 resume_tag=f"{compare_common.inputs_digest(data_path, ckpt_path)} {value_set} {t0} {decay} {t_min} "
                            f"{sharpness} {quantize_first} {quantize_last}", stop_after_epoch=stop_after_epoch)
    seconds = result["seconds"]  # a resumed job's killed runs included
    after = valueset.choices(model, layers)
    changed = sum(int((before[n] != after[n]).sum()) for n in layers)
    searched = sum(v.numel() for v in after.values())
    scales = valueset.scales(model, layers)
    temperature = float(params[0].temperature) if params else t0
    valueset.bake(model)
    top1 = evaluate(model, test, hp["eval_batch_size"])
    print(f"valueset {value_set}: {changed}/{searched} weights changed value during the search, final T {temperature:.3g}", flush=True)
    return compare_common.finish(
        s, model, method="valueset", setting=value_set, network=network, test=test, top1=top1,
        footprint=valueset.footprint(model, layers, len(vals)), retrain_epochs=hp["epochs"], seconds=seconds, hp=hp,
        seed=seed, out_ckpt=out_ckpt, out_metrics=out_metrics, sel=sel,
        details={"direct_top1": direct, "value_set": vals.tolist(), "searched_layers": layers, "scale": scales,
                 "weights_changed": changed, "weights_searched": searched, "final_temperature": temperature,
                 "temperature": {"start": t0, "decay": decay, "min": t_min}, "sharpness": sharpness, "history": result["history"]})
