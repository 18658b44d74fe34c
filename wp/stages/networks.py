"""Command ``networks`` (no rule runs it): the registered networks, their parameters, pooled layers,
z-vectors and compression ratio at K."""

from __future__ import annotations

import argparse

from wp import WPError, models
from wp.settings import cli_only, setting


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="networks to show (default: all registered)")
    cli_only(p, "--channels", type=int, default=3, help="input channels of the example shape (default: 3)")
    cli_only(p, "--image-size", type=int, default=32, help="input height = width of the example shape (default: 32)")
    cli_only(p, "--classes", type=int, default=10, help="classes of the example shape (default: 10)")
    setting(p, "--k", "sweeps.pool_size", help="pool size for the compression ratio")
    setting(p, "--pool-fc", "pool_fc")
    cli_only(p, "--config", default=None, metavar="FILE",
             help="a workflow config: its networks (default names), pool_fc and pooled_layers selections (default: none)")
    cli_only(p, "--layers", action="store_true", help="also list each network's pooled layers")


def main(args: argparse.Namespace) -> None:
    from wp.models.summary import show, summary

    models.load_files(args.networks_from)
    cfg = None
    if args.config:
        from wp import config as wpconfig

        cfg = wpconfig.load(args.config)  # also loads its network_modules
    for name in args.names:
        models.check_name(name)
    if args.k < 2 or args.channels < 1 or args.classes < 1 or args.image_size < 1:
        raise WPError("--k must be at least 2 and --channels, --classes, --image-size at least 1: fix the values")
    names = args.names or (sorted({n for nets in cfg["experiments"].values() for n in nets}) if cfg else models.names())
    rows = [summary(n, in_channels=args.channels, num_classes=args.classes, image_size=args.image_size, k=args.k,
                    pool_fc=args.pool_fc or bool(cfg and cfg["pool_fc"]),
                    selection=cfg["pooled_layers"].get(n) if cfg else None) for n in names]
    print(show(rows, args.layers))
