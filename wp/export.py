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

:func:`load` rebuilds the deployed network from the two files and the architecture of the registry
(:func:`wp.models.create`); its outputs equal those of the network lutnet builds from the checkpoint.
"""

from __future__ import annotations

import json
import keyword
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from wp import WPError, compression, lut, lutnet, models, quant
from wp.io import atomic_path

FORMAT = "wp-export/1"
C_SOURCE = Path(__file__).resolve().parent / "export_c" / "lut_layer.c"
LUT_BITS = (2, 16)  # table entries fit int8_t / int16_t
C_TYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "uint8": "uint8_t", "uint16": "uint16_t",
           "float32": "float"}
C_KEYWORDS = {"auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
              "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return",
              "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void",
              "volatile", "while", "bool", "true", "false"}


# ----------------------------------------------------------------------------------------------------
# Names, dtypes, bit packing
# ----------------------------------------------------------------------------------------------------

def c_identifier(name: str) -> str:
    """A valid C identifier for a state_dict or layer name: every other character becomes ``_``, a
    leading digit or a C keyword gets a ``p_`` prefix (``features.0.weight`` → ``features_0_weight``)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not ident or ident[0].isdigit() or ident in C_KEYWORDS or keyword.iskeyword(ident) or ident.startswith("_"):
        ident = "p_" + ident
    return ident


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
    ident = c_identifier(name)
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
        "bias": c_identifier(f"{name}.bias") if layer.bias is not None else None,
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
        arr = _array_entry(arrays, roles, c_identifier(sd_name), value.detach().cpu().to(torch.float32).numpy(), "param")
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
    _check_c_names(manifest)
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
# Files: npz, json, C header
# ----------------------------------------------------------------------------------------------------

def _macro(ident: str) -> str:
    return "WP_" + ident.upper()


def _layer_macros(entry: dict) -> dict[str, str]:
    p = _macro(entry["ident"])
    kh, kw = entry["kernel"]
    (sh, sw), (ph, pw) = entry["stride"], entry["padding"]
    out = {f"{p}_IN_CHANNELS": entry["in_channels"], f"{p}_OUT_CHANNELS": entry["out_channels"],
           f"{p}_KERNEL_H": kh, f"{p}_KERNEL_W": kw, f"{p}_STRIDE_H": sh, f"{p}_STRIDE_W": sw,
           f"{p}_PAD_H": ph, f"{p}_PAD_W": pw, f"{p}_GROUPS": entry["groups"], f"{p}_IS_LINEAR": int(entry["kind"] == "linear"),
           f"{p}_Z_VECTORS": entry["z_vectors"], f"{p}_ACT_BITS": entry["act_bits"], f"{p}_ACT_SIGNED": int(entry["act_signed"]),
           f"{p}_ACT_RANGE": _c_float(entry["act_range"]), f"{p}_ACT_STEP": _c_float(entry["act_step"]),
           f"{p}_LUT_STEP": _c_float(entry["lut_step"]), f"{p}_SCALE": _c_float(entry["scale"]),
           f"{p}_INDICES": entry["indices"], f"{p}_INDICES_PACKED": entry["indices_packed"], f"{p}_LUT": entry["lut"]}
    if entry["act_shift"] is not None:
        out[f"{p}_ACT_SHIFT"] = f"({entry['act_shift']})"
    if entry["bias"] is not None:
        out[f"{p}_BIAS"] = entry["bias"]
    if entry.get("pool_scale") is not None:
        out[f"{p}_POOL_SCALE"] = entry["pool_scale"]
        out[f"{p}_POOL_SCALES"] = entry["pool_scales"]
    return {k: str(v) for k, v in out.items()}


def _network_macros(manifest: dict) -> dict[str, str]:
    return {"WP_K": str(manifest["k"]), "WP_ACT_BITS": str(manifest["act_bits"]), "WP_LUT_BITS": str(manifest["lut_bits"]),
            "WP_INDEX_BITS": str(manifest["index_bits"]), "WP_POOLED_LAYERS": str(len(manifest["layers"])),
            "WP_LUT_ROWS": str(lut.PATTERNS), "WP_SIGNED_SPLIT": str(int(manifest["signed_mode"] == "split"))}


def _array_macros(name: str, shape: list[int]) -> dict[str, str]:
    out = {f"{_macro(name)}_SIZE": str(int(np.prod(shape, dtype=np.int64)))}
    out.update({f"{_macro(name)}_DIM{i}": str(d) for i, d in enumerate(shape)})
    return out


def _all_macros(manifest: dict) -> list[dict[str, str]]:
    return ([_network_macros(manifest)] + [_layer_macros(e) for e in manifest["layers"]]
            + [_array_macros(n, a["shape"]) for n, a in manifest["arrays"].items()])


def _check_c_names(manifest: dict) -> None:
    """Array names and macros are valid, distinct C identifiers."""
    seen: set[str] = set()
    for name in [*manifest["arrays"], *(m for group in _all_macros(manifest) for m in group)]:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in C_KEYWORDS:
            raise WPError(f"{name!r} is not a valid C identifier")
        if name in seen:
            raise WPError(f"two C names of the artifact are {name!r}: rename a layer of the network")
        seen.add(name)


def _c_float(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        raise WPError(f"a non-finite value ({v}) cannot go into the C header: the checkpoint is broken, rerun its stage")
    is_float32 = float(np.float32(v)) == v  # (np.float32(v) == v compares in float32 under NumPy 2: always true)
    text = f"{v:.9g}" if is_float32 else f"{v:.17g}"  # 9 digits give a float32 back exactly
    if not any(c in text for c in ".e"):
        text += ".0"  # 1 -> 1.0: a C floating literal needs a point or an exponent
    return text + "f" if is_float32 else text


def _c_values(a: np.ndarray, per_line: int = 12) -> str:
    flat = a.reshape(-1)
    if a.dtype == np.float32:
        items = [_c_float(v) for v in flat.tolist()]
    else:
        items = [str(int(v)) for v in flat.tolist()]
    return "\n".join("    " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


def c_header(arrays: dict[str, np.ndarray], manifest: dict, guard: str) -> str:
    """The C header: ``static const`` arrays (flattened, row-major; shapes in ``#define``\\ s), the
    network's and every pooled layer's ``#define``\\ s, and the typedefs ``wp_lut_t`` and ``wp_index_t``
    that ``wp/export_c/lut_layer.c`` uses."""
    guard = re.sub(r"[^A-Z0-9_]", "_", guard.upper())
    lines = [(f"/* {manifest['network']} on {manifest['dataset']}: weight pool K={manifest['k']}, "
              f"{manifest['act_bits']}-bit activations, {manifest['lut_bits']}-bit table ({manifest['lut_mode']}), "
              f"signed activations: {manifest['signed_mode']}."),
             " * Generated by `python -m wp export`; the manifest (.json) describes every array. Arrays are flattened",
             " * row-major; their shapes are the _DIMi macros. A pooled layer: see wp/export_c/lut_layer.c. */",
             f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
             f"typedef {C_TYPES[manifest['lut_dtype']]} wp_lut_t;", f"typedef {C_TYPES[manifest['index_dtype']]} wp_index_t;", ""]
    macros = _all_macros(manifest)
    for group in macros[:1 + len(manifest["layers"])]:
        lines += [f"#define {k} {v}" for k, v in group.items()] + [""]
    for name, a in arrays.items():
        lines += [f"#define {k} {v}" for k, v in _array_macros(name, list(a.shape)).items()]
        lines += [f"static const {C_TYPES[a.dtype.name]} {name}[{max(1, a.size)}] = {{", _c_values(a), "};", ""]
    lines += [f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def write(arrays: dict[str, np.ndarray], manifest: dict, out_npz: str | Path, out_json: str | Path,
          out_h: str | Path) -> dict:
    """Write the three files atomically (each under a temporary name, all renamed once all are written).
    Adds ``files`` (names and sizes) to the manifest and returns it."""
    out_npz, out_json, out_h = Path(out_npz), Path(out_json), Path(out_h)
    model = f"wp{manifest['k']}" + (f"_a{manifest['act_bits']}" if manifest["retrained"] else "")
    header = c_header(arrays, manifest, f"WP_{manifest['network']}_{manifest['dataset']}_{model}_a{manifest['act_bits']}"
                                        f"_lut{manifest['lut_bits']}_H")
    with atomic_path(out_npz) as t_npz, atomic_path(out_h) as t_h, atomic_path(out_json) as t_json:
        with open(t_npz, "wb") as f:  # a file object: np.savez would append .npz to a path
            np.savez(f, **arrays)
        t_h.write_text(header)
        manifest = {**manifest, "files": {"npz": out_npz.name, "npz_bytes": t_npz.stat().st_size,
                                          "h": out_h.name, "h_bytes": t_h.stat().st_size}}
        t_json.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# ----------------------------------------------------------------------------------------------------
# Reading an artifact back
# ----------------------------------------------------------------------------------------------------

def read(npz_path: str | Path, manifest_path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the manifest of an artifact, checked against each other."""
    npz_path, manifest_path = Path(npz_path), Path(manifest_path)
    for p in (npz_path, manifest_path):
        if not p.is_file():
            raise WPError(f"export file {p} is missing: run the export stage (snakemake {p})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise WPError(f"{manifest_path} is not a JSON manifest ({exc}): rerun the export stage") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WPError(f"{manifest_path} is not a wp export manifest ({FORMAT}): rerun the export stage")
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {n: z[n] for n in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WPError(f"{npz_path} is not a readable .npz ({type(exc).__name__}): rerun the export stage") from exc
    for name, meta in manifest["arrays"].items():
        a = arrays.get(name)
        if a is None or list(a.shape) != meta["shape"] or a.dtype.name != meta["dtype"]:
            raise WPError(f"{npz_path} does not match {manifest_path} (array {name!r}): export both again")
    return arrays, manifest


def load(npz_path: str | Path, manifest_path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The deployed network, rebuilt from an artifact alone and the architecture of the registry: float
    parameters from the arrays, every pooled layer a :class:`wp.lutnet.LUTLayer` running from the
    artifact's indices and table codes (the bit-packed indices are checked against the byte ones)."""
    arrays, manifest = read(npz_path, manifest_path)
    model = models.create(manifest["network"], **manifest["model_args"])
    state = {p["name"]: torch.from_numpy(arrays[p["array"]]) for p in manifest["params"]}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - set(manifest["omitted"]):
        raise WPError(f"{npz_path} does not fit network {manifest['network']!r} "
                      f"(missing {sorted(set(missing) - set(manifest['omitted']))[:3]}, unexpected {unexpected[:3]}): export it again")
    for entry in manifest["layers"]:
        name = entry["name"]
        layer = model.get_submodule(name)
        shape = (entry["out_channels"], entry["in_channels"], *entry["kernel"])
        geometry = tuple(layer.weight.shape) if isinstance(layer, nn.Conv2d) else (layer.out_features, layer.in_features, 1, 1)
        if geometry != shape:
            raise WPError(f"layer {name} of {manifest['network']!r} is {geometry}, the artifact's is {shape}: export it again")
        idx = torch.from_numpy(arrays[entry["indices"]].astype(np.int64)).reshape(-1)
        packed = unpack_indices(arrays[entry["indices_packed"]], entry["index_bits"], entry["z_vectors"])
        if not np.array_equal(packed, idx.numpy()):
            raise WPError(f"layer {name}: the packed indices differ from the byte indices: export it again")
        table = torch.from_numpy(arrays[entry["lut"]].astype(np.int64))
        scale = None if entry.get("pool_scale") is None else torch.from_numpy(arrays[entry["pool_scale"]])
        new = lutnet.LUTLayer(layer, idx, table, entry["lut_step"], entry["act_bits"], entry["act_range"],
                              entry["act_signed"], manifest["signed_mode"], scale)
        lutnet.replace_module(model, name, new)
    return model.to(device, memory_format=torch.channels_last).eval()
