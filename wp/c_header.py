"""The C header of a weight-pool artifact (:mod:`wp.export`): C identifiers for the artifact's names,
the ``#define`` macros of the network, its pooled layers and arrays, and the header text itself, with
float literals that give the exact float32 / double back. ``C_SOURCE`` is the C file that computes a
pooled layer from it (``wp/export_c/lut_layer.c``); ``C_TYPES`` maps NumPy dtypes to C types for
every generated header (the MCU runtime's :func:`wp.intnet.c_header` too).
"""

from __future__ import annotations

import keyword
import math
import re
from pathlib import Path

import numpy as np

from wp import WPError, lut

C_SOURCE = Path(__file__).resolve().parent / "export_c" / "lut_layer.c"
C_TYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t", "uint8": "uint8_t",
           "uint16": "uint16_t", "float32": "float"}
C_KEYWORDS = {"auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
              "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return",
              "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void",
              "volatile", "while", "bool", "true", "false"}


def c_identifier(name: str) -> str:
    """A valid C identifier for a state_dict or layer name: every other character becomes ``_``, a
    leading digit or a C keyword gets a ``p_`` prefix (``features.0.weight`` → ``features_0_weight``)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not ident or ident[0].isdigit() or ident in C_KEYWORDS or keyword.iskeyword(ident) or ident.startswith("_"):
        ident = "p_" + ident
    return ident


def macro(ident: str) -> str:
    """The ``#define`` prefix of an artifact name (``conv2`` → ``WP_CONV2``)."""
    return "WP_" + ident.upper()


def _layer_macros(entry: dict) -> dict[str, str]:
    p = macro(entry["ident"])
    kh, kw = entry["kernel"]
    (sh, sw), (ph, pw) = entry["stride"], entry["padding"]
    out = {f"{p}_IN_CHANNELS": entry["in_channels"], f"{p}_OUT_CHANNELS": entry["out_channels"],
           f"{p}_KERNEL_H": kh, f"{p}_KERNEL_W": kw, f"{p}_STRIDE_H": sh, f"{p}_STRIDE_W": sw,
           f"{p}_PAD_H": ph, f"{p}_PAD_W": pw, f"{p}_GROUPS": entry["groups"], f"{p}_IS_LINEAR": int(entry["kind"] == "linear"),
           f"{p}_Z_VECTORS": entry["z_vectors"], f"{p}_ACT_BITS": entry["act_bits"], f"{p}_ACT_SIGNED": int(entry["act_signed"]),
           f"{p}_ACT_RANGE": c_float(entry["act_range"]), f"{p}_ACT_STEP": c_float(entry["act_step"]),
           f"{p}_LUT_STEP": c_float(entry["lut_step"]), f"{p}_SCALE": c_float(entry["scale"]),
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
    out = {f"{macro(name)}_SIZE": str(int(np.prod(shape, dtype=np.int64)))}
    out.update({f"{macro(name)}_DIM{i}": str(d) for i, d in enumerate(shape)})
    return out


def _all_macros(manifest: dict) -> list[dict[str, str]]:
    return ([_network_macros(manifest)] + [_layer_macros(e) for e in manifest["layers"]]
            + [_array_macros(n, a["shape"]) for n, a in manifest["arrays"].items()])


def check_names(manifest: dict) -> None:
    """Array names and macros are valid, distinct C identifiers."""
    seen: set[str] = set()
    for name in [*manifest["arrays"], *(m for group in _all_macros(manifest) for m in group)]:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in C_KEYWORDS:
            raise WPError(f"{name!r} is not a valid C identifier")
        if name in seen:
            raise WPError(f"two C names of the artifact are {name!r}: rename a layer of the network")
        seen.add(name)


def c_float(v: float) -> str:
    """A C literal that gives ``v`` back exactly: a float32 value with 9 significant digits and an ``f``
    suffix, any other double with 17."""
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
        items = [c_float(v) for v in flat.tolist()]
    else:
        items = [str(int(v)) for v in flat.tolist()]
    return "\n".join("    " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


def render(arrays: dict[str, np.ndarray], manifest: dict, guard: str) -> str:
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
