"""Stages ``mcu_table7``, ``mcu_figure7``, ``mcu_figure8``: the C runtime on an emulated Cortex-M3
(:mod:`wp.mcu_bench`). Each stops at once with one line naming what to install when the cross-compiler
or the emulator is missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wp import WPError, mcu, mcu_bench, paper, tables
from wp.io import atomic_path


def min_bits(source: str, networks: list[str], table6_csv: str | Path | None = None) -> dict[str, int]:
    """Per network, Table 6's minimum activation bit width: the paper's (``source="paper"``) or ours
    (``"table6"``: the ``min_bits`` column of tables/table6.csv, the largest over its datasets)."""
    if source == "paper":
        out = {n: v["min_bits"] for (_, n), v in paper.TABLE6.items()}
    elif source == "table6":
        if table6_csv is None or not Path(table6_csv).is_file():
            raise WPError(f"mcu.min_bits is table6 but {table6_csv} is missing: build tables/table6.csv first")
        df = pd.read_csv(table6_csv)
        out = {n: int(d["min_bits"].max()) for n, d in df.groupby("network") if d["min_bits"].notna().any()}
    else:
        raise WPError(f"mcu.min_bits must be paper or table6, not {source!r}")
    missing = [n for n in networks if n not in out]
    if missing:
        raise WPError(f"no Table 6 minimum bit width for {missing} ({source}): add those networks to table 6 or use min_bits: paper")
    return {n: out[n] for n in networks}


def _write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def run_table7(networks: list[str], pools: list[int], lut_bits: int, variant: str, min_bits_source: str,
               out_csv: str | Path, out_md: str | Path, build: str | Path, *, table6_csv=None, cpi: float = 1.6,
               wait_states: int = 3, seed: int = 0) -> pd.DataFrame:
    mcu.require_emulator()
    mb = min_bits(min_bits_source, networks, table6_csv)
    df = mcu_bench.table7(networks, mb, build, pools=pools, lut_bits=lut_bits, variant=variant, cpi=cpi,
                          wait_states=wait_states, seed=seed)
    _write_csv(df, out_csv)
    md = ("# Table 7 (emulated Cortex-M3): conv-layer instructions and speedup over int8; est. = cycle estimate "
          f"({cpi} cycles/instruction + {wait_states} per flash data read), paper = F207 latency ratio\n\n"
          + mcu_bench.table7_markdown(df))
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(md)
    print(md, flush=True)
    return df


def run_figure7(filters: list[int], size: int, k: int, bits: int, out_csv, out_png, build, *, cpi=1.6,
                wait_states=3, seed=0) -> pd.DataFrame:
    mcu.require_emulator()
    df = mcu_bench.figure7(filters, build, size=size, k=k, bits=bits, cpi=cpi, wait_states=wait_states, seed=seed)
    _write_csv(df, out_csv)
    with atomic_path(out_png) as tmp:
        mcu_bench.plot_figure7(df, tmp)
    print(tables.to_markdown(df), flush=True)
    return df


def run_figure8(channels: int, bits: list[int], size: int, k: int, out_csv, out_png, build, *, cpi=1.6,
                wait_states=3, seed=0) -> pd.DataFrame:
    mcu.require_emulator()
    df = mcu_bench.figure8(channels, bits, build, size=size, k=k, cpi=cpi, wait_states=wait_states, seed=seed)
    _write_csv(df, out_csv)
    with atomic_path(out_png) as tmp:
        mcu_bench.plot_figure8(df, tmp)
    print(tables.to_markdown(df), flush=True)
    return df
