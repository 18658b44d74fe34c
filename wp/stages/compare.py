"""Stage ``compare``: one comparison job (method × setting × network), run by the method's module of
:mod:`wp.compare` (its registry ``METHODS``).

Settings are strings, as in file names and the table: prune → the target sparsity (``0.9``), ternary →
``weights`` or ``weights_acts``, valueset → a value-set name (``pm1``), sharing → the accuracy budget
(``0.99``). Method options (rounds, temperatures, cluster counts, ...) come as a JSON object, the
config's ``compare.<method>`` block; what it leaves out is the schema's default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import compare, models, settings
from wp.settings import cli_only
from wp.train import hparams


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=list(compare.names()))
    p.add_argument("--setting", required=True,
                   help="prune: sparsity (0.9); ternary: weights | weights_acts; valueset: set name (pm1); sharing: budget (0.99)")
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True, help="pretrained checkpoint")
    cli_only(p, "--pretrain-metrics", default=None,
             help="pretrained.json (sharing: which images pretraining used; required there, unused otherwise)")
    p.add_argument("--network", required=True)
    settings.hparams_option(p, "JSON training settings (prune: per round; sharing: unused)")
    cli_only(p, "--options", type=str, default="{}",
             help="JSON method options (config key compare.<method>; default {}: the schema's defaults)")
    p.add_argument("--out", required=True, help="compressed checkpoint .pt")
    p.add_argument("--metrics", required=True, help="metrics .json")
    settings.stop_option(p)
    settings.job_options(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    options = settings.json_object(args.options, "--options")
    hp = hparams(settings.json_object(args.hparams, "--hparams")) if args.method != "sharing" else {}
    run(args.method, args.setting, args.data, args.checkpoint, args.network, hp, options, args.out, args.metrics,
        pretrain_metrics=args.pretrain_metrics, seed=args.seed, device=args.device, stop_after_epoch=args.stop_after_epoch)


def run(method: str, setting: str, data_path: str | Path, ckpt_path: str | Path, network: str, hp: dict,
        options: dict, out_ckpt: str | Path, out_metrics: str | Path, *, seed: int, device: str,
        pretrain_metrics: str | Path | None = None, stop_after_epoch: int | None = None) -> dict:
    """``options``: the method's (missing ones are the schema's defaults of ``compare.<method>``).
    ``stop_after_epoch`` (tests): SIGKILL after that training epoch (counted over all prune rounds)."""
    job = compare.module(method).job
    return job(setting, settings.with_defaults(f"compare.{method}", options), data_path=data_path, ckpt_path=ckpt_path,
               network=network, hp=hp, out_ckpt=out_ckpt, out_metrics=out_metrics, seed=seed, device=device,
               stop_after_epoch=stop_after_epoch, pretrain_metrics=pretrain_metrics)
