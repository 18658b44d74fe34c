"""``python -m wp <command>``: one subcommand per workflow stage (and rule), plus ``networks`` and ``check-config``.

Every command exits 0 on success; on bad input it prints one line ``wp: error: ...`` naming the
problem and the fix, and exits 2, leaving existing outputs untouched.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from wp import WPError
from wp.settings import setting

# (command, module, aliases, help): each module declares its arguments (``add_arguments(parser)``) and
# runs them (``main(args)``) next to its ``run``. A literal: wp.codedeps reads it to find each command's code.
COMMANDS = (
    ("prepare", "wp.stages.prepare", (), "raw dataset → cached HDF5 file"),
    ("pretrain", "wp.stages.pretrain", (), "train the float network"),
    ("cluster", "wp.stages.cluster", (), "k-means weight pool of K vectors"),
    ("wp_train", "wp.stages.wp_train", ("wp-train",), "retrain with the frozen pool"),
    ("table4", "wp.stages.table4", (), "tables/table4.csv from metrics files"),
    ("plots", "wp.stages.plots", (), "figures: accuracy vs pool size, training curves"),
    # the deployed network: precision sweeps and tables 3, 5, 6 (issue 4)
    ("quant_eval", "wp.stages.quant_eval", ("quant-eval",),
     "evaluate a pooled network with quantized activations from the bit-serial LUT"),
    ("act_train", "wp.stages.act_train", ("act-train",), "retrain a pooled network with quantized activations"),
    ("table3", "wp.stages.table3", (), "tables/table3.csv: storage and compression from wp checkpoints"),
    ("table8", "wp.stages.table8", (), "tables/table8.csv: distinct pool vectors per input vector, per pooled layer"),
    ("table5", "wp.stages.table5", (), "tables/table5.csv: accuracy vs LUT bits"),
    ("table6", "wp.stages.table6", (), "tables/table6.csv: accuracy vs activation bits"),
    ("sweep_plots", "wp.stages.sweep_plots", ("sweep-plots",), "figures: accuracy vs LUT bits and vs activation bits"),
    ("export", "wp.stages.export", (),
     "a pooled checkpoint → deployable arrays (.npz), manifest (.json) and C header (.h)"),
    # comparison with related methods (issue 7)
    ("compare", "wp.stages.compare", (), "one comparison job: prune, ternary, valueset or sharing from the float network"),
    ("compare_table", "wp.stages.compare_table", ("compare-table",), "tables/compare.csv + .md and the Pareto plot"),
    ("networks", "wp.stages.networks", (), "the registered networks: parameters, pooled layers, z-vectors, ratio at K"),
    # Cortex-M3 runtime measured by emulation (issue 18)
    ("mcu_table7", "wp.stages.mcu_table7", ("mcu-table7",), "tables/table7.csv: networks on an emulated Cortex-M3"),
    ("mcu_figure7", "wp.stages.mcu_figure7", ("mcu-figure7",), "figure 7: LUT caching and precomputation"),
    ("mcu_figure8", "wp.stages.mcu_figure8", ("mcu-figure8",), "figure 8: speedup vs activation bits"),
    ("check-config", "wp.stages.check_config", (), "validate a config file, print it with defaults filled in"),
)


def command_of(argv: list[str]) -> str | None:
    """The command (or alias) ``argv`` names: its first word that is not a top-level option or its value."""
    words = iter(argv)
    for word in words:
        if word == "--networks-from":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the listed commands' (names or aliases) arguments are declared, so that a
    command imports only its own module (None: every command's)."""
    p = argparse.ArgumentParser(prog="wp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    setting(p, "--networks-from", "network_modules", action="append", nargs=None, metavar="FILE",
            help="a Python file that registers networks of your own with @wp.models.register (repeatable)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, module, aliases, text in COMMANDS:
        sp = sub.add_parser(name, aliases=list(aliases), help=text)
        if commands is None or {name, *aliases} & set(commands):
            importlib.import_module(module).add_arguments(sp)
        sp.set_defaults(module=module)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser([command_of(argv)]).parse_args(argv)
    try:
        if getattr(args, "threads", None):
            import torch

            # exactly the threads asked for, however many cores this process may use: torch's CPU results
            # depend on the thread count, so it must come from the config, never from the machine or --cores
            torch.set_num_threads(args.threads)
        importlib.import_module(args.module).main(args)
    except WPError as exc:
        print(f"wp: error: {exc}", file=sys.stderr)
        return 2
    return 0
