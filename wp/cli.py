"""``python -m wp <command>``: one subcommand per workflow stage (and rule).

Every command exits 0 on success; on bad input it prints one line ``wp: error: ...`` naming the
problem and the fix, and exits 2, leaving existing outputs untouched.
"""

from __future__ import annotations

import argparse
import json
import sys

from wp import WPError


def _hparams(text: str) -> dict:
    from wp.train import hparams

    try:
        return hparams(json.loads(text))
    except json.JSONDecodeError as exc:
        raise WPError(f"--hparams is not valid JSON ({exc}): pass a JSON object") from exc


def _json_object(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WPError(f"{option} is not valid JSON ({exc}): pass a JSON object") from exc
    if not isinstance(value, dict):
        raise WPError(f"{option} must be a JSON object, got {text!r}: pass e.g. '{{\"exclude\": [\"*downsample*\"]}}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks-from", action="append", default=[], metavar="FILE",
                   help="a Python file that registers networks of your own with @wp.models.register (repeatable; "
                        "config key network_modules)")
    sub = p.add_subparsers(dest="command", required=True)

    def deployed(sp, lut_default, lut_help, hparams_help):
        """The arguments of the network run the deployed way (quant_eval, export)."""
        sp.add_argument("--data", required=True)
        sp.add_argument("--checkpoint", required=True, help="wp{K}.pt, or a checkpoint from act_train (it carries its ranges)")
        sp.add_argument("--network", required=True)
        sp.add_argument("--act-bits", type=int, required=True)
        sp.add_argument("--lut-bits", default=lut_default, help=lut_help)
        sp.add_argument("--lut-mode", default="strict", choices=["strict", "reference"])
        sp.add_argument("--signed-mode", default="twos", choices=["twos", "split"])
        sp.add_argument("--calibration-images", type=int, default=512)
        sp.add_argument("--act-range", default="mse", choices=["mse", "max"],
                        help="activation range per layer: least squared error (mse) or max |input|, as a power of two")
        sp.add_argument("--hparams", type=str, default="{}", help=hparams_help)

    def common(sp, device=True):
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (results depend on it; default: torch's, one per core)")
        if device:
            sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    sp = sub.add_parser("prepare", help="raw dataset → cached HDF5 file")
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--data-dir", default="data")
    sp.add_argument("--options", default="{}", help="JSON dataset options (config key datasets.<name>)")
    sp.add_argument("--fetch-options", default="{}",
                    help="JSON {dataset: options} of download settings, merged into --options for this dataset")
    sp.add_argument("--out", required=True)
    common(sp, device=False)

    sp = sub.add_parser("pretrain", help="train the float network")
    sp.add_argument("--data", required=True)
    sp.add_argument("--network", required=True)
    sp.add_argument("--hparams", type=str, default="{}", help="JSON training settings (see wp.train)")
    sp.add_argument("--out", required=True, help="checkpoint .pt")
    sp.add_argument("--metrics", required=True, help="metrics .json")
    sp.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    common(sp)

    sp = sub.add_parser("cluster", help="k-means weight pool of K vectors")
    sp.add_argument("--checkpoint", required=True)
    sp.add_argument("--network", required=True)
    sp.add_argument("--k", type=int, required=True)
    sp.add_argument("--backend", default="torch", choices=["torch", "kmeans_pytorch"])
    sp.add_argument("--init", default="kmeans++", choices=["kmeans++", "random"])
    sp.add_argument("--max-iter", type=int, default=300)
    sp.add_argument("--tol", type=float, default=1e-4)
    sp.add_argument("--pool-fc", action="store_true")
    sp.add_argument("--layer-selection", default="{}",
                    help="JSON pooled-layer selection (config key pooled_layers.<network>): include, exclude, "
                         "include_kinds, exclude_kinds, pool_fc")
    sp.add_argument("--pool-scale", default="none", choices=["none", "layer", "channel", "layer_learned", "channel_learned"],
                    help="a scale per pooled layer or output channel, fitted or *_learned (k-means on normalised z-vectors)")
    sp.add_argument("--out", required=True, help="pool .h5")
    common(sp)

    sp = sub.add_parser("wp_train", aliases=["wp-train"], help="retrain with the frozen pool")
    sp.add_argument("--data", required=True)
    sp.add_argument("--checkpoint", required=True, help="pretrained checkpoint")
    sp.add_argument("--pool", required=True, help="pool .h5 from cluster")
    sp.add_argument("--network", required=True)
    sp.add_argument("--hparams", type=str, default="{}")
    sp.add_argument("--out", required=True)
    sp.add_argument("--metrics", required=True)
    sp.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    common(sp)

    sp = sub.add_parser("table4", help="tables/table4.csv from metrics files")
    sp.add_argument("--metrics", nargs="+", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--md", default=None)

    sp = sub.add_parser("plots", help="figures: accuracy vs pool size, training curves")
    sp.add_argument("--table4", required=True)
    sp.add_argument("--metrics", nargs="+", required=True)
    sp.add_argument("--pool-png", required=True)
    sp.add_argument("--curves-png", required=True)

    # ---- the deployed network: precision sweeps and tables 3, 5, 6 (issue 4) ----
    sp = sub.add_parser("quant_eval", aliases=["quant-eval"],
                        help="evaluate a pooled network with quantized activations from the bit-serial LUT")
    deployed(sp, "none", "LUT entry bits, or 'none' for no table", "JSON settings of wp_train (its test subset is scored)")
    sp.add_argument("--test-images", type=int, default=None,
                    help="score a seeded class-balanced subset of this many of wp_train's test images (default: all)")
    sp.add_argument("--metrics", required=True)
    common(sp)

    sp = sub.add_parser("act_train", aliases=["act-train"], help="retrain a pooled network with quantized activations")
    sp.add_argument("--data", required=True)
    sp.add_argument("--checkpoint", required=True, help="wp{K}.pt")
    sp.add_argument("--network", required=True)
    sp.add_argument("--act-bits", type=int, required=True)
    sp.add_argument("--no-ste", action="store_true", help="the reference's zero gradient through round()")
    sp.add_argument("--start", default="latent", choices=["latent", "projected"],
                    help="start from wp_train's latent weights (the reference) or from the projected ones")
    sp.add_argument("--calibration-images", type=int, default=512)
    sp.add_argument("--act-range", default="mse", choices=["mse", "max"],
                    help="activation range per layer: least squared error (mse) or max |input|, as a power of two")
    sp.add_argument("--hparams", type=str, default="{}")
    sp.add_argument("--out", required=True)
    sp.add_argument("--metrics", required=True)
    sp.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    common(sp)

    sp = sub.add_parser("table3", help="tables/table3.csv: storage and compression from wp checkpoints")
    sp.add_argument("--checkpoints", nargs="+", required=True)
    sp.add_argument("--lut-bits", type=int, default=8)
    sp.add_argument("--out", required=True)
    sp.add_argument("--md", default=None)

    sp = sub.add_parser("table8", help="tables/table8.csv: distinct pool vectors per input vector, per pooled layer")
    sp.add_argument("--checkpoints", nargs="+", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--md", default=None)

    sp = sub.add_parser("table5", help="tables/table5.csv: accuracy vs LUT bits")
    sp.add_argument("--evals", nargs="+", required=True, help="quant_eval metrics")
    sp.add_argument("--wp-metrics", nargs="+", required=True, help="wp_train metrics (the float column)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--md", default=None)

    sp = sub.add_parser("table6", help="tables/table6.csv: accuracy vs activation bits")
    sp.add_argument("--evals", nargs="+", required=True, help="quant_eval metrics (plain and retrained)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--md", default=None)

    sp = sub.add_parser("sweep_plots", aliases=["sweep-plots"], help="figures: accuracy vs LUT bits and vs activation bits")
    sp.add_argument("--table5", required=True)
    sp.add_argument("--table6", required=True)
    sp.add_argument("--lut-png", required=True)
    sp.add_argument("--act-png", required=True)
    sp = sub.add_parser("export", help="a pooled checkpoint → deployable arrays (.npz), manifest (.json) and C header (.h)")
    deployed(sp, "8", "LUT entry bits (2..16)", "JSON settings of wp_train (its training subset is sampled)")
    sp.add_argument("--out-npz", required=True)
    sp.add_argument("--out-json", required=True)
    sp.add_argument("--out-h", required=True)
    common(sp)

    # --- comparison with related methods (issue 7) ---
    sp = sub.add_parser("compare", help="one comparison job: prune, ternary, valueset or sharing from the float network")
    sp.add_argument("--method", required=True, choices=["prune", "ternary", "valueset", "sharing"])
    sp.add_argument("--setting", required=True,
                    help="prune: sparsity (0.9); ternary: weights | weights_acts; valueset: set name (pm1); sharing: budget (0.99)")
    sp.add_argument("--data", required=True)
    sp.add_argument("--checkpoint", required=True, help="pretrained checkpoint")
    sp.add_argument("--pretrain-metrics", default=None, help="pretrained.json (sharing: which images pretraining used)")
    sp.add_argument("--network", required=True)
    sp.add_argument("--hparams", type=str, default="{}", help="JSON training settings (prune: per round)")
    sp.add_argument("--options", type=str, default="{}", help="JSON method options (config key compare.<method>)")
    sp.add_argument("--out", required=True, help="compressed checkpoint .pt")
    sp.add_argument("--metrics", required=True, help="metrics .json")
    sp.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    common(sp)

    sp = sub.add_parser("compare_table", aliases=["compare-table"], help="tables/compare.csv + .md and the Pareto plot")
    sp.add_argument("--metrics", nargs="+", required=True, help="pretrained.json, wp{K}.json and compare metrics")
    sp.add_argument("--checkpoints", nargs="+", required=True, help="pretrained.pt and wp{K}.pt (for the footprints)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--md", default=None)
    sp.add_argument("--png", required=True)
    # --- end comparison ---

    sp = sub.add_parser("networks", help="the registered networks: parameters, pooled layers, z-vectors, ratio at K")
    sp.add_argument("names", nargs="*", help="networks to show (default: all registered)")
    sp.add_argument("--channels", type=int, default=3)
    sp.add_argument("--image-size", type=int, default=32)
    sp.add_argument("--classes", type=int, default=10)
    sp.add_argument("--k", type=int, default=64, help="pool size for the compression ratio")
    sp.add_argument("--pool-fc", action="store_true")
    sp.add_argument("--config", default=None, metavar="FILE",
                    help="a workflow config: its networks (default names), pool_fc and pooled_layers selections")
    sp.add_argument("--layers", action="store_true", help="also list each network's pooled layers")

    # --- Cortex-M3 runtime measured by emulation (issue 18) ---
    def mcu_common(sp):
        sp.add_argument("--build", required=True, help="directory for the generated headers and images")
        sp.add_argument("--cpi", type=float, default=1.6, help="cycles per instruction of the cycle estimate")
        sp.add_argument("--wait-states", type=int, default=3, help="flash wait states of the cycle estimate")
        sp.add_argument("--seed", type=int, default=0)

    sp = sub.add_parser("mcu_table7", aliases=["mcu-table7"], help="tables/table7.csv: networks on an emulated Cortex-M3")
    sp.add_argument("--networks", nargs="+", required=True)
    sp.add_argument("--pools", nargs="+", type=int, default=[64, 32])
    sp.add_argument("--lut-bits", type=int, default=8)
    sp.add_argument("--variant", default="auto", choices=["auto", "plain", "cache", "precompute"])
    sp.add_argument("--min-bits", default="paper", choices=["paper", "table6"])
    sp.add_argument("--table6", help="tables/table6.csv (with --min-bits table6)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--md", required=True)
    mcu_common(sp)
    sp = sub.add_parser("mcu_figure7", aliases=["mcu-figure7"], help="figure 7: LUT caching and precomputation")
    sp.add_argument("--filters", nargs="+", type=int, required=True)
    sp.add_argument("--size", type=int, default=16)
    sp.add_argument("--k", type=int, default=64)
    sp.add_argument("--bits", type=int, default=8)
    sp.add_argument("--out", required=True)
    sp.add_argument("--png", required=True)
    mcu_common(sp)
    sp = sub.add_parser("mcu_figure8", aliases=["mcu-figure8"], help="figure 8: speedup vs activation bits")
    sp.add_argument("--channels", type=int, default=128)
    sp.add_argument("--bits", nargs="+", type=int, required=True)
    sp.add_argument("--size", type=int, default=16)
    sp.add_argument("--k", type=int, default=64)
    sp.add_argument("--out", required=True)
    sp.add_argument("--png", required=True)
    mcu_common(sp)
    # --- end Cortex-M3 runtime ---

    sp = sub.add_parser("check-config", help="validate a config file, print it with defaults filled in")
    sp.add_argument("configfile")
    return p


def dispatch(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        # exactly the threads asked for, however many cores this process may use: torch's CPU results
        # depend on the thread count, so it must come from the config, never from the machine or --cores
        torch.set_num_threads(args.threads)
    cmd = args.command.replace("-", "_")
    if cmd == "prepare":  # needs no network: it returns before the user's network files are loaded
        from wp.stages import prepare

        try:
            options = {**json.loads(args.fetch_options).get(args.dataset, {}), **json.loads(args.options)}
        except (json.JSONDecodeError, AttributeError) as exc:
            raise WPError(f"--options/--fetch-options are not valid JSON objects ({exc}): fix them") from exc
        prepare.run(args.dataset, args.data_dir, args.out, seed=args.seed, options=options)
        return
    if args.networks_from:
        from wp import models

        models.load_files(args.networks_from)
    if cmd == "pretrain":
        from wp.stages import pretrain

        pretrain.run(args.data, args.network, _hparams(args.hparams), args.out, args.metrics, seed=args.seed, device=args.device,
                     stop_after_epoch=args.stop_after_epoch)
    elif cmd == "cluster":
        from wp.stages import cluster

        cluster.run(args.checkpoint, args.network, args.k, args.out, seed=args.seed, backend=args.backend, init=args.init,
                    max_iter=args.max_iter, tol=args.tol, pool_fc=args.pool_fc, scale=args.pool_scale,
                    selection=_json_object(args.layer_selection, "--layer-selection"), device=args.device)
    elif cmd == "wp_train":
        from wp.stages import wp_train

        wp_train.run(args.data, args.checkpoint, args.pool, args.network, _hparams(args.hparams), args.out, args.metrics,
                     seed=args.seed, device=args.device, stop_after_epoch=args.stop_after_epoch)
    elif cmd == "table4":
        from wp.stages import table4

        table4.run(args.metrics, args.out, args.md)
    elif cmd == "plots":
        from wp.stages import plots

        plots.run(args.table4, args.metrics, args.pool_png, args.curves_png)
    elif cmd == "quant_eval":
        from wp.stages import quant_eval
        from wp.sweeps import parse_lut

        quant_eval.run(args.data, args.checkpoint, args.network, args.act_bits, parse_lut(args.lut_bits), _hparams(args.hparams),
                       args.metrics, lut_mode=args.lut_mode, signed_mode=args.signed_mode,
                       calibration_images=args.calibration_images, act_range=args.act_range, seed=args.seed, device=args.device,
                       test_images=args.test_images)
    elif cmd == "act_train":
        from wp.stages import act_train

        act_train.run(args.data, args.checkpoint, args.network, args.act_bits, _hparams(args.hparams), args.out, args.metrics,
                      ste=not args.no_ste, calibration_images=args.calibration_images, act_range=args.act_range,
                      start=args.start,
                      seed=args.seed, device=args.device,
                      stop_after_epoch=args.stop_after_epoch)
    elif cmd == "table3":
        from wp.stages import table3

        table3.run(args.checkpoints, args.out, args.md, lut_bits=args.lut_bits)
    elif cmd == "table8":
        from wp.stages import table8

        table8.run(args.checkpoints, args.out, args.md)
    elif cmd == "table5":
        from wp.stages import table5

        table5.run(args.evals, args.wp_metrics, args.out, args.md)
    elif cmd == "table6":
        from wp.stages import table6

        table6.run(args.evals, args.out, args.md)
    elif cmd == "sweep_plots":
        from wp.stages import sweep_plots

        sweep_plots.run(args.table5, args.table6, args.lut_png, args.act_png)
    elif cmd == "export":
        from wp.stages import export
        from wp.sweeps import parse_lut

        export.run(args.data, args.checkpoint, args.network, args.act_bits, parse_lut(args.lut_bits), _hparams(args.hparams),
                   args.out_npz, args.out_json, args.out_h, lut_mode=args.lut_mode, signed_mode=args.signed_mode,
                   calibration_images=args.calibration_images, act_range=args.act_range, seed=args.seed, device=args.device)
    # --- comparison with related methods (issue 7) ---
    elif cmd == "compare":
        from wp.stages import compare

        try:
            options = json.loads(args.options)
        except json.JSONDecodeError as exc:
            raise WPError(f"--options is not valid JSON ({exc}): pass a JSON object") from exc
        compare.run(args.method, args.setting, args.data, args.checkpoint, args.network,
                    _hparams(args.hparams) if args.method != "sharing" else {}, options, args.out, args.metrics,
                    pretrain_metrics=args.pretrain_metrics, seed=args.seed, device=args.device,
                    stop_after_epoch=args.stop_after_epoch)
    elif cmd == "compare_table":
        from wp.stages import compare_table

        compare_table.run(args.metrics, args.checkpoints, args.out, args.md, args.png)
    # --- end comparison ---
    elif cmd == "networks":
        from wp import models
        from wp.models.summary import show, summary

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
    # --- Cortex-M3 runtime (issue 18) ---
    elif cmd == "mcu_table7":
        from wp.stages import mcu

        mcu.run_table7(args.networks, args.pools, args.lut_bits, args.variant, args.min_bits, args.out, args.md, args.build,
                       table6_csv=args.table6, cpi=args.cpi, wait_states=args.wait_states, seed=args.seed)
    elif cmd == "mcu_figure7":
        from wp.stages import mcu

        mcu.run_figure7(args.filters, args.size, args.k, args.bits, args.out, args.png, args.build, cpi=args.cpi,
                        wait_states=args.wait_states, seed=args.seed)
    elif cmd == "mcu_figure8":
        from wp.stages import mcu

        mcu.run_figure8(args.channels, args.bits, args.size, args.k, args.out, args.png, args.build, cpi=args.cpi,
                        wait_states=args.wait_states, seed=args.seed)
    # --- end Cortex-M3 runtime ---
    elif cmd == "check_config":
        from wp import config

        print(json.dumps(config.load(args.configfile), indent=2))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        dispatch(args)
    except WPError as exc:
        print(f"wp: error: {exc}", file=sys.stderr)
        return 2
    return 0
