"""Stage ``table6``: accuracy vs activation bits, without and with retraining (paper Table 6)."""

from __future__ import annotations

from pathlib import Path

from wp import tables


def run(eval_paths: list[str | Path], out_csv: str | Path, out_md: str | Path | None = None) -> None:
    df = tables.table6(tables.read_metrics(eval_paths))
    tables.write(df, out_csv, out_md, title="Table 6: top-1 accuracy (%) vs activation bits")
    print(tables.to_markdown(df), flush=True)
