"""Reading a weight-pool artifact (:mod:`wp.export`) back: the arrays and manifest checked against each
other (:func:`read`), and the deployed network rebuilt from them and the registry's architecture
(:func:`load`); its outputs equal those of the network :func:`wp.lutnet.convert` builds from the checkpoint.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from wp import WPError, lutnet, models
from wp.export import FORMAT, unpack_indices


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
