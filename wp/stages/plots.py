"""Stage ``plots``: the figures of the report from table 4 and the training metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from wp import plots, tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table4", required=True)
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--pool-png", required=True)
    p.add_argument("--curves-png", required=True)


def main(args: argparse.Namespace) -> None:
    run(args.table4, args.metrics, args.pool_png, args.curves_png)


def run(table4_csv: str | Path, metrics_paths: list[str | Path], pool_png: str | Path, curves_png: str | Path) -> None:
    plots.pool_size(pd.read_csv(table4_csv), pool_png)
    plots.training_curves(tables.read_metrics(metrics_paths), curves_png)
    print(f"wrote {pool_png} and {curves_png}", flush=True)
