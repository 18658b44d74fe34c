"""Stage ``prepare``: raw dataset files → one cached HDF5 file."""

from __future__ import annotations

from pathlib import Path

from wp import data


def run(dataset: str, data_dir: str | Path, out: str | Path, seed: int = 0, options: dict | None = None) -> dict:
    summary = data.prepare(dataset, data_dir, out, seed=seed, options=options)
    print(f"prepared {dataset}: {summary['train']} train / {summary['test']} test images -> {out}", flush=True)
    return summary
