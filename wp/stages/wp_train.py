"""Stage ``wp_train``: retrain a pretrained network with its pooled layers projected onto the frozen pool.

Writes the projected model (pooled checkpoint: weights are pool vectors, plus pool, indices and the
latent weights retraining ended with; with a pool scale, :mod:`wp.pool`, the weights are the scaled
pool vectors and the checkpoint holds ``scales``) and metrics: test top-1 after retraining and the
"direct replacement" accuracy before it (both on the images ``scored_on`` names), the ``pool_scale`` of the
pool file and the ``pool_assign`` of the retraining. The checkpoint records the images wp_train chose
(``selection``, :mod:`wp.selection`). With ``pool_assign: soft`` (:mod:`wp.pool`) the retraining trains the
pool too, and the checkpoint's pool, indices and weights are the trained pool's (it records
``pool_assign``; a hard-assigned checkpoint has no such key).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from wp import checkpoint, data, models, pool, poolfile, provenance, settings
from wp.checkpoint import check_dataset
from wp.data import augment_for
from wp.io import sha256, write_json
from wp import selection
from wp.settings import setting
from wp.train import evaluate, fit, hparams, resolve_device, seed_everything, steps_per_epoch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True, help="pretrained checkpoint")
    p.add_argument("--pool", required=True, help="pool .h5 from cluster")
    p.add_argument("--network", required=True)
    settings.hparams_option(p)
    setting(p, "--pool-assign", "pool_assign")
    setting(p, "--pool-assign-tau", "pool_assign_tau", nargs=2, metavar=("START", "END"))
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", required=True)
    settings.stop_option(p)
    settings.job_options(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.data, args.checkpoint, args.pool, args.network, hparams(settings.json_object(args.hparams, "--hparams")),
        args.out, args.metrics, seed=args.seed, device=args.device, stop_after_epoch=args.stop_after_epoch,
        assign=args.pool_assign, tau=tuple(args.pool_assign_tau))


def run(data_path: str | Path, ckpt_path: str | Path, pool_path: str | Path, network: str, hp: dict,
        out_ckpt: str | Path, out_metrics: str | Path, *, seed: int, device: str, assign: str, tau: tuple[float, float],
        stop_after_epoch: int | None = None) -> dict:
    pool.check_assign(assign)
    dev = resolve_device(device)
    ds = data.read(data_path)
    ckpt = checkpoint.load(ckpt_path, network=network, kind="float")
    check_dataset(ckpt, ds.name, ckpt_path)
    pl = poolfile.read(pool_path, network=network)
    centers, layers, k, scale = pl["centers"], pl["layers"], int(pl["k"]), pl["pool_scale"]
    sel = selection.select(ds, hp, seed, "wp_train")
    train, val, test = selection.tensors(ds, sel, dev)
    seed_everything(seed)
    model = checkpoint.build(ckpt, dev)
    before = pool.indices(model, centers, layers)
    soft = pool.SoftAssignment(centers, tau, hp["epochs"] * steps_per_epoch(len(train), hp["batch_size"])) if assign == "soft" else None
    pool.attach(model, centers, layers, scale, soft=soft)
    direct = evaluate(model, test, hp["eval_batch_size"], hp["amp"])
    print(f"wp_train {network} K={k} on {ds.name}: direct replacement top-1 {direct:.2f}%, "
          f"{len(layers)} pooled layers, pool scale {scale}, {assign} assignment, {hp['epochs']} epochs, {dev}", flush=True)
    result = fit(model, train, hp, seed=seed, augment=augment_for(ds), val=val,
                 resume=f"{out_ckpt}.resume", resume_tag=f"{sha256(data_path)} {sha256(ckpt_path)} {sha256(pool_path)} {assign} {list(tau)}",
                 stop_after_epoch=stop_after_epoch, on_step=None if soft is None else lambda opt: soft.advance())
    top1 = evaluate(model, test, hp["eval_batch_size"], hp["amp"])
    centers = pool.trained_pool(model, centers)
    after = pool.indices(model, centers, layers)
    latent = checkpoint.latent_weights(model, layers)
    scales = pool.scales(model, centers, layers, scale)
    pool.detach(model)
    pool.bake(model, centers, after, scales)
    changed = sum(int((before[n] != after[n]).sum()) for n in layers)
    n_vectors = sum(len(v) for v in after.values())
    used = int(torch.unique(torch.cat([v.long() for v in after.values()])).numel())
    print(f"wp{k} {network}: test top-1 {top1:.2f}% (direct {direct:.2f}%), {changed}/{n_vectors} assignments changed, "
          f"{used}/{k} pool vectors used", flush=True)
    # the assignment and, where used, its temperatures: in the metrics and their provenance
    assigned = {"pool_assign": assign, **({"pool_assign_tau": list(tau)} if assign == "soft" else {})}
    metrics = {"stage": "wp_train", "dataset": ds.name, "network": network, "k": k, "pool_scale": scale, **assigned, "test_top1": top1,
               "direct_top1": direct, "test_images": len(test), selection.SCORED_ON: selection.digest(test), "train_images": len(train), "epochs": hp["epochs"],
               "kept_epoch": result["kept_epoch"], "seconds": result["seconds"], "hparams": hp,
               "pooled_layers": layers, "pooled_vectors": n_vectors,
               **checkpoint.pooled_summary(model.state_dict(), layers), "assignments_changed": changed,
               "pool_vectors_used": used, "history": result["history"], "provenance": provenance.collect(dev, seed, {"stage": "wp_train", "dataset": ds.name, "network": network, "k": k, "hparams": hp, "pool": pl["checkpoint_sha256"], "pool_scale": scale, **assigned})}
    checkpoint.save(out_ckpt, model, network=network, dataset=ds.name, model_args=ckpt["model_args"], kind="pooled",
                    pool=centers.clone(), pooled_layers=layers, indices=after, k=k, latent=latent,
                    selection=selection.record(sel), **checkpoint.scale_entries(scale, scales), **checkpoint.assign_entries(assign))
    write_json(out_metrics, metrics)
    return metrics
