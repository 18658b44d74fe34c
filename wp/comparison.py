"""The comparison table (``tables/compare.csv``) and its Pareto plot, from the jobs' metrics.

Rows: the float network (pretrain metrics, ratio 1), the weight pools (wp_train metrics; the footprint
is computed here from the pooled checkpoint with ``wp.compression.weight_pool``, 8-bit table entries,
bit-packed indices) and the four comparison methods (their metrics carry their own footprint). Every
ratio comes from the same calculator, against fp32 and against int8 weights.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from wp import WPError, checkpoint, compression, models  # noqa: E402
from wp.plots import _save  # noqa: E402

METHODS = ("float", "wp", "prune", "ternary", "valueset", "sharing")
MARKERS = {"float": "*", "wp": "o", "prune": "s", "ternary": "^", "valueset": "D", "sharing": "P"}
LABELS = {"float": "float", "wp": "weight pool", "prune": "pruning", "ternary": "ternary",
          "valueset": "value-set search", "sharing": "per-layer sharing"}
COLUMNS = ["dataset", "network", "method", "setting", "top1", "float_top1", "ratio_fp32", "ratio_int8",
           "kib_fp32", "kib_int8", "retrain_epochs", "seconds", "device", "test_images"]
LUT_BITS = 8


def weight_pool_footprint(wp_ckpt: dict) -> compression.Footprint:
    """Footprint of a pooled checkpoint: its network, pooled layers and K."""
    model = models.create(wp_ckpt["network"], **wp_ckpt["model_args"])
    return compression.weight_pool(model, list(wp_ckpt["pooled_layers"]), int(wp_ckpt["k"]), lut_bits=LUT_BITS)


def _row(m: dict, method: str, setting: str, fp: dict, epochs: int) -> dict:
    return {"dataset": m["dataset"], "network": m["network"], "method": method, "setting": setting,
            "top1": round(m["test_top1"], 2), "ratio_fp32": round(fp["ratio_fp32"], 3), "ratio_int8": round(fp["ratio_int8"], 3),
            "kib_fp32": round(fp["bytes_fp32"] / 1024, 2), "kib_int8": round(fp["bytes_int8"] / 1024, 2),
            "retrain_epochs": epochs, "seconds": round(m["seconds"], 1), "device": m["provenance"]["device"],
            "test_images": m["test_images"]}


def table(metrics: list[dict], checkpoints: dict[tuple[str, str, int], dict]) -> pd.DataFrame:
    """One row per (dataset, network, method, setting). ``checkpoints``: (dataset, network, K) → the
    pooled checkpoint ``wp{K}.pt`` (K = 0: the float ``pretrained.pt``), for the float and weight-pool
    footprints. The float row's seconds are its pretraining time; every other row's are its own
    stage's time on top of that pretraining."""
    rows, floats = [], {}
    for m in metrics:
        key = (m["dataset"], m["network"])
        if m["stage"] == "pretrain":
            ck = _checkpoint(checkpoints, key, 0, "pretrained.pt")
            floats[key] = m["test_top1"]
            rows.append(_row(m, "float", "", compression.dense(models.create(key[1], **ck["model_args"])).summary(), 0))
        elif m["stage"] == "wp_train":
            ck = _checkpoint(checkpoints, key, int(m["k"]), f"wp{m['k']}.pt")
            rows.append(_row(m, "wp", f"K={m['k']}", weight_pool_footprint(ck).summary(), m["epochs"]))
        elif m["stage"] == "compare":
            rows.append(_row(m, m["method"], m["setting"], m["footprint"], m["retrain_epochs"]))
        else:
            raise WPError(f"metrics of stage {m['stage']!r} do not belong in the comparison: pass pretrain, wp_train and compare metrics")
    for row in rows:
        row["float_top1"] = round(floats[(row["dataset"], row["network"])], 2) if (row["dataset"], row["network"]) in floats else None
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["_order"] = df["method"].map({m: i for i, m in enumerate(METHODS)})
    df = df.sort_values(["dataset", "network", "_order", "ratio_int8"], kind="stable").drop(columns="_order")
    return df.reset_index(drop=True)


def _checkpoint(checkpoints: dict, key: tuple[str, str], k: int, name: str) -> dict:
    ck = checkpoints.get((*key, k))
    if ck is None:
        raise WPError(f"no checkpoint {name} of {key[1]} on {key[0]} was passed: add it to --checkpoints")
    return ck


def read_checkpoints(paths: list[str | Path]) -> dict[tuple[str, str, int], dict]:
    """(dataset, network, K) → checkpoint, for float (K = 0) and pooled checkpoints."""
    out = {}
    for p in paths:
        ck = checkpoint.load(p)
        if ck["kind"] not in ("float", "pooled"):
            raise WPError(f"{p} is a {ck['kind']} checkpoint: pass pretrained.pt and wp{{K}}.pt files")
        out[(ck["dataset"], ck["network"], int(ck.get("k", 0)))] = ck
    return out


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points not beaten on both compression and accuracy, by increasing compression."""
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return sorted(front)


def plot(df: pd.DataFrame, out: str | Path) -> None:
    """Top-1 vs compression vs int8 (log x), one panel per (dataset, network), one marker per method,
    the Pareto front dashed."""
    panels = list(df.groupby(["dataset", "network"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, ((dataset, network), rows) in zip(axes[0], panels):
        for i, method in enumerate(METHODS):
            sel = rows[rows.method == method]
            if sel.empty:
                continue
            ax.scatter(sel.ratio_int8, sel.top1, marker=MARKERS[method], s=70 if method == "float" else 40,
                       color=f"C{i}", label=LABELS[method], zorder=3)
            for _, r in sel.iterrows():
                if r.setting:
                    ax.annotate(str(r.setting), (r.ratio_int8, r.top1), fontsize=6, xytext=(3, 3), textcoords="offset points")
        front = pareto(list(zip(rows.ratio_int8, rows.top1)))
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="0.5", linewidth=0.8, zorder=2, label="Pareto front")
        ax.set_xscale("log")
        lo, hi = float(rows.ratio_int8.min()), float(rows.ratio_int8.max())
        ticks = [t for t in (1, 2, 4, 8, 16, 32, 64, 128, 256) if lo / 2 < t < hi * 2]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("compression vs int8 weights (x, log scale)")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"{network} ({dataset})", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _save(fig, out)
