"""Stage ``table3``: storage of the deployed weight-pool networks (paper Table 3), from their checkpoints.

Per network: counted parameters (conv and linear weights and biases), the pooled share, index storage
byte-aligned (one byte per z-vector, what the runtime stores) and bit-packed (``ceil(log2 K)`` bits), the
LUT (``256·K`` entries of ``lut_bits``), and the compression ratio against int8 and fp32 weights with
:mod:`wp.compression`: uncompressed bits over (indices + LUT + every unpooled weight and bias at the
base precision). ``lut_share`` is the LUT's part of the compressed int8 storage.

Beside it, the paper's accounting (``pm_*``, :func:`wp.paper.table3_accounting`, the columns compared with
``paper_*``): ``pm_params`` counts the conv weights but the shortcut convs (the paper's "total param"),
``pm_ratio`` prices them and the FC at 8 bits against one byte per pooled z-vector, every other counted
weight at 8 bits and one ``256·K`` table; ``pm_lut_share`` is the table's share of that storage and
``pm_lut_overhead`` the table over (storage + table), the definition that reproduces the paper's printed
overheads. ``notes`` says where the paper's row describes another network or set-up.

The paper prices one table. :mod:`wp.lutnet` quantizes it per layer (range = max |T| over the pool
vectors the layer uses), so a device stores one table per distinct range: ``lut_tables`` counts them
and ``ratio_int8_deployed`` prices them (what ``python -m wp export`` writes).

``pool_scale`` records the checkpoint's pool scale (:mod:`wp.pool`; "none" is the paper's method); with
one, every footprint also stores each pooled layer's scales (``scale_bytes``, 32-bit floats).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wp import checkpoint, compression, lut, models, paper, tables


def lut_tables(ckpt: dict) -> int:
    """How many different tables the pooled layers read once each quantizes the shared table with
    its own range (layers with the same range read the same codes)."""
    table = lut.build_table(ckpt["pool"].double())
    return len({lut.table_range(table, ckpt["indices"][name]) for name in ckpt["pooled_layers"]})


def scale_counts(ckpt: dict) -> dict[str, int] | None:
    """Per pooled layer, how many pool scales the checkpoint stores (None without a pool scale)."""
    _, scales = checkpoint.pool_scale(ckpt)
    return None if scales is None else {name: int(scales[name].numel()) for name in ckpt["pooled_layers"]}


def row(ckpt_path: str | Path, lut_bits: int = 8) -> dict:
    ckpt = checkpoint.load(ckpt_path, kind="pooled")
    model = models.create(ckpt["network"], **ckpt["model_args"])
    k, layers = int(ckpt["k"]), ckpt["pooled_layers"]
    scales = scale_counts(ckpt)
    packed = compression.weight_pool(model, layers, k, lut_bits, packed=True, scales=scales)
    byte = compression.weight_pool(model, layers, k, lut_bits, packed=False, scales=scales)
    n_tables = lut_tables(ckpt)
    deployed = compression.weight_pool(model, layers, k, lut_bits, packed=True, tables=n_tables, scales=scales)
    mods = compression.weight_layers(model)
    pooled = sum(mods[n].weight.numel() for n in layers)
    ref = paper.TABLE3.get((ckpt["dataset"], ckpt["network"]), {})
    pm = paper.table3_accounting(model, layers, k, lut_bits)
    facts = checkpoint.pooled_summary(ckpt["state_dict"], layers)
    extra = [paper.TABLE3_NETWORK_DIFFERS[ckpt["network"]]] if ckpt["network"] in paper.TABLE3_NETWORK_DIFFERS else []
    if facts["pooled_fc"]:
        extra.append("pm_ columns price the FC at 8 bits, as the paper's Table 3")
    return {
        "dataset": ckpt["dataset"], "network": ckpt["network"], "k": k, "lut_bits": lut_bits,
        "pool_scale": checkpoint.pool_scale(ckpt)[0],
        "params": packed.params, "pooled_params": pooled, "pooled_fraction": round(pooled / packed.params, 4),
        "index_bytes": byte.bits_of("index") // 8, "index_bytes_packed": packed.bits_of("index") / 8,
        "lut_bytes": packed.bits_of("lut") / 8, "scale_bytes": packed.bits_of("scale") / 8, "unpooled_bytes_int8": packed.bits_of("weights") / 8 + packed.bits_of("bias") / 8,
        "total_bytes_int8": packed.bytes("int8"),
        "ratio_int8": round(packed.ratio("int8"), 2), "ratio_fp32": round(packed.ratio("fp32"), 2),
        "ratio_int8_byte_indices": round(byte.ratio("int8"), 2),
        "lut_tables": n_tables, "ratio_int8_deployed": round(deployed.ratio("int8"), 2),
        "pm_params": pm["params"], "paper_params": ref.get("params"),
        "pm_ratio": round(pm["ratio"], 2), "paper_ratio": ref.get("ratio"),
        "lut_share": round(100 * packed.bits_of("lut") / packed.bits("int8"), 1), "pm_lut_share": round(pm["lut_share"], 1),
        "pm_lut_overhead": round(pm["lut_overhead_as_printed"], 1), "paper_lut_overhead": ref.get("lut_overhead"),
        # FC pooling is no difference here: the paper's Table 3 priced the FC uncompressed in every network
        "notes": tables.notes(ckpt["dataset"], ckpt["network"], pooled_conv_vectors=facts["pooled_conv_vectors"], extra=extra),
    }


def run(ckpt_paths: list[str | Path], out_csv: str | Path, out_md: str | Path | None = None, lut_bits: int = 8) -> pd.DataFrame:
    df = pd.DataFrame([row(p, lut_bits) for p in ckpt_paths]).sort_values(["dataset", "network"]).reset_index(drop=True)
    tables.write(df, out_csv, out_md, title="Table 3: storage and compression of the weight-pool networks")
    print(tables.to_markdown(df), flush=True)
    return df
