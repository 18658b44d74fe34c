"""K-means with cosine assignment and arithmetic-mean centres (the paper's clustering), seeded.

``kmeans`` is our implementation (CPU or GPU, one matrix product per iteration). Everything stays
on the device; each iteration reads back three numbers at once (empty clusters, changed labels,
centre shift) for the stopping test, and the similarity matrix is built in row chunks sized for the
device (all 340,992 z-vectors of resnet_14 against K = 128 in one product on a GPU). ``kmeans_pytorch``
runs the reference's library (kmeans-pytorch 0.3) for side-by-side parity; it has no seed argument,
so numpy's global generator is seeded before the call.

Semantics of both: a vector belongs to the centre of highest cosine similarity; a centre is the
arithmetic mean of its raw members (so centres keep the weights' scale). Inertia is the sum over
vectors of the cosine distance ``1 - cos(x, c)`` to their centre.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wp import WPError


@dataclass
class KMeansResult:
    centers: torch.Tensor  # (k, d) float32
    labels: torch.Tensor  # (n,) int64
    inertia: float
    iterations: int
    converged: bool
    seconds: float
    backend: str


def chunk_rows(device: torch.device, k: int) -> int:
    """Rows per similarity block: about 256 MiB of fp32 similarities on a GPU (one block for every
    network here), 16k rows on the CPU (blocks that stay in cache)."""
    return max(1 << 14, (256 << 20) // (4 * k)) if device.type == "cuda" else 1 << 14


def _labels_and_sim(x_unit: torch.Tensor, centers: torch.Tensor, chunk: int = 1 << 14) -> tuple[torch.Tensor, torch.Tensor]:
    c_unit = F.normalize(centers, dim=1)
    labels, best = [], []
    for start in range(0, len(x_unit), chunk):
        sim = x_unit[start:start + chunk] @ c_unit.T
        b, lab = sim.max(dim=1)
        labels.append(lab)
        best.append(b)
    return torch.cat(labels), torch.cat(best)


def _init_centers(x: torch.Tensor, x_unit: torch.Tensor, k: int, init: str, gen: torch.Generator) -> torch.Tensor:
    n = len(x)
    if init == "random":
        return x[torch.randperm(n, generator=gen, device="cpu")[:k].to(x.device)].clone()
    if init != "kmeans++":
        raise WPError(f"unknown k-means init {init!r}: use 'kmeans++' or 'random'")
    # k-means++ with cosine distance: next centre drawn with probability proportional to D^2.
    first = int(torch.randint(n, (1,), generator=gen))
    chosen = [first]
    best_sim = x_unit @ x_unit[first]
    for _ in range(1, k):
        d2 = (1.0 - best_sim).clamp_min(0).double() ** 2
        total = float(d2.sum())
        if total <= 0:  # every vector coincides with a centre: fall back to a random row
            nxt = int(torch.randint(n, (1,), generator=gen))
        else:
            u = float(torch.rand((1,), generator=gen, dtype=torch.float64)) * total
            nxt = int(torch.searchsorted(torch.cumsum(d2, 0), torch.tensor([u], dtype=torch.float64, device=x.device)).clamp_max(n - 1))
        chosen.append(nxt)
        best_sim = torch.maximum(best_sim, x_unit @ x_unit[nxt])
    return x[torch.tensor(chosen, device=x.device)].clone()


def kmeans(x: torch.Tensor, k: int, *, seed: int, init: str, max_iter: int, tol: float, device: str | torch.device = "cpu") -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` centres (cosine assignment, mean centres).

    Stops when no assignment changes, when the squared total centre shift falls below ``tol``
    (the reference library's criterion), or after ``max_iter`` iterations. An empty cluster is
    re-seeded with the vector farthest (in cosine distance) from its current centre.
    """
    if not 2 <= k <= len(x):
        raise WPError(f"pool size {k} is invalid for {len(x)} vectors: choose 2 <= K <= {len(x)}")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    x = x.to(device=device, dtype=torch.float32)
    x_unit = F.normalize(x, dim=1)
    centers = _init_centers(x, x_unit, k, init, gen)
    labels = None
    chunk = chunk_rows(x.device, k)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        new_labels, sim = _labels_and_sim(x_unit, centers, chunk)
        sums = torch.zeros_like(centers).index_add_(0, new_labels, x)
        counts = torch.bincount(new_labels, minlength=k).to(x.dtype)
        new_centers = sums / counts.clamp_min(1)[:, None]
        changed = (new_labels != labels).sum() if labels is not None else torch.tensor(-1, device=x.device)
        shift_sum = (new_centers - centers).norm(dim=1).sum()
        stats = torch.stack([(counts == 0).sum().double(), changed.double(), shift_sum.double()])
        n_empty, n_changed, shift_sum = stats.tolist()  # the iteration's one read-back
        if n_empty:  # rare: re-seed the empty clusters, then measure the shift again
            empty = (counts == 0).nonzero().flatten()
            new_centers[empty] = x[torch.argsort(sim)[: len(empty)]]  # the worst-fitting vectors
            shift_sum = float((new_centers - centers).norm(dim=1).sum())
        unchanged = n_changed == 0 and not n_empty
        centers, labels = new_centers, new_labels
        if unchanged or shift_sum ** 2 < tol:
            converged = True
            break
    labels, sim = _labels_and_sim(x_unit, centers, chunk)
    inertia = float((1.0 - sim).double().sum())
    return KMeansResult(centers.float().cpu(), labels.cpu(), inertia, it, converged, time.perf_counter() - t0, "torch")


def kmeans_pytorch(x: torch.Tensor, k: int, *, seed: int = 0, tol: float = 1e-4,
                   device: str | torch.device = "cpu") -> KMeansResult:
    """The reference's library, kmeans-pytorch 0.3 (no iteration cap, no empty-cluster handling)."""
    try:
        from kmeans_pytorch import kmeans as kp_kmeans
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise WPError("kmeans-pytorch is not installed: pip install kmeans-pytorch==0.3 tqdm") from exc
    t0 = time.perf_counter()
    np.random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its prints and tqdm bar
        _, centers = kp_kmeans(X=x.float().cpu(), num_clusters=k, distance="cosine", tol=tol,
                               device=torch.device(device))
    centers = centers.float().cpu()
    if torch.isnan(centers).any():
        raise WPError(f"kmeans-pytorch produced NaN centres (an empty cluster) for K={k}: use backend 'torch'")
    labels, sim = _labels_and_sim(F.normalize(x.float().cpu(), dim=1), centers)
    inertia = float((1.0 - sim).double().sum())
    return KMeansResult(centers, labels, inertia, -1, True, time.perf_counter() - t0, "kmeans_pytorch")
