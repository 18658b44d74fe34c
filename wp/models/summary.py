"""What weight pools would do to a network, before any training: its counted parameters, the
layers that share the pool, their z-vectors and the storage with a pool of K (``python -m wp networks``).
"""

from __future__ import annotations

import json

import torch

from wp import compression, pool
from wp.models.registry import create, origin


def summary(name: str, *, in_channels: int, num_classes: int, image_size: int, k: int = 64, lut_bits: int = 8,
            pool_fc: bool = False, selection: dict | None = None) -> dict:
    """One row: parameters, pooled layers and z-vectors, and the compression ratio with a pool of ``k``;
    ``selection``: a config's pooled-layer selection (:func:`wp.pool.pooled_layers`)."""
    torch.manual_seed(0)
    model = create(name, in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    layers = pool.pooled_layers(model, pool_fc=pool_fc, selection=selection, network=name)
    mods = compression.weight_layers(model)
    fp = compression.weight_pool(model, layers, k, lut_bits, packed=True)
    pooled = sum(mods[n].weight.numel() for n in layers)
    return {
        "network": name, "source": str(origin(name) or "built-in"), "params": fp.params,
        "pooled_layers": len(layers), "z_vectors": pooled // pool.VECTOR,
        "pooled_fraction": round(pooled / fp.params, 4) if fp.params else 0.0,
        f"ratio_int8_k{k}": round(fp.ratio("int8"), 2), f"ratio_fp32_k{k}": round(fp.ratio("fp32"), 2),
        "selection": json.dumps(selection, sort_keys=True) if selection else "default",
        "layers": [{"name": n, "shape": list(mods[n].weight.shape)} for n in layers],
    }


def show(rows: list[dict], layers: bool = False) -> str:
    """A markdown table of the rows (and each network's pooled layers with ``layers``)."""
    keys = [key for key in rows[0] if key != "layers"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[key]) for key in keys) + " |" for r in rows]
    if layers:
        for r in rows:
            lines += ["", f"{r['network']}: pooled layers (name, weight shape)"]
            lines += [f"  {e['name']} {tuple(e['shape'])}" for e in r["layers"]] or ["  none"]
    return "\n".join(lines)
