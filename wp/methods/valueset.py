"""Value-set weight search: an SLB-style categorical search over a fixed set of weight values.

Every searched weight w_i holds a vector of logits α_i over the value set V (the layer keeps no real
weight). The forward pass uses ``s · V[argmax α_i]``; the backward pass uses the gradient of the
tempered soft expectation ``s · Σ_j softmax(α_i / T)_j · v_j`` (straight-through argmax; Gumbel noise
is off, as in every shipped config of the original). T follows ``T = max(T0 · decay^epoch, T_min)``,
advanced by :meth:`ValueSetWeight.advance` after every optimizer step.

Departures from the original, both labelled: (1) a warm start from the float network: per layer a
scale ``s`` is fitted to the float weights (least quantization error over a grid) and each weight's
logits start at ``-sharpness · (w/s - v_j)² / gap²``, so its nearest value wins. The logit gradient,
``(1/T) · y_j · s · (v_j - w̄) · ∂L/∂w``, is tiny (about 1e-5 per step on our networks), so the
default sharpness (1e-3) keeps the logits close enough for training to reorder them, as the
original's near-uniform start does; a sharpness of 1 would freeze the warm start. ``sharpness=0`` is
the original's start: logits ``log(1/|V|)`` plus uniform noise of ±5e-6, a random initial choice.
(2) The per-layer scale ``s`` itself (the original has none and relies on BatchNorm), which keeps
the warm-started layer's output at the float network's scale.

First conv and classifier stay float unless asked (the original's ``--quantize-first-layer`` /
``--quantize-last-layer``). Storage (:func:`footprint`): ``ceil(log2 |V|)`` bits per weight, one
scale per layer at base precision, and the set V once for the network at base precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from wp import WPError
from wp.compression import Footprint, Part, footprint as storage, index_bits, weight_layers

VALUE_SETS: dict[str, tuple[float, ...]] = {
    "pm1": (-1.0, 1.0),
    "pm1_half": (-1.0, -0.5, 0.5, 1.0),
    "pow2_4": (-2.0, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 2.0),
    "int2": (-2.0, -1.0, 0.0, 1.0),
    "int3": (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
}
SCALE_GRID = 64  # candidate scales tried by fit_scale


def values(name: str) -> torch.Tensor:
    """The value set ``name`` as a sorted float32 tensor."""
    if name not in VALUE_SETS:
        raise WPError(f"unknown value set {name!r}: use one of {', '.join(VALUE_SETS)}")
    return torch.tensor(sorted(VALUE_SETS[name]), dtype=torch.float32)


def nearest(x: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    """Index into sorted ``vals`` of the value nearest to each entry of ``x`` (lower one on ties)."""
    mid = (vals[1:] + vals[:-1]) / 2
    return torch.bucketize(x, mid.to(x.dtype), right=False)


def fit_scale(weight: torch.Tensor, vals: torch.Tensor) -> float:
    """The scale s (one per layer) that minimises ``||W - s · V[nearest(W / s)]||²`` over a grid of
    ``SCALE_GRID`` candidates from 2% to 100% of ``max|W| / max|V|``."""
    w = weight.detach().float().flatten()
    v = vals.to(w.device)
    top = float(w.abs().max()) / float(v.abs().max())
    if top == 0.0:
        return 1.0
    best, best_err = top, float("inf")
    for s in torch.linspace(0.02 * top, top, SCALE_GRID).tolist():
        err = float(((w - s * v[nearest(w / s, v)]) ** 2).sum())
        if err < best_err:
            best, best_err = s, err
    return best


class ValueSetWeight(nn.Module):
    """Parametrization: logits (weight shape × |V|) → ``scale · V[argmax]`` in the forward pass, with the
    tempered softmax's gradient. Temperature and step count are buffers, so resuming restores them."""

    def __init__(self, vals: torch.Tensor, scale: float, *, t0: float, decay: float, t_min: float, sharpness: float):
        super().__init__()
        self.sharpness = sharpness
        self.register_buffer("values", vals.clone().float())
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("temperature", torch.tensor(float(t0)))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.t0, self.decay, self.t_min = t0, decay, t_min

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        vals = self.values.to(logits.dtype)
        hard = self.scale * vals[logits.argmax(-1)]
        if not torch.is_grad_enabled() or not logits.requires_grad:
            return hard
        soft = self.scale * (F.softmax(logits / self.temperature, dim=-1) @ vals)
        return hard + (soft - soft.detach())  # value: exactly ``hard``; gradient: the soft expectation's

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """Initial logits: ``-sharpness · (w/s - v_j)² / gap²`` (gap: the set's smallest spacing), so the
        value nearest to w/s has the largest logit; with sharpness 0 the original's near-uniform
        random start (drawn from torch's global generator, which the stage seeds)."""
        vals = self.values.to(weight.dtype)
        if self.sharpness == 0:
            noise = (torch.rand(*weight.shape, len(vals), dtype=weight.dtype) * 2 - 1) * 5e-6
            return math.log(1.0 / len(vals)) + noise.to(weight.device)
        gap = float((vals[1:] - vals[:-1]).min())
        return -self.sharpness * ((weight / self.scale)[..., None] - vals) ** 2 / gap**2

    @torch.no_grad()
    def advance(self, steps_per_epoch: int) -> None:
        """One optimizer step done: T = max(T0 · decay^epoch, T_min) with epoch = steps // steps_per_epoch."""
        self.steps += 1
        epoch = int(self.steps) // max(1, steps_per_epoch)
        self.temperature.fill_(max(self.t0 * self.decay**epoch, self.t_min))


def attach(model: nn.Module, layers: list[str], vals: torch.Tensor, *, t0: float, decay: float, t_min: float,
           sharpness: float) -> list[ValueSetWeight]:
    """Replace each layer's weight by logits over ``vals`` (in place); returns the parametrizations."""
    modules = dict(model.named_modules())
    out = []
    for name in layers:
        weight = modules[name].weight
        p = ValueSetWeight(vals, fit_scale(weight, vals), t0=t0, decay=decay, t_min=t_min, sharpness=sharpness).to(weight.device)
        parametrize.register_parametrization(modules[name], "weight", p, unsafe=True)
        out.append(p)
    return out


def choices(model: nn.Module, layers: list[str]) -> dict[str, torch.Tensor]:
    """Per searched layer, the chosen value index of every weight (argmax of its logits)."""
    modules = dict(model.named_modules())
    return {n: modules[n].parametrizations.weight.original.detach().argmax(-1).cpu() for n in layers}


def scales(model: nn.Module, layers: list[str]) -> dict[str, float]:
    modules = dict(model.named_modules())
    return {n: float(modules[n].parametrizations.weight[0].scale) for n in layers}


def bake(model: nn.Module) -> nn.Module:
    """Replace the logits by the chosen weights ``s · V[argmax]`` and drop the parametrizations."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight") and isinstance(module.parametrizations.weight[0], ValueSetWeight):
            with torch.no_grad():
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def footprint(model: nn.Module, layers: list[str], set_size: int, method: str = "valueset") -> Footprint:
    """Each searched layer: ``ceil(log2 |V|)``-bit codes plus a scale at base precision; the set once."""
    modules = weight_layers(model)
    bits = index_bits(set_size)
    encoded = {n: [Part(n, "code", modules[n].weight.numel(), bits), Part(n, "scale", 1)] for n in layers}
    return storage(model, method, encoded, [Part("", "codebook", set_size)])
