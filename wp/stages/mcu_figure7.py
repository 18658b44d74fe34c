"""Stage ``mcu_figure7``: figure 7, LUT caching and precomputation on an emulated Cortex-M3
(:mod:`wp.mcu_bench`); one line naming what to install when the cross-compiler or the emulator is missing."""

from __future__ import annotations

import argparse

from wp import mcu, mcu_bench, settings, tables
from wp.io import atomic_path
from wp.settings import cli_only, setting


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--filters", nargs="+", type=int, required=True)
    setting(p, "--size", "mcu.layer_size")
    setting(p, "--k", "mcu.layer_k")
    cli_only(p, "--bits", type=int, default=8, help="activation bits of the layers (default: 8, as the paper's figure 7)")
    p.add_argument("--out", required=True)
    p.add_argument("--png", required=True)
    settings.mcu_options(p)


def main(args: argparse.Namespace) -> None:
    run(args.filters, args.size, args.k, args.bits, args.out, args.png, args.build, cpi=args.cpi,
        wait_states=args.wait_states, seed=args.seed)


def run(filters: list[int], size: int, k: int, bits: int, out_csv, out_png, build, *, cpi: float, wait_states: int,
        seed: int):
    mcu.require_emulator()
    df = mcu_bench.figure7(filters, build, size=size, k=k, bits=bits, cpi=cpi, wait_states=wait_states, seed=seed)
    tables.write(df, out_csv)
    with atomic_path(out_png) as tmp:
        mcu_bench.plot_figure7(df, tmp)
    print(tables.to_markdown(df), flush=True)
    return df
