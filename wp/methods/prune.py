"""Magnitude pruning with retraining (Han et al., NIPS 2015).

Han's rule removes, in every layer l, the weights with ``|w| <= q · std(W_l)``; q is a quality
parameter. We use one q for all pruned layers and pick it so that the pruned layers together reach a
target sparsity: q is the target quantile of the per-layer normalised magnitudes ``|w| / std(W_l)``.
The threshold stays per layer (it scales with each layer's spread), as in the paper.

Pruning is iterative: ``rounds`` prune → retrain rounds whose sparsity grows geometrically in density,
``s_r = 1 - (1 - s)^(r/R)`` (e.g. 0.9 in three rounds: 0.54, 0.78, 0.90). Pruned weights keep their
zero: the 0/1 masks are re-applied to the weights *and* to the optimizer's per-weight state (momentum,
Adam moments) after every optimizer step, so neither momentum nor weight decay revives them
(the fix Distiller made; masking only the gradient lets them come back). Biases and BatchNorm are
never pruned.

Storage (:func:`footprint`): per pruned layer a bitmap of one bit per weight plus the surviving
weights at the base precision (fp32 or int8). A bitmap is simpler than Deep Compression's relative
indices and within a few percent of them at the sparsities we test (90%: 1 + 0.1·32 = 4.2 bits per
weight vs about 3.6 with 4-bit relative indices). Han's own ratio, parameters over non-zero
parameters, ignores the index and is reported beside it (:func:`han_ratio`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from wp import WPError
from wp.compression import Footprint, Part, footprint as storage, weight_layers


def check_sparsity(sparsity: float) -> float:
    if not 0.0 < sparsity < 1.0:
        raise WPError(f"prune sparsity {sparsity} is out of range: choose 0 < sparsity < 1 (e.g. 0.9 keeps 10% of the weights)")
    return float(sparsity)


def schedule(sparsity: float, rounds: int) -> list[float]:
    """Target sparsity after each of ``rounds`` rounds: geometric in the kept fraction, ending at ``sparsity``."""
    check_sparsity(sparsity)
    if rounds < 1:
        raise WPError(f"prune rounds {rounds} is out of range: choose at least 1")
    return [1.0 - (1.0 - sparsity) ** (r / rounds) for r in range(1, rounds + 1)]


def normalized_magnitudes(weight: torch.Tensor) -> torch.Tensor:
    """``|w| / std(W)`` (std over the whole tensor, zeros included): the scale Han's threshold is in."""
    w = weight.detach().float()
    return w.abs() / w.std().clamp_min(1e-12)


def quality(weights: list[torch.Tensor], sparsity: float) -> float:
    """The q at which ``|w| <= q · std(W_l)`` removes the fraction ``sparsity`` of all ``weights``."""
    check_sparsity(sparsity)
    scores = torch.cat([normalized_magnitudes(w).flatten() for w in weights])
    n_pruned = int(round(sparsity * scores.numel()))
    if n_pruned == 0:
        return 0.0
    return float(torch.kthvalue(scores.cpu(), n_pruned).values)


def masks(model: nn.Module, layers: list[str], q: float) -> dict[str, torch.Tensor]:
    """Per layer, the 0/1 mask (weight dtype) of the weights that survive ``|w| > q · std(W_l)``.
    A weight already at zero always scores 0, so once pruned it stays pruned in later rounds."""
    modules = dict(model.named_modules())
    return {n: (normalized_magnitudes(modules[n].weight) > q).to(modules[n].weight.dtype) for n in layers}


class MaskKeeper:
    """Holds the masks of a model's pruned layers and zeroes what they remove: the weights and, after an
    optimizer step, every per-weight optimizer state of the same shape (momentum, Adam's moments)."""

    def __init__(self, model: nn.Module, layer_masks: dict[str, torch.Tensor]):
        modules = dict(model.named_modules())
        self.pairs = [(modules[n].weight, m.to(modules[n].weight.device)) for n, m in layer_masks.items()]

    @torch.no_grad()
    def apply(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        for weight, mask in self.pairs:
            weight.mul_(mask)
            if optimizer is not None:
                for value in optimizer.state.get(weight, {}).values():
                    if torch.is_tensor(value) and value.shape == weight.shape:
                        value.mul_(mask)


def sparsity_of(model: nn.Module, layers: list[str]) -> float:
    """Fraction of exact zeros among the weights of ``layers``."""
    modules = dict(model.named_modules())
    total = sum(modules[n].weight.numel() for n in layers)
    zeros = sum(int((modules[n].weight == 0).sum()) for n in layers)
    return zeros / max(1, total)


def footprint(model: nn.Module, layers: list[str], method: str = "prune") -> Footprint:
    """Each pruned layer: a 1-bit-per-weight bitmap plus its non-zero weights at base precision."""
    modules = weight_layers(model)
    encoded = {}
    for name in layers:
        w = modules[name].weight
        encoded[name] = [Part(name, "mask", w.numel(), 1), Part(name, "weights", int((w != 0).sum()))]
    return storage(model, method, encoded)


def han_ratio(model: nn.Module) -> float:
    """Han et al.'s compression: counted parameters over non-zero counted parameters (no index cost)."""
    total = nonzero = 0
    for m in weight_layers(model).values():
        for p in (m.weight, m.bias):
            if p is not None:
                total += p.numel()
                nonzero += int((p != 0).sum())
    return total / max(1, nonzero)
