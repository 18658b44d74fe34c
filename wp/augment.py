"""Whole-batch augmentation on the device: random crop with zero padding and horizontal flip.

Random numbers come from a CPU ``torch.Generator`` so that a seed gives the same augmentation on
CPU and GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, crop_padding: int = 0, flip: bool = False) -> torch.Tensor:
    """Augment a batch ``x`` (n, c, h, w): each image is zero-padded by ``crop_padding`` and a random
    h x w window is cut out; with ``flip`` each image is mirrored left-right with probability 1/2."""
    n, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        oy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        padded = F.pad(x, (p, p, p, p))
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (n, h, 1)
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (n, 1, w)
        batch = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand((n,), generator=gen) < 0.5).to(x.device)[:, None, None, None]
        x = torch.where(mask, x.flip(3), x)
    return x.contiguous()
