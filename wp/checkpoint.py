"""Checkpoint files (``torch.save`` of plain dicts, loaded with ``weights_only=True``).

Keys: ``format`` ("wp-checkpoint/1"), ``kind`` ("float" or "pooled"), ``network``, ``dataset``,
``model_args`` (in_channels, num_classes, image_size), ``state_dict`` (plain parameter names; for a
pooled model the *projected* weights), and for pooled models ``pool`` (K x 8), ``pooled_layers``
and ``indices`` (per layer, one pool index per z-vector); with a pool scale (:mod:`wp.pool`) also
``pool_scale`` ("layer" or "channel") and ``scales`` (per layer, its 1 or out-channels scales; the
weights are then the scaled pool vectors). A pooled checkpoint without ``pool_scale`` has no scale.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from wp import WPError, models
from wp.io import atomic_path

FORMAT = "wp-checkpoint/1"


def save(path: str | Path, model: nn.Module, *, network: str, dataset: str, model_args: dict,
         kind: str = "float", **extra) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "kind": kind, "network": network, "dataset": dataset,
               "model_args": dict(model_args), "state_dict": state, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def scale_entries(pool_scale: str, scales: dict | None) -> dict:
    """The checkpoint keys of a pool scale: none for "none" (checkpoints stay as they were), else
    ``pool_scale`` and ``scales``."""
    return {} if pool_scale == "none" else {"pool_scale": pool_scale, "scales": scales}


def pool_scale(ckpt: dict) -> tuple[str, dict | None]:
    """``(pool_scale, scales)`` of a pooled checkpoint (``("none", None)`` without a scale)."""
    return ckpt.get("pool_scale", "none"), ckpt.get("scales")


def load(path: str | Path, *, network: str | None = None, kind: str | None = None) -> dict:
    """Load and check a checkpoint; ``network``/``kind`` name what the caller expects."""
    path = Path(path)
    if not path.is_file():
        raise WPError(f"checkpoint {path} is missing: run the stage that writes it (snakemake {path})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a foreign or damaged file
        raise WPError(f"{path} is not a readable wp checkpoint ({type(exc).__name__}): delete it and rerun its stage") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WPError(f"{path} is not a wp checkpoint: delete it and rerun its stage")
    if network is not None and ckpt["network"] != network:
        raise WPError(f"checkpoint {path} holds network {ckpt['network']!r}, not {network!r}: "
                      f"pass the checkpoint of {network} (or rerun its pretrain stage)")
    if kind is not None and ckpt["kind"] != kind:
        raise WPError(f"checkpoint {path} is a {ckpt['kind']} model, this stage needs a {kind} one: pass the right file")
    return ckpt


def build(ckpt: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The network of ``ckpt`` with its weights loaded."""
    model = models.create(ckpt["network"], **ckpt["model_args"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise WPError(f"checkpoint weights do not fit network {ckpt['network']!r} with {ckpt['model_args']} ({first}): "
                      f"the checkpoint comes from another network or dataset; rerun pretrain") from exc
    return model.to(device, memory_format=torch.channels_last)
