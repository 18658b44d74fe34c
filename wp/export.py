"""The deployable artifact of a weight-pool network: arrays (``.npz``), a manifest (``.json``) and a C header.

What it holds is exactly what :mod:`wp.lutnet` runs (:func:`from_lutnet` reads it off a converted
network, so nothing is recomputed differently):

* per pooled layer (a :class:`wp.lutnet.LUTLayer`): its pool indices ``[O, kh, kw, C/8]`` (order o, y, x, g
  as :func:`wp.pool.to_vectors`; ``uint8`` for K ≤ 256) and the same indices bit-packed at
  ``ceil(log2 K)`` bits each, least significant bit first; the table it reads, ``[256, K]`` integer codes
  (``lut[s, k]`` = pool vector ``k``'s dot product with the 8-bit pattern ``s``, quantized with the layer's
  range, :func:`wp.lutnet.layer_table`) and its step; the activation range, signedness, step and bit width;
  the conv geometry. Layers whose tables are identical share one array (``lut_0``, ``lut_1``, ...).
* every other parameter and buffer of the network (first conv, BatchNorm, depthwise convs, classifier,
  the pooled layers' biases) as ``float32`` under its state_dict name made a C identifier
  (``layer1.0.conv1.weight`` → ``layer1_0_conv1_weight``). BatchNorm's ``num_batches_tracked`` counters
  are left out (they play no part in inference), and so are an ``act_train`` checkpoint's activation
  quantizer buffers (``<layer>.act_quant.*``: the layer entries hold them).

A pooled layer's output is ``scale · acc + bias`` with ``acc = Σ_(taps, groups) Σ_b w_b · lut[s_b, idx]``
(integers; ``w_b = 2^b``, the top bit plane of a signed code subtracted) and ``scale = act_step ·
lut_step`` (:func:`wp.lut.lut_conv2d`; ``wp/export_c/lut_layer.c`` is the same in C). With a pool scale
(``pool_scale`` "layer" or "channel", :mod:`wp.pool`) the layer also has ``<layer>_pool_scale`` (float32, 1
or out-channels values) and its output is ``float(acc · scale · pool_scale[o]) + bias[o]``
(``wp_requantize`` in the C file; the same operations in the same precision as :class:`wp.lutnet.LUTLayer`).

This module builds the artifact (:func:`from_lutnet`) and writes its files (:func:`write`); the C
header's text is :mod:`wp.c_header`; :func:`wp.export_load.load` rebuilds the deployed network from the
two files and the architecture of the registry (:func:`wp.models.create`); its outputs equal those of
the network lutnet builds from the checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from wp import WPError, c_header, compression, lut, lutnet, models, names, quant
from wp.io import atomic_path

FORMAT = "wp-export/1"
LUT_BITS = (2, 16)  # table entries fit int8_t / int16_t


# ----------------------------------------------------------------------------------------------------
# Dtypes, bit packing
# ----------------------------------------------------------------------------------------------------

def lut_dtype(lut_bits: int, mode: str) -> np.dtype:
    """The smallest signed integer type of the table codes: ``strict`` codes lie in ``[-2^(n-1), 2^(n-1))``,
    ``reference`` codes in ``±(2^n - 1)`` (:func:`wp.lut.table_codes`)."""
    top = (1 << (lut_bits - 1)) if mode == "strict" else (1 << lut_bits) - 1
    for dt in (np.int8, np.int16, np.int32):
        if top <= np.iinfo(dt).max + (mode == "strict"):
            return np.dtype(dt)
    raise WPError(f"{lut_bits}-bit table codes do not fit 32 bits")


def index_dtype(k: int) -> np.dtype:
    return np.dtype(np.uint8 if k <= 256 else np.uint16)


def pack_indices(indices: np.ndarray, bits: int) -> np.ndarray:
    """Indices as one bit stream of ``bits`` bits each, least significant bit first, in bytes."""
    flat = indices.reshape(-1).astype(np.int64)
    planes = (flat[:, None] >> np.arange(bits)) & 1
    return np.packbits(planes.astype(np.uint8).reshape(-1), bitorder="little")


def unpack_indices(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`: ``count`` indices (int64)."""
    planes = np.unpackbits(packed, bitorder="little")[:count * bits].reshape(count, bits).astype(np.int64)
    return planes @ (1 << np.arange(bits, dtype=np.int64))


def power_of_two_exponent(value: float) -> int | None:
    """``e`` with ``value == 2^e``, or None when it is not a power of two."""
    mantissa, exponent = math.frexp(value)
    return exponent - 1 if mantissa == 0.5 else None


# ----------------------------------------------------------------------------------------------------
# From a lutnet network to arrays + manifest
# ----------------------------------------------------------------------------------------------------

def _array_entry(arrays: dict, roles: dict, name: str, value: np.ndarray, role: str) -> str:
    if name in arrays:
        raise WPError(f"two arrays of the artifact would be named {name!r}: rename a layer of the network")
    arrays[name], roles[name] = np.ascontiguousarray(value), role
    return name


def _layer_entry(name: str, layer: lutnet.LUTLayer, arrays: dict, roles: dict, k: int, index_bits: int,
                 lut_name: str, lut_bits: int) -> dict:
    out_c, in_c, kh, kw = (int(v) for v in layer.weight_shape)
    ident = c_header.c_identifier(name)
    idx = layer.indices.cpu().numpy().reshape(out_c, kh, kw, in_c // lut.VECTOR)
    byte_idx = _array_entry(arrays, roles, f"{ident}_indices", idx.astype(index_dtype(k)), "indices")
    packed = _array_entry(arrays, roles, f"{ident}_indices_packed", pack_indices(idx, index_bits), "indices_packed")
    q = layer.act_quant  # the layer's activation quantizer: bits, range, signedness, step
    n = idx.size
    return {
        "name": name, "ident": ident, "kind": "linear" if layer.is_linear else "conv2d",
        "in_channels": in_c, "out_channels": out_c, "kernel": [kh, kw], "stride": list(lut._pair(layer.stride)),
        "padding": list(lut._pair(layer.padding)), "groups": 1, "z_vectors": n,
        "indices": byte_idx, "indices_packed": packed, "index_bits": index_bits,
        "lut": lut_name, "lut_step": layer.table_step,
        "act_bits": q.bits, "act_range": q.rng, "act_signed": q.signed, "act_step": q.step,
        "act_shift": power_of_two_exponent(q.step), "scale": q.step * layer.table_step,
        "bias": c_header.c_identifier(f"{name}.bias") if layer.bias is not None else None,
        "pool_scale": None if layer.scale is None else _array_entry(
            arrays, roles, f"{ident}_pool_scale", layer.scale.detach().cpu().to(torch.float32).numpy(), "scale"),
        "pool_scales": 0 if layer.scale is None else int(layer.scale.numel()),
        "storage_bytes": {"indices": int(arrays[byte_idx].nbytes), "indices_packed": int(arrays[packed].nbytes),
                          "indices_packed_bits": n * index_bits},
    }


def from_lutnet(model: nn.Module, ckpt: dict, *, act_bits: int, lut_bits: int, lut_mode: str,
                signed_mode: str) -> tuple[dict[str, np.ndarray], dict]:
    """The artifact of a network converted by :func:`wp.lutnet.convert` with ``lut_bits``-bit tables, from
    the pooled checkpoint ``ckpt`` it was built from: ``(arrays, manifest)``."""
    k, pooled = int(ckpt["k"]), list(ckpt["pooled_layers"])
    lut_layers = {n: m for n, m in model.named_modules() if isinstance(m, lutnet.LUTLayer)}
    if sorted(lut_layers) != sorted(pooled):
        raise WPError(f"the converted network runs {sorted(lut_layers)} from the table, the checkpoint pools {sorted(pooled)}")
    index_bits = compression.index_bits(k)
    ldt = lut_dtype(lut_bits, lut_mode)
    arrays: dict[str, np.ndarray] = {}
    roles: dict[str, str] = {}
    luts: list[dict] = []
    layers = []
    for name in pooled:
        layer = lut_layers[name]
        if layer.table.is_floating_point():
            raise WPError("the network runs from a float table: export needs lut_bits (integer table codes)")
        codes = layer.table.cpu()
        lo, hi = int(codes.min()), int(codes.max())
        if lo < np.iinfo(ldt).min or hi > np.iinfo(ldt).max:
            raise WPError(f"layer {name}: table codes [{lo}, {hi}] do not fit {ldt.name}")
        same = next((t for t in luts if torch.equal(t["codes"], codes) and t["step"] == layer.table_step), None)
        if same is None:
            same = {"array": f"lut_{len(luts)}", "codes": codes, "step": layer.table_step, "layers": []}
            luts.append(same)
            _array_entry(arrays, roles, same["array"], codes.numpy().astype(ldt), "lut")
        same["layers"].append(name)
        layers.append(_layer_entry(name, layer, arrays, roles, k, index_bits, same["array"], lut_bits))
    params = []
    omitted = []
    pooled_weights = {f"{n}.weight" for n in pooled}
    for sd_name, value in ckpt["state_dict"].items():
        if sd_name in pooled_weights or sd_name.endswith("num_batches_tracked") or f".{quant.QUANTIZER}." in sd_name:
            # an act_train checkpoint's quantizer buffers: the layer entries' act_bits/act_range/act_signed
            omitted.append(sd_name)
            continue
        arr = _array_entry(arrays, roles, c_header.c_identifier(sd_name), value.detach().cpu().to(torch.float32).numpy(), "param")
        params.append({"name": sd_name, "array": arr})
    net = models.create(ckpt["network"], **ckpt["model_args"])
    scale_counts = {e["name"]: e["pool_scales"] for e in layers} if any(e["pool_scale"] for e in layers) else None
    manifest = {
        "format": FORMAT, "network": ckpt["network"], "dataset": ckpt["dataset"], "model_args": dict(ckpt["model_args"]),
        "k": k, "act_bits": act_bits, "lut_bits": lut_bits, "lut_mode": lut_mode, "signed_mode": signed_mode,
        "pool_scale": ckpt.get("pool_scale", "none"),
        "index_bits": index_bits, "index_dtype": index_dtype(k).name, "lut_dtype": ldt.name,
        "retrained": ckpt.get("act_bits") is not None,
        "layers": layers,
        "luts": [{"array": t["array"], "step": t["step"], "layers": t["layers"]} for t in luts],
        "params": params, "omitted": omitted,
        "arrays": {n: {"shape": list(a.shape), "dtype": a.dtype.name, "bytes": int(a.nbytes), "role": roles[n]}
                   for n, a in arrays.items()},
        "storage": storage(net, pooled, k, lut_bits, len(luts), arrays, roles, scale_counts),
    }
    c_header.check_names(manifest)
    return arrays, manifest


def storage(model: nn.Module, pooled: list[str], k: int, lut_bits: int, tables: int, arrays: dict,
            roles: dict, scales: dict[str, int] | None = None) -> dict:
    """What the artifact stores, priced by :mod:`wp.compression` (Table 3's calculator): the indices
    bit-packed, ``tables`` tables of ``256·K`` ``lut_bits`` entries, every other weight and bias at the base
    precision. With one table this is :func:`wp.compression.weight_pool` exactly (``table3``); lutnet
    quantizes the table per layer (its range is the layer's), so identical tables are stored once and
    the others add ``256·K·lut_bits`` bits each. ``scales``: per layer its pool scales (stored as float32,
    priced so by Table 3 too). ``file_bytes``: the arrays as written (float32 params, byte and packed indices)."""
    table3 = compression.weight_pool(model, pooled, k, lut_bits, packed=True, scales=scales)
    fp = compression.weight_pool(model, pooled, k, lut_bits, packed=True, tables=tables, scales=scales)

    def numbers(f: compression.Footprint) -> dict:
        return {"params": f.params, "bits_int8": f.bits("int8"), "bytes_int8": f.bytes("int8"),
                "bytes_fp32": f.bytes("fp32"), "ratio_int8": f.ratio("int8"), "ratio_fp32": f.ratio("fp32"),
                "index_bytes_packed": f.bits_of("index") / 8, "lut_bytes": f.bits_of("lut") / 8,
                "scale_bytes": f.bits_of("scale") / 8,
                "unpooled_bytes_int8": (f.bits_of("weights") + f.bits_of("bias")) / 8}

    by_role: dict[str, int] = {}
    for name, a in arrays.items():
        by_role[roles[name]] = by_role.get(roles[name], 0) + int(a.nbytes)
    return {"tables": tables, **numbers(fp), "table3": numbers(table3), "file_bytes": by_role}


# ----------------------------------------------------------------------------------------------------
# Files: npz, json and the C header (:mod:`wp.c_header`)
# ----------------------------------------------------------------------------------------------------

def write(arrays: dict[str, np.ndarray], manifest: dict, out_npz: str | Path, out_json: str | Path,
          out_h: str | Path) -> dict:
    """Write the three files atomically (each under a temporary name, all renamed once all are written).
    Adds ``files`` (names and sizes) to the manifest and returns it."""
    out_npz, out_json, out_h = Path(out_npz), Path(out_json), Path(out_h)
    model = names.model(manifest["k"], manifest["act_bits"] if manifest["retrained"] else None)
    header = c_header.render(arrays, manifest, f"WP_{manifest['network']}_{manifest['dataset']}_{model}_a{manifest['act_bits']}"
                                             f"_lut{manifest['lut_bits']}_H")
    with atomic_path(out_npz) as t_npz, atomic_path(out_h) as t_h, atomic_path(out_json) as t_json:
        with open(t_npz, "wb") as f:  # a file object: np.savez would append .npz to a path
            np.savez(f, **arrays)
        t_h.write_text(header)
        manifest = {**manifest, "files": {"npz": out_npz.name, "npz_bytes": t_npz.stat().st_size,
                                          "h": out_h.name, "h_bytes": t_h.stat().st_size}}
        t_json.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
