"""The training and evaluation engine shared by pretraining and weight-pool retraining.

Datasets stay on the device as uint8 and are turned into float batches in [0, 1] on the fly (no
input normalisation, as in the paper); augmentation works on whole batches. Every random choice
(shuffling, augmentation, hold-out split) comes from generators seeded by the stage's seed.

Hyperparameters (one dict, see ``HPARAM_DEFAULTS``; recipes in ``wp.recipes`` fill it):
- ``epochs``, ``batch_size``, ``eval_batch_size``
- ``optimizer``: ``sgd`` (``momentum``, ``nesterov``) or ``adam``; ``lr``; ``weight_decay``
- ``schedule``: ``constant``; ``cosine`` (per epoch, T_max = epochs); ``exp`` (lr * gamma^epoch);
  ``step`` (lr * gamma^(epoch // step_epochs)); ``onecycle`` (per step: linear warm-up over
  ``warmup_epochs``, then linear decay to 0)
- ``label_smoothing``
- ``bn_recalibrate``: after training, re-estimate every BatchNorm's running statistics from this
  many training batches (0 = keep the running averages from training, as the reference does)
- the data-selection settings ``train_subset``, ``test_subset``, ``selection``, ``val_fraction``: which
  images a stage uses; ``wp.selection`` owns them (``wp.selection.KEYS``: their meaning) and is the
  only reader; the engine never reads them (``fit`` holds out whatever validation images it is given)
- ``amp``: mixed precision of the forward passes (training, evaluation, BN recalibration): ``auto``
  (bf16 autocast on CUDA, none on the CPU), ``bf16`` (bf16 autocast on any device), ``off`` (fp32)

Speed on a GPU: the training loop makes no host-device synchronisation inside an epoch (losses and
counts are summed on the device; the epoch's shuffle and augmentation choices are drawn and copied
once per epoch); SGD and Adam use PyTorch's fused CUDA kernels when the parameters are on CUDA.
Under autocast the convolutions and matrix products run in bf16, while BatchNorm keeps fp32
parameters and running statistics and normalises in fp32 internally (its bf16 output equals the fp32
result rounded; checked on the CPU), and the loss is computed on fp32 logits.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from wp import WPError
from wp import augment as aug
from wp.io import atomic_path

HPARAM_DEFAULTS: dict = {
    "epochs": 1,
    "batch_size": 128,
    "eval_batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "gamma": 0.5,
    "step_epochs": 20,
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    # data selection: wp.selection owns these (wp.selection.KEYS); the engine never reads them
    "train_subset": None,
    "test_subset": None,
    "selection": "final",
    "val_fraction": 0.1,
    # (end of data selection)
    "bn_recalibrate": 0,
    "amp": "auto",
}
AMP_MODES = ("auto", "bf16", "off")


def hparams(overrides: dict | None = None) -> dict:
    """Defaults updated with ``overrides``; unknown keys are an error."""
    hp = dict(HPARAM_DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in HPARAM_DEFAULTS:
            raise WPError(f"unknown training setting {key!r}: use one of {', '.join(sorted(HPARAM_DEFAULTS))}")
        hp[key] = value
    _check_amp(hp["amp"])
    return hp


def _check_amp(amp: str) -> None:
    if amp not in AMP_MODES:
        raise WPError(f"unknown amp setting {amp!r}: use 'auto', 'bf16' or 'off'")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every stage calls it with its seed)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WPError(f"device {device!r} asked for but no CUDA GPU is visible: set device: auto or cpu")
    return torch.device(device)


@dataclass
class Tensors:
    """One split on the device: uint8 images and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def to_device(images: np.ndarray, labels: np.ndarray, device: torch.device) -> Tensors:
    return Tensors(torch.from_numpy(np.ascontiguousarray(images)).to(device), torch.from_numpy(labels).long().to(device))


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in [0, 1], keeping their memory layout."""
    return images.float().div_(255.0)


def batch_input(images: torch.Tensor) -> torch.Tensor:
    """A uint8 batch → the float channels_last tensor the models take (the layout is changed on the
    uint8, a quarter of the bytes)."""
    return as_float(images.contiguous(memory_format=torch.channels_last))


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the ``amp`` setting on ``device``, or None for plain fp32. ``auto`` is
    bf16 on a CUDA GPU that supports it and fp32 everywhere else."""
    _check_amp(amp)
    gpu_without_bf16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    if amp == "off" or (amp == "auto" and (device.type != "cuda" or gpu_without_bf16)):
        return None
    if gpu_without_bf16:
        raise WPError("amp 'bf16' asked for but this GPU has no bf16 support: set amp: auto or off")
    return torch.bfloat16


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Context for a forward pass: bf16 autocast when ``amp`` asks for it on ``device``, else nothing."""
    dtype = autocast_dtype(amp, device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensors, batch_size: int = 1024, amp: str = "off") -> float:
    """Top-1 accuracy (%) over every image of ``data``, in order; batches of ``batch_size``, under
    the ``amp`` setting (fp32 unless asked: callers such as LUT execution need exact arithmetic).
    Correct answers are counted on the device and read once at the end."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=data.labels.device)
    with autocast(amp, data.images.device):
        for start in range(0, len(data), batch_size):
            logits = model(batch_input(data.images[start:start + batch_size]))
            correct += (logits.argmax(1) == data.labels[start:start + batch_size]).sum()
    model.train(was_training)
    return 100.0 * int(correct) / max(1, len(data))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, train: Tensors, batches: int, batch_size: int, amp: str = "off") -> None:
    """Recompute BatchNorm running mean/var as the plain average over ``batches`` training batches
    (in order, no augmentation). Short trainings leave the exponential running averages stale."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = model.training
    model.train()
    with autocast(amp, train.images.device):
        for start in range(0, min(len(train), batches * batch_size), batch_size):
            model(batch_input(train.images[start:start + batch_size]))
    for m, momentum in saved:
        m.momentum = momentum
    model.train(was_training)


def fused_flag(params: list[torch.Tensor]) -> dict:
    """``{"fused": True}`` when every parameter is on CUDA (one fused kernel per step instead of
    a loop over tensors), else ``{}`` (PyTorch's default, which keeps CPU results as they were)."""
    return {"fused": True} if params and all(p.is_cuda for p in params) else {}


def make_optimizer(model: nn.Module, hp: dict) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["nesterov"],
                               weight_decay=hp["weight_decay"], **fused_flag(params))
    if hp["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"], **fused_flag(params))
    raise WPError(f"unknown optimizer {hp['optimizer']!r}: use 'sgd' or 'adam'")


def learning_rate(hp: dict, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate for ``step`` (0-based) of ``epoch`` (0-based)."""
    lr, epochs, schedule = hp["lr"], hp["epochs"], hp["schedule"]
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "exp":
        return lr * hp["gamma"] ** epoch
    if schedule == "step":
        return lr * hp["gamma"] ** (epoch // hp["step_epochs"])
    if schedule == "onecycle":
        t = (epoch * steps_per_epoch + step + 1) / (epochs * steps_per_epoch)
        warm = hp["warmup_epochs"] / epochs
        return lr * (t / warm if t < warm else max(0.0, (1.0 - t) / max(1e-12, 1.0 - warm)))
    raise WPError(f"unknown schedule {schedule!r}: use constant, cosine, exp, step or onecycle")


def _resume_key(hp: dict, seed: int, n: int, tag: str) -> str:
    return json.dumps({"hparams": hp, "seed": seed, "train_images": n, "inputs": tag}, sort_keys=True)


def _save_resume(path: Path, key: str, epoch: int, model: nn.Module, opt: torch.optim.Optimizer,
                 gen: torch.Generator, history: list, best: tuple, elapsed: float) -> None:
    state = {"key": key, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "generator": gen.get_state(), "history": json.dumps(history),
             "best_val": best[0], "best_state": best[1], "best_epoch": best[2], "elapsed": elapsed}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_resume(path: Path, key: str, log: Callable[[str], None]) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged resume file only costs the restart
        log(f"ignoring unreadable resume file {path} ({type(exc).__name__}); starting from epoch 1")
        return None
    if state.get("key") != key:
        log(f"ignoring resume file {path}: it was written with other settings; starting from epoch 1")
        return None
    return state


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of :func:`fit` over ``n`` images: the last incomplete batch is
    dropped, except when the whole set is smaller than one batch."""
    return max(1, n // batch_size) if n >= batch_size else 1


def _batch_sizes(n: int, batch_size: int, steps: int) -> list[int]:
    """Images in each of an epoch's ``steps`` batches (the last incomplete batch is dropped, except
    when the whole set is smaller than one batch)."""
    return [min(batch_size, n - step * batch_size) for step in range(steps)]


OnStep = Callable[[torch.optim.Optimizer], None]


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, train: Tensors, hp: dict,
                 epoch: int, steps: int, gen: torch.Generator, augment: dict,
                 on_step: OnStep | None = None) -> tuple[float, int, int, float]:
    """One epoch of ``steps`` optimizer steps (``on_step(opt)`` after each); returns (summed loss,
    correct, images seen, last lr).

    The shuffle and the augmentation choices are drawn from ``gen`` at the start (same stream as
    drawing them per step) and copied to the device once. Loss and correct answers are summed on the
    device and read once at the end, so the host never waits for the GPU inside the epoch; a
    non-finite loss anywhere in the epoch is reported then."""
    device, bs = train.images.device, hp["batch_size"]
    sizes = _batch_sizes(len(train), bs, steps)
    crop, flip = augment.get("crop_padding", 0), augment.get("flip", False)
    perm = torch.randperm(len(train), generator=gen).to(device)
    draws = aug.draw(sizes, gen, crop, flip).to(device)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    lr = hp["lr"]
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{hp['epochs']}", leave=False,
               disable=not sys.stderr.isatty())  # a progress bar at a terminal only; logs stay clean
    for step in bar:
        start, stop = step * bs, step * bs + sizes[step]
        idx = perm[start:stop]
        x = as_float(aug.apply(train.images[idx], draws.slice(start, stop), crop))
        y = train.labels[idx]
        lr = learning_rate(hp, epoch, step, steps)
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast(hp["amp"], device):
            logits = model(x)
        loss = loss_fn(logits.float(), y)  # the loss in fp32 whatever the forward ran in
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(opt)
        total_loss += loss.detach().double() * len(y)
        correct += (logits.argmax(1) == y).sum()
    total = float(total_loss)
    if not math.isfinite(total):
        raise WPError(f"training diverged (loss {total / sum(sizes)}) in epoch {epoch + 1}: lower the learning rate")
    return total, int(correct), sum(sizes), lr


def _load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state but keep this run's kernel choice (``fused``/``foreach``), so a
    state saved on a GPU resumes on the CPU and the other way round."""
    kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, kept in zip(opt.param_groups, kernels):
        group.update(kept)


def fit(model: nn.Module, train: Tensors, hp: dict, *, seed: int, augment: dict,
        val: Tensors | None = None, log: Callable[[str], None] = print,
        resume: str | Path | None = None, resume_tag: str = "", stop_after_epoch: int | None = None,
        on_step: OnStep | None = None) -> dict:
    """Train ``model`` in place; returns the history and which epoch's weights were kept.

    ``on_step(optimizer)`` is called after every optimizer step, before the next batch (pruning
    re-applies its masks there, the value-set search advances its temperature): in a resumed run
    too, for the steps it still makes (state the callback keeps must live in the model, e.g. as
    buffers, to resume with it).

    With ``resume`` (a file path) the full training state (model, optimizer, random generator,
    history, epoch) is written there atomically after every epoch, and a run that finds a file
    written with the same settings and the same ``resume_tag`` (callers pass a digest of their input
    files, so a changed dataset, checkpoint or pool starts afresh) continues after its last epoch: on the CPU an interrupted and
    resumed run ends with exactly the weights of an uninterrupted one. The file is removed when
    training completes. ``stop_after_epoch`` kills the process with SIGKILL after saving that
    epoch (for testing interruption).

    ``seconds`` is the wall time of the whole training, the killed runs' share included;
    ``earlier_seconds`` is that share (0 without a resume)."""
    autocast_dtype(hp["amp"], train.images.device)  # a bad amp setting stops here, before any work
    if train.images.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: cuDNN times its kernels once, then reuses the fastest
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, hp)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"])
    bs, n = hp["batch_size"], len(train)
    steps = steps_per_epoch(n, bs)
    history, best = [], (-1.0, None, 0)
    first_epoch, earlier = 0, 0.0
    resume = Path(resume) if resume is not None else None
    key = _resume_key(hp, seed, n, resume_tag)
    if resume is not None and (state := _load_resume(resume, key, log)) is not None:
        model.load_state_dict(state["model"])
        _load_optimizer_state(opt, state["optimizer"])
        gen.set_state(state["generator"])
        history = json.loads(state["history"])
        best = (state["best_val"], state["best_state"], state["best_epoch"])
        first_epoch = state["epoch"]
        earlier = float(state.get("elapsed", 0.0))
        log(f"resuming from {resume} after epoch {first_epoch}")
    t_start = time.perf_counter()
    model.train()
    for epoch in range(first_epoch, hp["epochs"]):
        t0 = time.perf_counter()
        total_loss, correct, seen, lr = _train_epoch(model, opt, loss_fn, train, hp, epoch, steps, gen, augment,
                                                        on_step)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "loss": total_loss / seen, "train_top1": 100.0 * correct / seen, "lr": lr,
               "seconds": seconds, "images_per_s": seen / seconds}
        if val is not None:
            row["val_top1"] = evaluate(model, val, hp["eval_batch_size"], hp["amp"])
            if row["val_top1"] > best[0]:
                best = (row["val_top1"], copy.deepcopy(model.state_dict()), epoch + 1)
        history.append(row)
        eta = (time.perf_counter() - t_start) / (epoch + 1 - first_epoch) * (hp["epochs"] - epoch - 1)
        log(f"epoch {epoch + 1}/{hp['epochs']} loss {row['loss']:.4f} train {row['train_top1']:.2f}%"
            + (f" val {row['val_top1']:.2f}%" if val is not None else "")
            + f" lr {lr:.3g} {row['images_per_s']:.0f} img/s eta {eta:.0f}s")
        if resume is not None:
            _save_resume(resume, key, epoch + 1, model, opt, gen, history, best,
                         earlier + time.perf_counter() - t_start)
            if stop_after_epoch == epoch + 1:
                os.kill(os.getpid(), signal.SIGKILL)
    kept = hp["epochs"]
    if val is not None and best[1] is not None:
        model.load_state_dict(best[1])
        kept = best[2]
    recalibrate_bn(model, train, hp["bn_recalibrate"], hp["batch_size"], hp["amp"])
    if resume is not None and resume.exists():
        resume.unlink()
    return {"history": history, "kept_epoch": kept, "seconds": earlier + time.perf_counter() - t_start,
            "earlier_seconds": earlier}
