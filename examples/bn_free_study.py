"""Which cause makes a pool of 64 fail on a network without BatchNorm, and what a pool scale does.

    python examples/bn_free_study.py DIR NETWORK PRETRAIN_EPOCHS RETRAIN_EPOCHS TRAIN_SUBSET VARIANT[,VARIANT...]

e.g. ``python examples/bn_free_study.py /tmp/study mlp3 40 15 none none,noclassifier,layer_rawkm,layer,channel``.

    python examples/bn_free_study.py demo DIR NETWORK[,NETWORK...]

runs the demo's settings instead (``smoke`` recipe, embedded Fashion-MNIST, K = 64, the paper's pooled
layers) for pool_scale none, layer and channel through the stage functions, and prints
``DEMO network {scale: wp64 top-1}``.
Network from examples/bn_free.py, embedded Fashion-MNIST, the ``fast`` recipe (pretrain with
PRETRAIN_EPOCHS, every retraining with RETRAIN_EPOCHS; TRAIN_SUBSET images or ``none`` for all), one CPU
thread, seed 0; K = 64 with every layer pooled (pool_fc). The float network is trained once and
cached in DIR. Variants (each from the same float network, printed as one ``RESULT {json}`` line):

- ``none``: the paper's method (k-means on the raw z-vectors, no scale);
- ``noclassifier``: the same without pooling the last (classifier) layer;
- ``layer`` / ``channel``: ``pool_scale`` layer / channel (k-means on normalised z-vectors);
- ``layer_rawkm`` / ``channel_rawkm``: the scale, but k-means on the raw z-vectors;
- ``layer_learned`` / ``channel_learned``: the scale a parameter trained by gradient (least-squares start);
- ``lowlr`` / ``long``: no scale, retraining at lr 0.01 / for twice the epochs;
- any of them with ``+long`` / ``+lowlr``: retraining for twice the epochs / at lr 0.01;
- any of them with ``+soft``: ``pool_assign: soft`` (softmax assignment over a trained pool, the
  temperatures of the config schema's default ``pool_assign_tau``; :mod:`wp.pool`);
- any of them with ``+seedN``: seed N for the k-means and the retraining (the float network stays seed 0);
- any of them with ``+onlyNAME``: the same pool (k-means over every layer) replaces the z-vectors of
  layer NAME alone (e.g. ``layer_learned+only1``; ``+only1-3`` for layers 1 and 3); the other layers
  stay float and retrain with it.
"""

import json
import re
import sys
from pathlib import Path

import torch

from wp import checkpoint, data, models, pool, recipes, settings
from wp.data import augment_for
from wp.kmeans import kmeans
from wp.selection import splits
from wp.stages import pretrain
from wp.train import evaluate, fit, hparams, seed_everything, steps_per_epoch

K = 64


def variant(v: str, ckpt: dict, ds, base: dict) -> dict:
    model = checkpoint.build(ckpt)
    layers = pool.pooled_layers(model, pool_fc=True)
    hp = dict(base)
    seed = int(m.group(1)) if (m := re.search(r"\+seed(\d+)", v)) else 0
    v = re.sub(r"\+seed\d+", "", v)
    only = m.group(1) if (m := re.search(r"\+only([\w.-]+)", v)) else None
    v = re.sub(r"\+only[\w.-]+", "", v)
    soft = "+soft" in v
    v = v.replace("+soft", "")
    suffix = "".join(m for m in ("+long", "+lowlr") if m in v) + ("+soft" if soft else "") + (f"+only{only}" if only else "") + (f"+seed{seed}" if seed else "")
    if "+long" in v:
        hp["epochs"], v = 2 * hp["epochs"], v.replace("+long", "")
    if "+lowlr" in v:
        hp["lr"], v = 0.01, v.replace("+lowlr", "")
    scale = v.split("_")[0] if v.split("_")[0] in ("layer", "channel") else "none"
    kmeans_scale = "none" if v.endswith("_rawkm") else scale
    if v.endswith("_learned"):
        scale = v  # the scale a parameter, initialised by least squares and trained
    if v == "noclassifier":
        layers = layers[:-1]
    if v == "lowlr":
        hp["lr"] = 0.01
    if v == "long":
        hp["epochs"] = 2 * hp["epochs"]
    vectors, counts = pool.model_vectors(model, layers, kmeans_scale)
    res = kmeans(vectors, K, seed=seed, init="kmeans++", max_iter=300, tol=1e-4)
    centers = res.centers
    # per layer: mean norm of its z-vectors (as clustered) and of the pool vectors they are assigned
    norms = {name: [round(float(v.norm(dim=1).mean()), 4), round(float(centers[lab].norm(dim=1).mean()), 4)]
             for name, v, lab in zip(layers, vectors.split(counts), res.labels.split(counts))}
    train, _, test = splits(ds, hparams(hp), 0, torch.device("cpu"))
    float_top1 = evaluate(model, test, 1024)
    seed_everything(seed)
    assign = pool.SoftAssignment(centers, settings.default("pool_assign_tau"),
                                 hp["epochs"] * steps_per_epoch(len(train), hparams(hp)["batch_size"])) if soft else None
    pool.attach(model, centers, only.split("-") if only else layers, scale, soft=assign)
    direct = evaluate(model, test, 1024)
    fit(model, train, hparams(hp), seed=seed, augment=augment_for(ds), on_step=None if assign is None else lambda opt: assign.advance())
    return {"variant": v + suffix, "float": float_top1,
            "direct": direct, "wp64": evaluate(model, test, 1024), "epochs": hp["epochs"], "lr": hp["lr"], "vectors": counts, "norms": norms}


def main(out: str, network: str, pre_epochs: str, epochs: str, subset: str, variants: str) -> None:
    torch.set_num_threads(1)
    models.load_file(Path(__file__).resolve().parent / "bn_free.py")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sub = None if subset == "none" else int(subset)
    if not (out_dir / "fm.h5").exists():
        data.prepare("fashion_mnist", "data", out_dir / "fm.h5", seed=0)
    pre = out_dir / f"{network}_pre.pt"
    if not pre.exists():
        hp = hparams({**recipes.FAST["pretrain"]["tinyconv"], "epochs": int(pre_epochs), "train_subset": sub})
        pretrain.run(out_dir / "fm.h5", network, hp, pre, out_dir / f"{network}_pre.json", seed=0, device="cpu")
    ds, ckpt = data.read(out_dir / "fm.h5"), checkpoint.load(pre)
    base = {**recipes.FAST["wp_train"]["tinyconv"], "epochs": int(epochs), "train_subset": sub}
    for v in variants.split(","):
        print("RESULT", json.dumps({"network": network, **variant(v, ckpt, ds, base)}), flush=True)


def demo(out: str, networks: str) -> None:
    from wp.stages import cluster, wp_train

    torch.set_num_threads(1)
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "fm.h5").exists():
        data.prepare("fashion_mnist", "data", d / "fm.h5", seed=0)
    cfg = {"recipe": "smoke"}
    for net in networks.split(","):
        pretrain.run(d / "fm.h5", net, recipes.resolve(cfg, "pretrain", net), d / f"demo_{net}.pt", d / f"demo_{net}.json",
                     seed=0, device="cpu")
        res = {}
        for mode in pool.SCALES:
            cluster.run(d / f"demo_{net}.pt", net, K, d / f"demo_{net}_{mode}.h5", seed=0, scale=mode, device="cpu",
                        **{arg: settings.default(f"kmeans.{arg}") for arg in ("backend", "init", "max_iter", "tol")},
                        pool_fc=settings.default("pool_fc"))
            m = wp_train.run(d / "fm.h5", d / f"demo_{net}.pt", d / f"demo_{net}_{mode}.h5", net,
                             recipes.resolve(cfg, "wp_train", net), d / f"demo_{net}_{mode}_wp.pt",
                             d / f"demo_{net}_{mode}_wp.json", seed=0, device="cpu", assign=settings.default("pool_assign"),
                             tau=tuple(settings.default("pool_assign_tau")))
            res[mode] = round(m["test_top1"], 2)
        print("DEMO", net, res, flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "demo":
        demo(*sys.argv[2:])
    elif len(sys.argv) == 7:
        main(*sys.argv[1:])
    else:
        sys.exit(__doc__)
