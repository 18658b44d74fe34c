"""The training engine's speed paths, exercised on the CPU: bf16 autocast, per-epoch augmentation
draws, optimizer kernel choice. No test here depends on timing."""

import pytest
import torch
import torch.nn as nn

from wp import WPError, augment, data, models
from wp.train import (Tensors, _load_optimizer_state, autocast_dtype, evaluate, fit, fused_flag, hparams,
                      make_optimizer, steps_per_epoch, to_device)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits(digits_h5):
    ds = data.read(digits_h5)
    return ds, to_device(ds.train.images, ds.train.labels, CPU), to_device(ds.test.images, ds.test.labels, CPU)


def _tinyconv(ds, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return models.create("tinyconv", in_channels=ds.channels, num_classes=ds.num_classes,
                         image_size=ds.image_size).to(memory_format=torch.channels_last)


def test_bf16_autocast_trains_on_the_cpu(digits):
    ds, train, test = digits
    model = _tinyconv(ds, 0)
    hp = hparams({"epochs": 2, "batch_size": 32, "train_subset": 512, "lr": 0.05, "schedule": "onecycle",
                  "warmup_epochs": 0.5, "nesterov": True, "amp": "bf16", "bn_recalibrate": 2})
    result = fit(model, Tensors(train.images[:512], train.labels[:512]), hp, seed=0, augment={"crop_padding": 1}, log=lambda _m: None)
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result["history"])
    assert evaluate(model, test, 256, amp="bf16") > 30  # 10 classes: chance is 10%
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never changes the weights' dtype
    assert all(b.dtype != torch.bfloat16 for b in model.buffers())  # BN statistics stay fp32


def test_amp_auto_is_plain_fp32_on_the_cpu(digits):
    ds, train, _ = digits
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("off", CPU) is None
    assert autocast_dtype("bf16", CPU) == torch.bfloat16
    weights = []
    for amp in ("auto", "off"):
        model = _tinyconv(ds, 1)
        hp = hparams({"epochs": 1, "batch_size": 32, "amp": amp})
        fit(model, Tensors(train.images[:128], train.labels[:128]), hp, seed=1, augment={"flip": True}, log=lambda _m: None)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_unknown_amp_setting_is_one_line_error(digits):
    ds, train, _ = digits
    with pytest.raises(WPError, match="unknown amp setting 'fp16': use 'auto', 'bf16' or 'off'"):
        hparams({"amp": "fp16"})  # caught when the settings are resolved, before any job runs
    with pytest.raises(WPError, match="unknown amp setting 'fp16'"):
        fit(_tinyconv(ds, 0), train, {**hparams(), "amp": "fp16"}, seed=0, augment={}, log=lambda _m: None)


def test_on_step_runs_once_after_every_optimizer_step(digits):
    ds, train, _ = digits
    model = _tinyconv(ds, 2)
    hp = hparams({"epochs": 2, "batch_size": 32, "lr": 0.05, "bn_recalibrate": 0})
    seen = []

    def on_step(opt):
        weight = model.fc1.weight
        assert opt.state[weight]["momentum_buffer"] is not None  # the step has been made
        seen.append((opt, weight.detach().clone()))

    fit(model, Tensors(train.images[:100], train.labels[:100]), hp, seed=0, augment={}, log=lambda _m: None,
        on_step=on_step)
    assert len(seen) == 2 * steps_per_epoch(100, 32) == 6  # 3 full batches of 32 an epoch, the 4 left over dropped
    assert len({id(opt) for opt, _ in seen}) == 1
    assert all(not torch.equal(a, b) for (_, a), (_, b) in zip(seen, seen[1:]))  # each call sees a new step's weights
    assert torch.equal(seen[-1][1], model.fc1.weight.detach())  # the last call follows the last step
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    other.step()  # the callback belongs to that fit alone: no optimizer hook is left behind
    assert len(seen) == 6


def test_epoch_draws_give_the_same_augmentation_as_per_batch_draws():
    images = torch.randint(0, 256, (10, 3, 6, 6), dtype=torch.uint8)
    per_batch_gen, epoch_gen = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    per_batch = [augment.random_crop_flip(images[s:s + 4], per_batch_gen, 2, True) for s in (0, 4, 8)]
    draws = augment.draw([4, 4, 2], epoch_gen, 2, True)
    per_epoch = [augment.apply(images[s:s + 4], draws.slice(s, min(s + 4, 10)), 2) for s in (0, 4, 8)]
    assert all(torch.equal(a, b) for a, b in zip(per_batch, per_epoch))
    assert all(b.is_contiguous(memory_format=torch.channels_last) for b in per_epoch)
    # augmenting the uint8 images then scaling equals scaling then augmenting (zero padding either way)
    floats = augment.apply(images[:4].float() / 255, draws.slice(0, 4), 2)
    assert torch.equal(floats, per_epoch[0].float() / 255)


def test_crop_pads_with_zeros_and_flip_mirrors():
    x = torch.arange(1, 17, dtype=torch.uint8).reshape(1, 1, 4, 4)
    shifted = augment.apply(x, augment.Draws(torch.tensor([0]), torch.tensor([0]), None), 1)
    assert shifted[0, 0, 0].tolist() == [0, 0, 0, 0] and shifted[0, 0, 1].tolist() == [0, 1, 2, 3]
    flipped = augment.apply(x, augment.Draws(None, None, torch.tensor([True])), 0)
    assert torch.equal(flipped, x.flip(3))


def test_optimizer_is_fused_only_on_cuda_and_resume_keeps_this_runs_kernels():
    model = nn.Linear(8, 2)
    assert fused_flag(list(model.parameters())) == {}  # CPU: PyTorch's default kernels, CPU results unchanged
    opt = make_optimizer(model, hparams({"optimizer": "adam"}))
    assert not opt.param_groups[0].get("fused")
    saved = opt.state_dict()
    saved["param_groups"][0]["fused"] = True  # as written by a run on a GPU
    _load_optimizer_state(opt, saved)
    assert not opt.param_groups[0]["fused"]
