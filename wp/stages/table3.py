"""Stage ``table3``: storage and compression of the deployed weight-pool networks (paper Table 3),
from their checkpoints; the columns are :func:`wp.tables.table3`'s."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from wp import models, settings, tables
from wp.settings import setting


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", nargs="+", required=True)
    setting(p, "--lut-bits", "sweeps.table3.lut_bits")
    p.add_argument("--out", required=True)
    settings.md_option(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.checkpoints, args.out, args.md, lut_bits=args.lut_bits)


def run(ckpt_paths: list[str | Path], out_csv: str | Path, out_md: str | Path | None = None, *, lut_bits: int) -> pd.DataFrame:
    df = tables.table3(ckpt_paths, lut_bits)
    tables.write(df, out_csv, out_md, title="Table 3: storage and compression of the weight-pool networks")
    print(tables.to_markdown(df), flush=True)
    return df
