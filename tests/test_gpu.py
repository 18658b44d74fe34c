"""The CUDA paths of the engine, run only where a GPU is visible (skipped elsewhere): each compares
with its CPU twin or checks what the CPU tests cannot see. No test here depends on timing."""

import pytest
import torch
import torch.nn as nn

from wp import data, models, pool
from wp.kmeans import kmeans
from wp.train import Tensors, evaluate, fit, hparams, make_optimizer, to_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def km(x, k, **given):
    """kmeans with the settings these tests were written for (every setting is a required argument)."""
    return kmeans(x, k, **{"seed": 0, "init": "kmeans++", "max_iter": 100, "tol": 1e-4, **given})


def test_batched_projection_on_cuda_picks_the_cpu_indices_also_under_autocast():
    torch.manual_seed(0)
    model = models.create("resnet_10", in_channels=3, num_classes=10, image_size=32).to(memory_format=torch.channels_last)
    layers = pool.pooled_layers(model)
    centers = torch.randn(128, 8)
    cpu = pool.indices(model, centers, layers)
    model = model.to(CUDA)
    pool.attach(model, centers, layers)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        weights = pool.projected_weights(model)
        model(torch.rand(2, 3, 32, 32, device=CUDA))
    for name, w in zip(layers, weights):
        assert w.dtype == torch.float32 and torch.equal(w.cpu(), pool.from_vectors(centers[cpu[name].long()], w.shape))


def test_batchnorm_under_cuda_autocast_keeps_fp32_statistics():
    bn = nn.BatchNorm2d(16).to(CUDA)
    conv = nn.Conv2d(8, 16, 3).to(CUDA, memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = bn(conv(torch.randn(4, 8, 8, 8, device=CUDA)))
    assert out.dtype == torch.bfloat16 and bn.running_mean.dtype == torch.float32 and bn.weight.dtype == torch.float32


def test_optimizers_are_fused_on_cuda():
    model = nn.Linear(8, 2).to(CUDA)
    for name in ("sgd", "adam"):
        assert make_optimizer(model, hparams({"optimizer": name})).param_groups[0]["fused"] is True


def test_training_on_cuda_with_bf16_reaches_cpu_like_accuracy(digits_h5):
    ds = data.read(digits_h5)
    hp = hparams({"epochs": 3, "batch_size": 32, "lr": 0.05, "schedule": "onecycle", "warmup_epochs": 0.5,
                  "nesterov": True, "bn_recalibrate": 4})
    accuracy = {}
    for device in ("cpu", "cuda"):
        dev = torch.device(device)
        train, test = to_device(ds.train.images, ds.train.labels, dev), to_device(ds.test.images, ds.test.labels, dev)
        torch.manual_seed(0)
        model = models.create("tinyconv", in_channels=ds.channels, num_classes=ds.num_classes,
                              image_size=ds.image_size).to(dev, memory_format=torch.channels_last)
        fit(model, train, hp, seed=0, augment={"crop_padding": 1}, log=lambda _m: None)
        accuracy[device] = evaluate(model, test, 1024, hp["amp"])
    assert accuracy["cpu"] > 80 and accuracy["cuda"] > accuracy["cpu"] - 5


def test_kmeans_on_cuda_matches_cpu_quality():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50_000, 8, generator=gen) * torch.rand(50_000, 1, generator=gen)
    cpu, gpu = km(x, 64, seed=0), km(x, 64, seed=0, device=CUDA)
    assert gpu.centers.device.type == "cpu" and gpu.inertia == pytest.approx(cpu.inertia, rel=0.02)


def test_wp_retraining_on_cuda_keeps_pool_vectors(digits_h5):
    ds = data.read(digits_h5)
    train = to_device(ds.train.images, ds.train.labels, CUDA)
    torch.manual_seed(0)
    model = models.create("tinyconv", in_channels=ds.channels, num_classes=ds.num_classes,
                          image_size=ds.image_size).to(CUDA, memory_format=torch.channels_last)
    layers = pool.pooled_layers(model)
    centers = km(pool.model_vectors(model, layers)[0], 16, seed=0, device=CUDA).centers
    pool.attach(model, centers, layers)
    fit(model, Tensors(train.images[:256], train.labels[:256]), hparams({"epochs": 1, "batch_size": 64}), seed=0, augment={}, log=lambda _m: None)
    pool.detach(model)
    for name in layers:
        vectors = pool.to_vectors(dict(model.named_modules())[name].weight.detach().cpu())
        assert torch.equal(vectors, centers[pool.assign(vectors, centers)])
