"""Stage ``table4``: accuracy vs pool size (paper Table 4) from pretrain and wp_train metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import settings, tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True)
    settings.md_option(p)


def main(args: argparse.Namespace) -> None:
    run(args.metrics, args.out, args.md)


def run(metrics_paths: list[str | Path], out_csv: str | Path, out_md: str | Path | None = None) -> None:
    df = tables.table4(tables.read_metrics(metrics_paths))
    tables.write(df, out_csv, out_md, title="Table 4: top-1 accuracy (%) vs weight-pool size")
    print(tables.to_markdown(df), flush=True)
