"""Stage ``compare_table``: tables/compare.csv + .md and the Pareto plot, from every job's metrics."""

from __future__ import annotations

from pathlib import Path

from wp import comparison, tables


def run(metrics_paths: list[str | Path], checkpoint_paths: list[str | Path], out_csv: str | Path,
        out_md: str | Path | None, out_png: str | Path) -> None:
    df = comparison.table(tables.read_metrics(metrics_paths), comparison.read_checkpoints(checkpoint_paths))
    tables.write(df, out_csv, out_md, title="Comparison: top-1 (%) and weight storage vs fp32 and int8 networks")
    comparison.plot(df, out_png)
    print(tables.to_markdown(df), flush=True)
