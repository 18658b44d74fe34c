"""Stage ``table6``: accuracy vs activation bits, without and with retraining (paper Table 6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import settings, tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--evals", nargs="+", required=True, help="quant_eval metrics (plain and retrained)")
    p.add_argument("--out", required=True)
    settings.md_option(p)


def main(args: argparse.Namespace) -> None:
    run(args.evals, args.out, args.md)


def run(eval_paths: list[str | Path], out_csv: str | Path, out_md: str | Path | None = None) -> None:
    df = tables.table6(tables.read_metrics(eval_paths))
    tables.write(df, out_csv, out_md, title="Table 6: top-1 accuracy (%) vs activation bits")
    print(tables.to_markdown(df), flush=True)
