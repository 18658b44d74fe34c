"""Checkpoint files (``torch.save`` of plain dicts, loaded with ``weights_only=True``).

Keys: ``format`` ("wp-checkpoint/1"), ``kind`` ("float" or "pooled"), ``network``, ``dataset``,
``model_args`` (in_channels, num_classes, image_size), ``state_dict`` (plain parameter names; for a
pooled model the *projected* weights), and for pooled models ``pool`` (K x 8), ``pooled_layers``
and ``indices`` (per layer, one pool index per z-vector); ``wp_train``'s also ``latent`` (per pooled
layer, the latent, unprojected weight retraining ended with: where ``act_train`` starts); with a pool
scale (:mod:`wp.pool`) also ``pool_scale`` ("layer" or "channel") and ``scales`` (per layer, its 1 or
out-channels scales; the weights are then the scaled pool vectors). A pooled checkpoint without
``pool_scale`` has no scale. Retrained with ``pool_assign: soft`` (:mod:`wp.pool`) it also records
``pool_assign`` ("soft"; ``pool`` is then the trained pool); without the key, "hard". ``act_train``'s (``act_bits``, ``act_ste``) also holds, in ``state_dict``, each
pooled layer's activation quantizer (``<layer>.act_quant.act_bits/act_range/act_signed``,
:class:`wp.quant.ActQuantizer`): :func:`build` attaches them before loading the weights.

Every checkpoint a stage writes also records ``selection``: the images that stage used
(:func:`wp.selection.record`: ``stage``, ``seed``, ``settings`` and the index arrays ``train``, ``val``
(or None) and ``test`` as int64 tensors); later stages read it (:func:`wp.selection.recorded`) instead of
re-deriving it, and a checkpoint without one stops them with the stage to rerun.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from wp import WPError, models, quant
from wp.io import atomic_path, wrong_file

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


def assign_entries(pool_assign: str) -> dict:
    """The checkpoint key of the retraining's pool assignment (:mod:`wp.pool`): none for the paper's
    "hard" (checkpoints stay as they were), else ``pool_assign``."""
    return {} if pool_assign == "hard" else {"pool_assign": pool_assign}


def pool_assign(ckpt: dict) -> str:
    """The pool assignment a pooled checkpoint was retrained with (``"hard"`` without the key)."""
    return ckpt.get("pool_assign", "hard")


def load(path: str | Path, *, network: str | None = None, kind: str | None = None) -> dict:
    """Load and check a checkpoint; ``network``/``kind`` name what the caller expects."""
    path = Path(path)
    if not path.is_file():
        raise WPError(f"checkpoint {path} is missing: run the stage that writes it (snakemake {path})")
    fix = "a checkpoint that a training stage writes (pretrained.pt, wp{K}.pt, retrain/wp{K}_a{B}.pt)"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a foreign or damaged file
        raise WPError(wrong_file(path, FORMAT, "wp checkpoint", fix)) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WPError(wrong_file(path, FORMAT, "wp checkpoint", fix))
    if network is not None and ckpt["network"] != network:
        raise WPError(f"checkpoint {path} holds network {ckpt['network']!r}, not {network!r}: "
                      f"pass the checkpoint of {network} (or rerun its pretrain stage)")
    if kind is not None and ckpt["kind"] != kind:
        raise WPError(f"checkpoint {path} is a {ckpt['kind']} model, this stage needs a {kind} one: pass the right file")
    return ckpt


def latent_weights(model: nn.Module, layers: list[str]) -> dict[str, torch.Tensor]:
    """Per layer of ``layers``, the weight the optimizer holds (CPU copies): the latent weight of a
    parametrized layer (the pool projection), else its weight."""
    from torch.nn.utils import parametrize

    modules = dict(model.named_modules())
    out = {}
    for name in layers:
        m = modules[name]
        w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
        out[name] = w.detach().cpu().contiguous().clone()
    return out


def pooled_summary(state_dict: dict, layers: list[str]) -> dict:
    """``pooled_conv_vectors`` (z-vectors of the pooled convs) and ``pooled_fc`` (whether a linear layer
    is pooled) of the pooled ``layers`` of a model's ``state_dict``: what the tables compare with the
    reference's pooled set."""
    shapes = {n: state_dict[f"{n}.weight"].shape for n in layers}
    return {"pooled_conv_vectors": sum(s.numel() // 8 for s in shapes.values() if len(s) == 4),
            "pooled_fc": any(len(s) == 2 for s in shapes.values())}


def require_latent(ckpt: dict, ckpt_path) -> dict[str, torch.Tensor]:
    """The checkpoint's latent weights; an older checkpoint without them stops with the rerun that
    writes them."""
    latent = ckpt.get("latent")
    if not latent or set(latent) != set(ckpt["pooled_layers"]):
        raise WPError(f"checkpoint {ckpt_path} holds no latent weights (written before wp_train kept them): rerun "
                      f"wp_train (snakemake --forcerun wp_train), or start from the projected weights (sweeps.table6.start: projected)")
    return latent


def load_latent(model: nn.Module, ckpt: dict, ckpt_path) -> None:
    """Put the checkpoint's latent weights into its pooled layers (in place)."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, w in require_latent(ckpt, ckpt_path).items():
            modules[name].weight.copy_(w)


def build(ckpt: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The network of ``ckpt`` with its weights loaded (and the activation quantizers its ``state_dict``
    holds attached, :func:`wp.quant.attach_for_loading`)."""
    model = models.create(ckpt["network"], **ckpt["model_args"])
    try:
        quant.attach_for_loading(model, ckpt["state_dict"])
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise WPError(f"checkpoint weights do not fit network {ckpt['network']!r} with {ckpt['model_args']} ({first}): "
                      f"the checkpoint comes from another network or dataset; rerun pretrain") from exc
    return model.to(device, memory_format=torch.channels_last)


def require_quantizers(ckpt: dict, ckpt_path) -> None:
    """An ``act_train`` checkpoint from before its activation quantizers were kept in ``state_dict`` (the
    ranges only in an ``act_ranges`` entry) stops with the rerun that writes them."""
    if "act_ranges" in ckpt and not quant.state_dict_layers(ckpt["state_dict"]):
        raise WPError(f"checkpoint {ckpt_path} keeps its activation ranges outside its weights (written by an older "
                      f"act_train): rerun act_train (snakemake --forcerun act_train)")


def check_dataset(ckpt: dict, dataset: str, ckpt_path) -> None:
    """Refuse a checkpoint trained on another dataset than ``dataset`` (one clear line)."""
    if ckpt["dataset"] != dataset:
        raise WPError(f"checkpoint {ckpt_path} was trained on {ckpt['dataset']!r}, not {dataset!r}: pass the matching data file")
