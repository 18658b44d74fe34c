"""Stage ``compare_table``: tables/compare.csv + .md and the Pareto plot, from every job's metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import comparison, models, settings, tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", nargs="+", required=True, help="pretrained.json, wp{K}.json and compare metrics")
    p.add_argument("--checkpoints", nargs="+", required=True, help="pretrained.pt and wp{K}.pt (for the footprints)")
    p.add_argument("--out", required=True)
    settings.md_option(p)
    p.add_argument("--png", required=True)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.metrics, args.checkpoints, args.out, args.md, args.png)


def run(metrics_paths: list[str | Path], checkpoint_paths: list[str | Path], out_csv: str | Path,
        out_md: str | Path | None, out_png: str | Path) -> None:
    df = comparison.table(tables.read_metrics(metrics_paths), comparison.read_checkpoints(checkpoint_paths))
    tables.write(df, out_csv, out_md, title="Comparison: top-1 (%) and weight storage vs fp32 and int8 networks")
    comparison.plot(df, out_png)
    print(tables.to_markdown(df), flush=True)
