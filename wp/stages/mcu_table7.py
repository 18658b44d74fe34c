"""Stage ``mcu_table7``: tables/table7.csv, networks on an emulated Cortex-M3 (:mod:`wp.mcu_bench`). It
stops at once with one line naming what to install when the cross-compiler or the emulator is missing."""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import mcu, mcu_bench, models, settings, tables
from wp.io import atomic_path
from wp.settings import cli_only, setting


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--networks", nargs="+", required=True)
    setting(p, "--pools", "mcu.pools")
    setting(p, "--lut-bits", "mcu.lut_bits")
    setting(p, "--variant", "mcu.variant")
    setting(p, "--min-bits", "mcu.min_bits")
    cli_only(p, "--table6", help="tables/table6.csv (with --min-bits table6; default: none)")
    p.add_argument("--out", required=True)
    p.add_argument("--md", required=True)
    settings.mcu_options(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.networks, args.pools, args.lut_bits, args.variant, args.min_bits, args.out, args.md, args.build,
        table6_csv=args.table6, cpi=args.cpi, wait_states=args.wait_states, seed=args.seed)


def run(networks: list[str], pools: list[int], lut_bits: int, variant: str, min_bits_source: str,
        out_csv: str | Path, out_md: str | Path, build: str | Path, *, cpi: float, wait_states: int, seed: int,
        table6_csv=None):
    mcu.require_emulator()
    mb = mcu_bench.min_bits(min_bits_source, networks, table6_csv)
    df = mcu_bench.table7(networks, mb, build, pools=pools, lut_bits=lut_bits, variant=variant, cpi=cpi,
                          wait_states=wait_states, seed=seed)
    tables.write(df, out_csv)
    md = ("# Table 7 (emulated Cortex-M3): conv-layer instructions and speedup over int8; est. = cycle estimate "
          f"({cpi} cycles/instruction + {wait_states} per flash data read), paper = F207 latency ratio\n\n"
          + mcu_bench.table7_markdown(df))
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(md)
    print(md, flush=True)
    return df
