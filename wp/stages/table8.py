"""Stage ``table8``: how many distinct pool vectors each pooled layer's filters use per input vector
(paper appendix, Table 8), from the pooled checkpoints' indices (see :func:`wp.tables.table8`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from wp import checkpoint, models, settings, tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--out", required=True)
    settings.md_option(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.checkpoints, args.out, args.md)


def run(ckpt_paths: list[str | Path], out_csv: str | Path, out_md: str | Path | None = None) -> pd.DataFrame:
    ckpts = [checkpoint.load(p, kind="pooled") for p in ckpt_paths]
    df = tables.table8(ckpts).sort_values(["dataset", "network", "layer"]).reset_index(drop=True)
    tables.write(df, out_csv, out_md, title="Table 8: distinct pool vectors a layer's filters use per input vector")
    print(tables.to_markdown(df), flush=True)
    return df
