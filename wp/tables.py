"""Result tables: rows from the metrics JSON files, written as CSV and as a markdown twin."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from wp import WPError, paper
from wp.io import atomic_path


def read_metrics(paths: list[str | Path]) -> list[dict]:
    out = []
    for p in paths:
        try:
            out.append(json.loads(Path(p).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise WPError(f"metrics file {p} is missing or corrupt ({exc}): rerun the stage that writes it") from exc
    return out


def table4(metrics: list[dict]) -> pd.DataFrame:
    """One row per (dataset, network): original, wp{K} for each K found, the paper's values beside."""
    rows: dict[tuple[str, str], dict] = {}
    ks: set[int] = set()
    for m in metrics:
        key = (m["dataset"], m["network"])
        row = rows.setdefault(key, {"dataset": key[0], "network": key[1]})
        if m["stage"] == "pretrain":
            row["original"] = round(m["test_top1"], 2)
            row["test_images"] = m["test_images"]
        elif m["stage"] == "wp_train":
            ks.add(int(m["k"]))
            row[f"wp{m['k']}"] = round(m["test_top1"], 2)
        else:
            raise WPError(f"metrics of stage {m['stage']!r} do not belong in table 4: pass pretrain and wp_train metrics")
    columns = ["dataset", "network", "original"] + [f"wp{k}" for k in sorted(ks)]
    paper_cols = ["paper_original"] + [f"paper_wp{k}" for k in sorted(ks)]
    for (dataset, network), row in rows.items():
        ref = paper.TABLE4.get((dataset, network), {})
        row["paper_original"] = ref.get("original")
        for k in ks:
            row[f"paper_wp{k}"] = ref.get(k)
    df = pd.DataFrame(list(rows.values()), columns=columns + paper_cols + ["test_images"])
    return df.sort_values(["dataset", "network"]).reset_index(drop=True)


def to_markdown(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.astype(object).itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write(df: pd.DataFrame, csv_path: str | Path, md_path: str | Path | None = None, title: str = "") -> None:
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    if md_path is not None:
        with atomic_path(md_path) as tmp:
            tmp.write_text((f"# {title}\n\n" if title else "") + to_markdown(df))
