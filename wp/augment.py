"""Whole-batch augmentation on the device: random crop with zero padding and horizontal flip.

Random numbers come from a CPU ``torch.Generator`` so that a seed gives the same augmentation on
CPU and GPU. Training draws a whole epoch's numbers at once (:func:`draw`) and copies them to the
device in one transfer: a copy from the CPU per step would make the GPU wait for the host every
step. The numbers are drawn batch by batch in the order a per-batch draw uses, so drawing per epoch
or per batch gives the same stream. Batches come out channels_last (NHWC in memory), the layout
the models use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Draws:
    """Per-image random choices: crop offsets ``oy``, ``ox`` (None without cropping) and the flip
    mask (None without flipping)."""

    oy: torch.Tensor | None
    ox: torch.Tensor | None
    flip: torch.Tensor | None

    def to(self, device: torch.device) -> "Draws":
        return Draws(*(None if t is None else t.to(device) for t in (self.oy, self.ox, self.flip)))

    def slice(self, start: int, stop: int) -> "Draws":
        return Draws(*(None if t is None else t[start:stop] for t in (self.oy, self.ox, self.flip)))


def draw(batch_sizes: list[int], gen: torch.Generator, crop_padding: int = 0, flip: bool = False) -> Draws:
    """The random choices for consecutive batches of ``batch_sizes`` images, on the CPU. Per batch:
    row offsets, column offsets, flip coins (the order :func:`random_crop_flip` uses)."""
    oy, ox, coins = [], [], []
    for n in batch_sizes:
        if crop_padding > 0:
            oy.append(torch.randint(0, 2 * crop_padding + 1, (n,), generator=gen))
            ox.append(torch.randint(0, 2 * crop_padding + 1, (n,), generator=gen))
        if flip:
            coins.append(torch.rand((n,), generator=gen) < 0.5)
    cat = lambda parts: torch.cat(parts) if parts else None  # noqa: E731
    return Draws(cat(oy), cat(ox), cat(coins))


def apply(x: torch.Tensor, draws: Draws, crop_padding: int = 0) -> torch.Tensor:
    """Augment a batch ``x`` (n, c, h, w), any dtype (uint8 is cheapest), with the choices in
    ``draws`` (on x's device): zero-pad by ``crop_padding`` and cut the h x w window at (oy, ox);
    mirror left-right where the flip mask is set. The result is channels_last."""
    n, _, h, w = x.shape
    if draws.oy is not None and crop_padding > 0:
        p = crop_padding
        padded = F.pad(x, (p, p, p, p))
        rows = (draws.oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (n, h, 1)
        cols = (draws.ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (n, 1, w)
        batch = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # gathered as NHWC
    if draws.flip is not None:
        x = torch.where(draws.flip[:, None, None, None], x.flip(3), x)
    return x.contiguous(memory_format=torch.channels_last)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, crop_padding: int = 0, flip: bool = False) -> torch.Tensor:
    """Augment one batch ``x`` (n, c, h, w), drawing its random choices from ``gen`` now: each image
    is zero-padded by ``crop_padding`` and a random h x w window is cut out; with ``flip`` each image
    is mirrored left-right with probability 1/2."""
    return apply(x, draw([len(x)], gen, crop_padding, flip).to(x.device), crop_padding)
