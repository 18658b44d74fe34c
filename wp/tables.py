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


def _by_network(metrics: list[dict], stage: str) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for m in metrics:
        if m["stage"] != stage:
            raise WPError(f"metrics of stage {m['stage']!r} passed where {stage} metrics belong: pass {stage} metrics")
        out.setdefault((m["dataset"], m["network"]), []).append(m)
    return out


def table5(evals: list[dict], floats: list[dict]) -> pd.DataFrame:
    """Accuracy vs LUT bits: per (dataset, network) the float weight-pool network (``wp_train``
    metrics, no quantization; the evaluations' own float score where they scored fewer images), ``no_lut`` (quantized activations, float weights) and ``lut{n}`` for every
    LUT bit width found among the ``quant_eval`` metrics; the paper's values beside."""
    float_top1 = {(m["dataset"], m["network"]): m["test_top1"] for m in floats}
    float_images = {(m["dataset"], m["network"]): m.get("test_images") for m in floats}
    groups = _by_network(evals, "quant_eval")
    rows, bits = [], sorted({m["lut_bits"] for m in evals if m["lut_bits"] is not None}, reverse=True)
    for (dataset, network), ms in sorted(groups.items()):
        ref = paper.TABLE5.get((dataset, network), {})
        row = {"dataset": dataset, "network": network, "k": ms[0]["k"], "act_bits": ms[0]["act_bits"],
               "float": _r(float_top1.get((dataset, network)))}
        if float_images.get((dataset, network)) not in (None, ms[0]["test_images"]):  # sweeps.test_images: same images
            row["float"] = _r(ms[0]["float_top1"])
        for m in ms:
            row["no_lut" if m["lut_bits"] is None else f"lut{m['lut_bits']}"] = _r(m["test_top1"])
        row["paper_no_lut"] = ref.get("none")
        row.update({f"paper_lut{b}": ref.get(b) for b in bits})
        row["test_images"] = ms[0]["test_images"]
        rows.append(row)
    cols = ["dataset", "network", "k", "act_bits", "float", "no_lut"] + [f"lut{b}" for b in bits] \
        + ["paper_no_lut"] + [f"paper_lut{b}" for b in bits] + ["test_images"]
    return pd.DataFrame(rows, columns=cols)


def min_bits(best: dict[int, float], reference: float, tolerance: float = 1.0) -> int | None:
    """The smallest bit width whose accuracy (``best``: bits → top-1) is within ``tolerance`` points of
    ``reference`` (the 8-bit accuracy in the paper); None when none is."""
    within = [b for b, acc in best.items() if acc >= reference - tolerance]
    return min(within) if within else None


def table6(evals: list[dict]) -> pd.DataFrame:
    """Accuracy vs activation bits: ``a{B}`` without retraining, ``a{B}_retrained`` after retraining with
    quantized activations, and ``min_bits``: the fewest bits within 1 point of the widest plain
    evaluation, counting the better of plain and retrained at each width (as the paper does)."""
    rows = []
    plain_bits = sorted({m["act_bits"] for m in evals if not m["retrained"]}, reverse=True)
    retrained_bits = sorted({m["act_bits"] for m in evals if m["retrained"]}, reverse=True)
    for (dataset, network), ms in sorted(_by_network(evals, "quant_eval").items()):
        ref = paper.TABLE6.get((dataset, network), {})
        plain = {m["act_bits"]: m["test_top1"] for m in ms if not m["retrained"]}
        retrained = {m["act_bits"]: m["test_top1"] for m in ms if m["retrained"]}
        best = {b: max(plain.get(b, -1.0), retrained.get(b, -1.0)) for b in set(plain) | set(retrained)}
        row = {"dataset": dataset, "network": network, "k": ms[0]["k"], "lut_bits": ms[0]["lut_bits"]}
        row.update({f"a{b}": _r(plain.get(b)) for b in plain_bits})
        row.update({f"a{b}_retrained": _r(retrained.get(b)) for b in retrained_bits})
        row["min_bits"] = min_bits(best, plain[max(plain)]) if plain else None
        row.update({f"paper_a{b}": ref.get("plain", {}).get(b) for b in plain_bits})
        row.update({f"paper_a{b}_retrained": ref.get("retrained", {}).get(b) for b in retrained_bits})
        row["paper_min_bits"] = ref.get("min_bits")
        row["test_images"] = ms[0]["test_images"]
        rows.append(row)
    cols = ["dataset", "network", "k", "lut_bits"] + [f"a{b}" for b in plain_bits] + [f"a{b}_retrained" for b in retrained_bits] \
        + ["min_bits"] + [f"paper_a{b}" for b in plain_bits] + [f"paper_a{b}_retrained" for b in retrained_bits] \
        + ["paper_min_bits", "test_images"]
    return pd.DataFrame(rows, columns=cols)


def _r(v):
    return None if v is None else round(float(v), 2)
