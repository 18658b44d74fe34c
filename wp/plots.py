"""Figures (PNG, matplotlib, no display needed): accuracy vs pool size and training curves."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

from wp.io import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def pool_size(table4: pd.DataFrame, out: str | Path) -> None:
    """Top-1 vs pool size, one line per (dataset, network); the float network as a dashed line."""
    ks = sorted(int(c[2:]) for c in table4.columns if c.startswith("wp"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, row in table4.iterrows():
        color = f"C{i % 10}"
        label = f"{row['network']} ({row['dataset']})"
        ax.plot(ks, [row[f"wp{k}"] for k in ks], "o-", color=color, label=label)
        ax.axhline(row["original"], color=color, linestyle="--", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("weight-pool size K (vectors of 8)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Accuracy vs pool size (dashed: float network)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, out)


def training_curves(metrics: list[dict], out: str | Path) -> None:
    """Training loss per epoch for every pretraining and retraining run, one panel per network."""
    networks = sorted({(m["dataset"], m["network"]) for m in metrics})
    fig, axes = plt.subplots(1, len(networks), figsize=(4 * len(networks), 3.2), squeeze=False)
    for ax, (dataset, network) in zip(axes[0], networks):
        runs = [m for m in metrics if (m["dataset"], m["network"]) == (dataset, network)]
        for m in sorted(runs, key=lambda m: (m["stage"], m.get("k", 0))):
            label = "pretrain" if m["stage"] == "pretrain" else f"wp{m['k']}"
            epochs = [h["epoch"] for h in m["history"]]
            ax.plot(epochs, [h["loss"] for h in m["history"]], "o-", markersize=3, label=label)
        ax.set_title(f"{network} ({dataset})", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, out)


def _bit_columns(df: pd.DataFrame, prefix: str, suffix: str = "") -> list[int]:
    pattern = rf"^{prefix}(\d+){suffix}$"
    return sorted((int(m.group(1)) for c in df.columns if (m := re.match(pattern, c))), reverse=True)


def lut_bits(table5: pd.DataFrame, out: str | Path) -> None:
    """Top-1 vs LUT entry bits, one line per network; dotted: no LUT (float weights), dashed: float network."""
    bits = _bit_columns(table5, "lut")
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, row in table5.reset_index(drop=True).iterrows():
        color = f"C{i % 10}"
        ax.plot(bits, [row[f"lut{b}"] for b in bits], "o-", color=color, label=f"{row['network']} ({row['dataset']})")
        ax.axhline(row["no_lut"], color=color, linestyle=":", linewidth=1)
        ax.axhline(row["float"], color=color, linestyle="--", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(bits, [str(b) for b in bits])
    ax.invert_xaxis()
    ax.set_xlabel("LUT entry bits")
    ax.set_ylabel("test top-1 (%)")
    act = int(table5["act_bits"].iloc[0]) if len(table5) else 8
    ax.set_title(f"Accuracy vs LUT bits ({act}-bit activations; dotted: no LUT, dashed: float)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, out)


def act_bits(table6: pd.DataFrame, out: str | Path) -> None:
    """Top-1 vs activation bits, one colour per network: solid without retraining, squares after
    retraining with quantized activations."""
    plain, retrained = _bit_columns(table6, "a"), _bit_columns(table6, "a", "_retrained")
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, row in table6.reset_index(drop=True).iterrows():
        color = f"C{i % 10}"
        ax.plot(plain, [row[f"a{b}"] for b in plain], "o-", color=color, label=f"{row['network']} ({row['dataset']})")
        if retrained:
            ax.plot(retrained, [row[f"a{b}_retrained"] for b in retrained], "s--", color=color, markersize=6)
    ax.set_xticks(plain, [str(b) for b in plain])
    ax.invert_xaxis()
    ax.set_xlabel("activation bits")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Accuracy vs activation bits (squares: retrained)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, out)
