"""Weight pools: z-vectors, which layers are pooled, projection onto the pool, and the retraining hook.

A *z-vector* is 8 consecutive input-channel weights of one filter at one kernel position:
``W[o, 8g:8g+8, y, x]``. Vectors of a conv weight ``W[out, in, kh, kw]`` are ordered o slowest, then y, x,
g (``W.permute(0, 2, 3, 1).reshape(-1, 8)``); a linear weight ``W[out, in]`` is treated as
``[out, 1, 1, in]``, so its vectors are 8 consecutive input features.

Projection (spec section 6.2): every vector is replaced by the pool vector of highest cosine
similarity (first index on ties), the pool vector itself with no scale. During retraining the
replacement happens in every forward pass and the gradient flows straight through to the latent
weights (``w + (p - w).detach()``); the pool is a frozen buffer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

VECTOR = 8  # z-vector length


def is_poolable(module: nn.Module, pool_fc: bool = False) -> bool:
    """A conv is poolable when it is not grouped/depthwise and its input channels divide into 8s."""
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.in_channels % VECTOR == 0
    if isinstance(module, nn.Linear):
        return pool_fc and module.in_features % VECTOR == 0
    return False


def pooled_layers(model: nn.Module, pool_fc: bool = False) -> list[str]:
    """Names of the layers that share the pool: every poolable conv except the first conv of the
    network, plus linear layers when ``pool_fc``. The k-means set is exactly this set."""
    names, first_conv_seen = [], False
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            is_first = not first_conv_seen
            first_conv_seen = True
            if is_first:
                continue
        if is_poolable(module, pool_fc):
            names.append(name)
    return names


def to_vectors(weight: torch.Tensor) -> torch.Tensor:
    """Weight (conv 4-D or linear 2-D) → (n, 8) z-vectors in the order o, y, x, g."""
    if weight.dim() == 2:
        weight = weight[:, :, None, None]
    return weight.permute(0, 2, 3, 1).reshape(-1, VECTOR)


def from_vectors(vectors: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`to_vectors` for a weight of ``shape``."""
    if len(shape) == 2:
        out_f, in_f = shape
        return vectors.reshape(out_f, 1, 1, in_f).permute(0, 3, 1, 2).reshape(out_f, in_f)
    out_c, in_c, kh, kw = shape
    return vectors.reshape(out_c, kh, kw, in_c).permute(0, 3, 1, 2).contiguous()


def assign(vectors: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Index of the pool vector with the highest cosine similarity to each vector (first on ties)."""
    sim = F.normalize(vectors, dim=1) @ F.normalize(pool, dim=1).T
    return sim.argmax(dim=1)


def project(weight: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace every z-vector of ``weight`` by its nearest pool vector; return (projected, indices)."""
    idx = assign(to_vectors(weight), pool.to(weight.dtype))
    return from_vectors(pool.to(weight.dtype)[idx], weight.shape), idx


class _StraightThrough(torch.autograd.Function):
    """Forward: the projected weight, exactly. Backward: the gradient passes to the latent weight unchanged."""

    @staticmethod
    def forward(ctx, latent: torch.Tensor, pool_vectors: torch.Tensor) -> torch.Tensor:
        return project(latent, pool_vectors)[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class PoolProjection(nn.Module):
    """Parametrization: the weight seen by the layer is the latent weight projected onto the pool,
    with a straight-through gradient to the latent weight."""

    def __init__(self, pool: torch.Tensor):
        super().__init__()
        self.register_buffer("pool", pool.detach().clone(), persistent=False)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return _StraightThrough.apply(latent, self.pool)


def model_vectors(model: nn.Module, layers: list[str]) -> tuple[torch.Tensor, list[int]]:
    """All z-vectors of ``layers`` concatenated in the given order, and the vector count per layer."""
    modules = dict(model.named_modules())
    parts = [to_vectors(_latent_weight(modules[name]).detach()) for name in layers]
    return torch.cat(parts).float(), [len(p) for p in parts]


def _latent_weight(module: nn.Module) -> torch.Tensor:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def attach(model: nn.Module, pool: torch.Tensor, layers: list[str]) -> nn.Module:
    """Make ``layers`` of ``model`` use the frozen ``pool`` in every forward pass (in place)."""
    modules = dict(model.named_modules())
    device = next(model.parameters()).device
    for name in layers:
        parametrize.register_parametrization(modules[name], "weight", PoolProjection(pool.to(device)))
    return model


def detach(model: nn.Module) -> nn.Module:
    """Bake the projected weights into plain parameters and remove the projection (in place)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def indices(model: nn.Module, pool: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Per pooled layer, the pool index (int16, on the CPU) of each of its z-vectors (order o, y, x, g)."""
    modules = dict(model.named_modules())
    out = {}
    for name in layers:
        latent = _latent_weight(modules[name]).detach()
        out[name] = assign(to_vectors(latent), pool.to(latent.device)).to(torch.int16).cpu()
    return out
