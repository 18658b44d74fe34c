"""Retraining-free per-layer weight sharing with a per-layer design-space search (Dupuis et al., ASP-DAC 2022).

Approximation: every conv/linear weight tensor (first, last and depthwise layers included, biases
not) is clustered with a 1-D k-means into k_l values; each weight becomes its centroid. Nothing is
retrained. The k-means is Lloyd's algorithm from centroids spaced linearly between min(W) and max(W)
(Deep Compression's linear initialisation, as in the original): deterministic, no seed needed.

Search, scored on a validation split held out from the *training* set (the original scored on the
test set):
1. Per-layer sweep: for each layer alone and each candidate k, the validation top-1 of the network
   with only that layer shared.
2. Candidates: per layer, the k that keep top-1 >= budget · float top-1 on their own, one per index
   bit width (the most accurate), plus "float" (the original relaxes the budget instead when a layer
   has none; a float layer is the honest fallback).
3. Combination: a greedy descent with real evaluation instead of NSGA-II. Start with every layer
   float; repeatedly take the step (one layer down to its next cheaper candidate) with the most
   bits saved per point of accuracy the sweep predicts it costs; keep it when the whole network still
   meets the budget on the validation split, otherwise freeze that layer. At most
   ``layers × candidates`` evaluations.

Storage (:func:`footprint`): per shared layer ``ceil(log2 k_l)`` bits per weight plus the k_l centroids
at base precision, where k_l counts the clusters actually used (an empty cluster is not stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from wp import WPError
from wp.compression import Footprint, Part, footprint as storage, index_bits, weight_layers


def check_budget(budget: float) -> float:
    if not 0.0 < budget <= 1.0:
        raise WPError(f"sharing accuracy budget {budget} is out of range: choose 0 < budget <= 1 (e.g. 0.99 = keep 99% of float top-1)")
    return float(budget)


def kmeans_1d(weight: torch.Tensor, k: int, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted centroids, each weight's centroid index in the weight's shape) of 1-D k-means with
    linear initialisation. Centroids of clusters that end up empty are kept but unused."""
    if k < 2:
        raise WPError(f"cluster count {k} is too small: use k >= 2")
    x = weight.detach().flatten().double()
    centroids = torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64, device=x.device)
    for _ in range(max_iter):
        labels = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.bincount(labels, weights=x, minlength=k)
        moved = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        moved, _ = torch.sort(moved)
        if torch.equal(moved, centroids):
            break
        centroids = moved
    labels = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
    return centroids.to(weight.dtype), labels.reshape(weight.shape)


def share(weight: torch.Tensor, k: int, max_iter: int) -> tuple[torch.Tensor, int]:
    """The weight with every entry replaced by its centroid, and the number of clusters in use."""
    centroids, labels = kmeans_1d(weight, k, max_iter)
    return centroids[labels], int(torch.unique(labels).numel())


@dataclass
class Option:
    """One way to store a layer: shared with ``k`` requested clusters (``k_used`` in use), or float (k=0)."""

    k: int
    k_used: int
    val_top1: float

    @property
    def bits(self) -> int:
        """Index bits per weight (32 for float, the reference the savings are counted against)."""
        return 32 if self.k == 0 else index_bits(max(2, self.k_used))


def candidates(sweep: list[dict], layer: str, base_val: float, budget: float) -> list[Option]:
    """Float first, then per index bit width the most accurate k that meets the budget alone,
    most bits first."""
    best: dict[int, Option] = {}
    for row in sweep:
        if row["layer"] != layer or row["val_top1"] < budget * base_val:
            continue
        opt = Option(row["k"], row["k_used"], row["val_top1"])
        if opt.bits not in best or opt.val_top1 > best[opt.bits].val_top1:
            best[opt.bits] = opt
    return [Option(0, 0, base_val)] + [best[b] for b in sorted(best, reverse=True)]


def greedy(options: dict[str, list[Option]], sizes: dict[str, int], base_val: float, budget: float,
           score: Callable[[dict[str, Option]], float], resolution: float) -> tuple[dict[str, Option], float, int]:
    """Greedy descent over per-layer options (see the module docstring). ``score(choice)`` returns the
    validation top-1 of the network with those choices; ``resolution`` is one image's share of it, so a
    predicted loss of zero does not divide by zero. Returns (choice, its validation top-1, evaluations)."""
    level = {name: 0 for name in options}
    frozen: set[str] = set()
    current_val, evaluations = base_val, 0
    while True:
        moves = []
        for name, opts in options.items():
            if name in frozen or level[name] + 1 >= len(opts):
                continue
            here, there = opts[level[name]], opts[level[name] + 1]
            saved = sizes[name] * (here.bits - there.bits)
            loss = max(0.0, here.val_top1 - there.val_top1)
            moves.append((saved / (loss + resolution), name))
        if not moves:
            break
        _, name = max(moves, key=lambda m: m[0])  # first layer (model order) on equal merit
        level[name] += 1
        trial = {n: options[n][level[n]] for n in options}
        acc = score(trial)
        evaluations += 1
        if acc >= budget * base_val:
            current_val = acc
        else:
            level[name] -= 1
            frozen.add(name)
    return {n: options[n][level[n]] for n in options}, current_val, evaluations


def footprint(model: nn.Module, k_used: dict[str, int], method: str = "sharing") -> Footprint:
    """Each shared layer (``k_used[layer]`` clusters in use): indices of ``ceil(log2 k)`` bits per weight
    plus the codebook at base precision; float layers stay at base precision."""
    modules = weight_layers(model)
    encoded = {n: [Part(n, "index", modules[n].weight.numel(), index_bits(max(2, k))), Part(n, "codebook", k)]
               for n, k in k_used.items()}
    return storage(model, method, encoded)
