"""Run a function after every optimizer step of a training loop that we do not own (``wp.train.fit``).

Pruning re-applies its masks there (so momentum and weight decay cannot revive a pruned weight) and
the value-set search advances its temperature schedule there. The hook is global to torch's
optimizers, so it is removed as soon as the ``with`` block ends.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook


@contextmanager
def after_every_step(fn: Callable[[torch.optim.Optimizer], None]) -> Iterator[None]:
    """Call ``fn(optimizer)`` after each ``optimizer.step()`` inside the block."""
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: fn(opt))
    try:
        yield
    finally:
        handle.remove()
