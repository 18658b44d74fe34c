"""Ternary weights with TWN thresholds, optionally ternary activations as in TWTA-Net.

Weights (per layer, every forward pass): ``Δ = 0.7 · mean|W|`` (TWN's approximation of the optimal
threshold), ``t = sign(W) · [|W| > Δ]`` ∈ {-1, 0, +1}, and the layer uses ``α · t`` with TWN's
per-layer scale ``α = mean |W|`` over the kept entries. (TWTA-Net drops α and lets BatchNorm absorb
it; keeping α lets a warm start from the float network begin close to it.) The latent float weight is
what the optimizer updates; the gradient reaches it straight through with gain 1 (we train with SGD,
where TWTA-Net's gain of 2 would double the learning rate).

Activations (``activations=True``): the input of every ternary layer is clipped to [-1, 1] and
ternarized at ±0.5 (TWTA-Net's fixed threshold); the gradient passes where ``|x| < 1`` (hard-tanh's
straight-through estimator). After a ReLU the inputs are non-negative, so they take {0, 1}.

The first conv and the classifier keep float weights (TWTA-Net keeps both). Storage
(:func:`footprint`): 2 bits per ternary weight (one of four codes; base-3 packing, 5 trits per byte,
would give 1.6) plus one scale α per layer at the base precision.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from wp.compression import Footprint, Part, footprint as storage, weight_layers

DELTA_FACTOR = 0.7
ACT_THRESHOLD = 0.5
BITS = 2


def ternarize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes in {-1, 0, 1}, α, Δ) of one weight tensor."""
    w = weight.detach()
    delta = DELTA_FACTOR * w.abs().mean()
    codes = torch.sign(w) * (w.abs() > delta).to(w.dtype)
    kept = codes != 0
    alpha = w.abs()[kept].mean() if bool(kept.any()) else w.new_zeros(())
    return codes, alpha, delta


class _SteWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, latent: torch.Tensor) -> torch.Tensor:
        codes, alpha, _ = ternarize(latent)
        return alpha * codes

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class TernaryWeight(nn.Module):
    """Parametrization: the layer sees ``α · t`` of its latent weight; straight-through gradient."""

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return _SteWeight.apply(latent)


class _SteActivation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sign(x) * (x.abs() > ACT_THRESHOLD).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < 1.0).to(grad.dtype)


def ternary_activation(x: torch.Tensor) -> torch.Tensor:
    """clip to [-1, 1], then {-1, 0, 1} at ±0.5; gradient 1 where |x| < 1, else 0."""
    return _SteActivation.apply(x)


def attach(model: nn.Module, layers: list[str], activations: bool = False) -> list:
    """Make ``layers`` ternary (in place); with ``activations`` also ternarize their inputs.
    Returns the forward-hook handles of the activation quantizers (empty without them)."""
    modules = dict(model.named_modules())
    handles = []
    for name in layers:
        parametrize.register_parametrization(modules[name], "weight", TernaryWeight())
        if activations:
            handles.append(modules[name].register_forward_pre_hook(lambda mod, args: (ternary_activation(args[0]),)))
    return handles


def bake(model: nn.Module) -> nn.Module:
    """Replace the latent weights by their ternary values ``α · t`` and drop the parametrizations."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight") and isinstance(module.parametrizations.weight[0], TernaryWeight):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def footprint(model: nn.Module, layers: list[str], method: str = "ternary") -> Footprint:
    """Each ternary layer: 2-bit codes plus one scale at base precision."""
    modules = weight_layers(model)
    encoded = {n: [Part(n, "code", modules[n].weight.numel(), BITS), Part(n, "scale", 1)] for n in layers}
    return storage(model, method, encoded)
