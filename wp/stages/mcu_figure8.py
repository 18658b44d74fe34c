"""Stage ``mcu_figure8``: figure 8, speedup vs activation bits on an emulated Cortex-M3
(:mod:`wp.mcu_bench`); one line naming what to install when the cross-compiler or the emulator is missing."""

from __future__ import annotations

import argparse

from wp import mcu, mcu_bench, settings, tables
from wp.io import atomic_path
from wp.settings import setting


def add_arguments(p: argparse.ArgumentParser) -> None:
    setting(p, "--channels", "mcu.figure8_channels")
    p.add_argument("--bits", nargs="+", type=int, required=True)
    setting(p, "--size", "mcu.layer_size")
    setting(p, "--k", "mcu.layer_k")
    p.add_argument("--out", required=True)
    p.add_argument("--png", required=True)
    settings.mcu_options(p)


def main(args: argparse.Namespace) -> None:
    run(args.channels, args.bits, args.size, args.k, args.out, args.png, args.build, cpi=args.cpi,
        wait_states=args.wait_states, seed=args.seed)


def run(channels: int, bits: list[int], size: int, k: int, out_csv, out_png, build, *, cpi: float, wait_states: int,
        seed: int):
    mcu.require_emulator()
    df = mcu_bench.figure8(channels, bits, build, size=size, k=k, cpi=cpi, wait_states=wait_states, seed=seed)
    tables.write(df, out_csv)
    with atomic_path(out_png) as tmp:
        mcu_bench.plot_figure8(df, tmp)
    print(tables.to_markdown(df), flush=True)
    return df
