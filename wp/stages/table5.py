"""Stage ``table5``: accuracy vs lookup-table bits (paper Table 5) from quant_eval and wp_train metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import settings, tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--evals", nargs="+", required=True, help="quant_eval metrics")
    p.add_argument("--wp-metrics", nargs="+", required=True, help="wp_train metrics (the float column)")
    p.add_argument("--out", required=True)
    settings.md_option(p)


def main(args: argparse.Namespace) -> None:
    run(args.evals, args.wp_metrics, args.out, args.md)


def run(eval_paths: list[str | Path], wp_paths: list[str | Path], out_csv: str | Path, out_md: str | Path | None = None) -> None:
    df = tables.table5(tables.read_metrics(eval_paths), tables.read_metrics(wp_paths))
    tables.write(df, out_csv, out_md, title="Table 5: top-1 accuracy (%) vs lookup-table bits")
    print(tables.to_markdown(df), flush=True)
