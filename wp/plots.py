"""Figures (PNG, matplotlib, no display needed): accuracy vs pool size and training curves."""

from __future__ import annotations

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
