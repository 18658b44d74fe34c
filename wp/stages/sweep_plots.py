"""Stage ``sweep_plots``: accuracy vs LUT bits (Table 5) and vs activation bits (Table 6)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wp import plots


def run(table5_csv: str | Path, table6_csv: str | Path, lut_png: str | Path, act_png: str | Path) -> None:
    plots.lut_bits(pd.read_csv(table5_csv), lut_png)
    plots.act_bits(pd.read_csv(table6_csv), act_png)
    print(f"wrote {lut_png} and {act_png}", flush=True)
