"""Stage ``sweep_plots``: accuracy vs LUT bits (Table 5) and vs activation bits (Table 6)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from wp import plots


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table5", required=True)
    p.add_argument("--table6", required=True)
    p.add_argument("--lut-png", required=True)
    p.add_argument("--act-png", required=True)


def main(args: argparse.Namespace) -> None:
    run(args.table5, args.table6, args.lut_png, args.act_png)


def run(table5_csv: str | Path, table6_csv: str | Path, lut_png: str | Path, act_png: str | Path) -> None:
    plots.lut_bits(pd.read_csv(table5_csv), lut_png)
    plots.act_bits(pd.read_csv(table6_csv), act_png)
    print(f"wrote {lut_png} and {act_png}", flush=True)
