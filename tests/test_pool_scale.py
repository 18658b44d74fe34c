"""pool_scale on a network without BatchNorm (examples/bn_free.py's mlp3, every layer pooled): the
stages carry the option (pool file, checkpoint, metrics, quant_eval), and with a scale the pool of 64
keeps the float network's accuracy where the paper's pool without scale loses it."""

import math

import pytest
import torch
from conftest import REPO, sgd_losses, stage_kw

from wp import WPError, checkpoint, models, pool, poolfile
from wp.stages import act_train, cluster, pretrain, quant_eval, wp_train
from wp.train import hparams

PRETRAIN = {"epochs": 15, "batch_size": 32, "lr": 0.05, "schedule": "onecycle", "warmup_epochs": 0.5, "nesterov": True}
RETRAIN = {"epochs": 5, "batch_size": 32, "lr": 0.02, "schedule": "cosine"}


@pytest.fixture(scope="module")
def mlp3(digits_h5, tmp_path_factory):
    """mlp3 (64-256-128-10, ReLU, no BatchNorm) trained on digits; then for pool_scale none, channel,
    channel_learned and layer_learned: the pool of 64 (pool_fc) and the network retrained with it."""
    from wp.models import registry

    saved = {name: dict(getattr(registry, name)) for name in ("_BUILDERS", "_ORIGIN", "_LOADED")}
    models.load_file(REPO / "examples" / "bn_free.py")
    d = tmp_path_factory.mktemp("mlp3")
    out = {"dir": d, "float": pretrain.run(digits_h5, "mlp3", hparams(PRETRAIN), d / "pre.pt", d / "pre.json", seed=0, device="cpu")}
    for mode in ("none", "channel", "channel_learned", "layer_learned"):
        cluster.run(d / "pre.pt", "mlp3", 64, d / f"pool_{mode}.h5", **stage_kw("cluster", seed=0, pool_fc=True, scale=mode, device="cpu"))
        out[mode] = wp_train.run(digits_h5, d / "pre.pt", d / f"pool_{mode}.h5", "mlp3", hparams(RETRAIN),
                                 d / f"wp_{mode}.pt", d / f"wp_{mode}.json", **stage_kw("wp_train", seed=0, device="cpu"))
    # pool_assign soft on the same pool (tests/test_pool_assign.py checks its mechanics)
    out["layer_learned+soft"] = wp_train.run(digits_h5, d / "pre.pt", d / "pool_layer_learned.h5", "mlp3", hparams(RETRAIN),
                                             d / "wp_soft.pt", d / "wp_soft.json",
                                             **stage_kw("wp_train", seed=0, device="cpu", assign="soft"))
    yield out
    for name, value in saved.items():
        setattr(registry, name, value)


@pytest.mark.parametrize("mode", ["channel", "channel_learned", "layer_learned", "layer_learned+soft"])
def test_a_bn_free_network_keeps_its_accuracy_with_a_scaled_pool(mlp3, mode):
    """The same network, pool size, seed and retraining: without a scale it falls apart, with each
    scale it stays within a loose bound of the float network."""
    float_top1, plain, scaled = mlp3["float"]["test_top1"], mlp3["none"]["test_top1"], mlp3[mode]["test_top1"]
    assert float_top1 > 85
    assert plain < float_top1 - 5  # the paper's pool: nothing absorbs the pool vectors' scale
    assert scaled > float_top1 - 4  # a loose bound (digits: 359 test images, 5 epochs)
    assert scaled > plain + 3
    # before retraining a scale per output channel recovers much more than one per layer
    margin = 10 if mode.startswith("channel") else 5
    assert mlp3[mode]["pool_scale"] == mode.removesuffix("+soft") and mlp3[mode]["direct_top1"] > mlp3["none"]["direct_top1"] + margin


def test_the_option_is_recorded_in_pool_file_checkpoint_and_metrics(mlp3, digits_h5, tmp_path):
    d = mlp3["dir"]
    assert poolfile.read(d / "pool_channel.h5")["pool_scale"] == "channel"
    assert poolfile.read(d / "pool_none.h5")["pool_scale"] == "none"
    assert mlp3["channel"]["pool_scale"] == "channel" and mlp3["none"]["pool_scale"] == "none"
    ck = checkpoint.load(d / "wp_channel.pt", kind="pooled")
    assert ck["pool_scale"] == "channel" and [s.numel() for s in ck["scales"].values()] == [256, 128, 10]
    assert "pool_scale" not in checkpoint.load(d / "wp_none.pt")  # the paper's checkpoints stay as they were
    # the deployed network (LUT, 8-bit activations and table) runs with the scales and stays accurate
    q = quant_eval.run(digits_h5, d / "wp_channel.pt", "mlp3", 8, 8, hparams(RETRAIN), tmp_path / "q.json",
                       **stage_kw("quant_eval", calibration_images=256, seed=0, device="cpu"))
    assert q["pool_scale"] == "channel" and q["test_top1"] > mlp3["channel"]["test_top1"] - 2


def test_an_unknown_pool_scale_is_one_clear_line(mlp3, tmp_path):
    with pytest.raises(WPError, match="unknown pool scale 'per_vector': use one of none, layer, channel"):
        cluster.run(mlp3["dir"] / "pre.pt", "mlp3", 64, tmp_path / "p.h5", **stage_kw("cluster", scale="per_vector", device="cpu"))
    assert not (tmp_path / "p.h5").exists()


def test_a_learned_scale_starts_at_the_least_squares_fit_and_trains_by_gradient():
    """channel_learned on a tiny linear layer: the scale is a parameter equal at first to Σ<w,p>/Σ|p|²
    per output channel (computed here by hand), the weight is s[o] · p, the scale gets the gradient
    Σ grad · p of its channel, and pool.scales / bake give what the forward pass used."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 3)
    model = torch.nn.Sequential(lin)
    centers = torch.randn(5, 8)
    w = lin.weight.detach().clone()
    pool.attach(model, centers, ["0"], "channel_learned")
    proj = lin.parametrizations.weight[0]
    assert isinstance(proj.scale, torch.nn.Parameter) and proj.scale.shape == (3,)
    unit = torch.nn.functional.normalize(centers, dim=1)
    p = torch.stack([torch.cat([centers[int((torch.nn.functional.normalize(w[o, 8 * g:8 * g + 8], dim=0) @ unit.T).argmax())]
                                for g in range(2)]) for o in range(3)])
    expect = (w * p).sum(1) / (p * p).sum(1)
    assert torch.allclose(proj.scale.detach(), expect, atol=1e-6)
    x = torch.randn(4, 16)
    out = model(x)
    assert torch.allclose(out, x @ (expect[:, None] * p).T + lin.bias, atol=1e-5)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    assert torch.allclose(proj.scale.grad, ((grad_out.T @ x) * p).sum(1), atol=1e-4)
    with torch.no_grad():
        proj.scale.mul_(torch.tensor([2.0, 0.5, -1.0]))  # as if trained: no longer the fit
    fitted = pool.scales(model, centers, ["0"], "channel_learned")["0"]
    assert torch.equal(fitted, proj.scale.detach())
    idx = pool.indices(model, centers, ["0"])
    forward_weight = lin.weight.detach().clone()
    pool.detach(model)
    pool.bake(model, centers, idx, {"0": fitted})
    assert torch.allclose(lin.weight, forward_weight) and torch.allclose(lin.weight, fitted[:, None] * p)


def test_a_learned_scale_starts_from_given_scales_and_keeps_the_bn_free_accuracy(mlp3, digits_h5, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(16, 2))
    given = {"0": torch.tensor([3.0, -2.0])}
    pool.attach(model, torch.randn(4, 8), ["0"], "channel_learned", init_scales=given)
    assert torch.equal(model[0].parametrizations.weight[0].scale.detach(), given["0"])
    learned = mlp3["channel_learned"]
    assert learned["pool_scale"] == "channel_learned" and learned["test_top1"] > mlp3["float"]["test_top1"] - 4
    assert learned["test_top1"] > mlp3["none"]["test_top1"] + 3
    ck = checkpoint.load(mlp3["dir"] / "wp_channel_learned.pt", kind="pooled")
    assert ck["pool_scale"] == "channel_learned" and [s.numel() for s in ck["scales"].values()] == [256, 128, 10]
    # deployed (LUT, 8-bit activations and table) with the learned scales folded into the requantization
    q = quant_eval.run(digits_h5, mlp3["dir"] / "wp_channel_learned.pt", "mlp3", 8, 8, hparams(RETRAIN), tmp_path / "q.json",
                       **stage_kw("quant_eval", calibration_images=256, seed=0, device="cpu"))
    assert q["pool_scale"] == "channel_learned" and q["test_top1"] > learned["test_top1"] - 2
    # activation retraining starts from the checkpoint's learned scales (at lr 0 it keeps them exactly)
    a = act_train.run(digits_h5, mlp3["dir"] / "wp_channel_learned.pt", "mlp3", 8, hparams({**RETRAIN, "epochs": 1, "lr": 0.0}),
                      tmp_path / "a.pt", tmp_path / "a.json", **stage_kw("act_train", calibration_images=256, seed=0, device="cpu"))
    after = checkpoint.load(tmp_path / "a.pt", kind="pooled")
    assert a["pool_scale"] == "channel_learned" and all(torch.equal(after["scales"][n], ck["scales"][n]) for n in ck["scales"])


def test_a_learned_layer_scale_is_one_parameter_started_at_the_layer_fit():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 3))
    centers = torch.randn(6, 8)
    w = model[0].weight.detach().clone()
    p, _ = pool.project(w, centers)
    pool.attach(model, centers, ["0"], "layer_learned")
    s = model[0].parametrizations.weight[0].scale
    assert s.shape == (1,) and torch.allclose(s.detach(), (w * p).sum() / (p * p).sum(), atol=1e-6)
    x = torch.randn(2, 16)
    assert torch.allclose(model(x), x @ (s.detach() * p).T + model[0].bias, atol=1e-5)


def test_a_learned_scale_steps_as_its_groups_weights_would_and_stays_stable(monkeypatch):
    """The scale's gradient is Σ grad · p times min(1, SCALE_STEP / Σ|p|²) (by hand here), and on a
    wide layer, where the loss's curvature along the scale is Σ|p|² times a weight's, SGD that is
    stable for the weights diverges on the plain gradient (SCALE_STEP infinite) and not on the scaled one
    (SCALE_STEP set to 64 here, a quarter of the layer's Σ|p|² = 256)."""
    monkeypatch.setattr(pool, "SCALE_STEP", 64.0)

    def wide_layer() -> tuple[torch.nn.Linear, torch.Tensor]:
        """A 2048-input linear layer (256 z-vectors) and a pool of 16 unit vectors: Σ|p|² = 256."""
        torch.manual_seed(0)
        return torch.nn.Linear(2048, 1, bias=False), torch.nn.functional.normalize(torch.randn(16, 8), dim=1)

    def train(lr: float) -> list[float]:
        lin, centers = wide_layer()
        pool.attach(torch.nn.Sequential(lin), centers, ["0"], "layer_learned")
        return sgd_losses(lin, lin.parameters(), lr)

    lin, centers = wide_layer()
    w = lin.weight.detach().clone()
    p, _ = pool.project(w, centers)
    pool.attach(torch.nn.Sequential(lin), centers, ["0"], "layer_learned")
    x = torch.randn(3, 2048)
    grad_out = torch.randn(3, 1)
    lin(x).backward(grad_out)
    assert torch.allclose((p * p).sum(), torch.tensor(256.0))
    expect = ((grad_out.T @ x) * p).sum() * 64 / 256
    assert torch.allclose(lin.parametrizations.weight[0].scale.grad, expect.reshape(1), rtol=1e-4)
    stable = train(0.01)
    assert all(math.isfinite(v) for v in stable) and stable[-1] < stable[0]
    monkeypatch.setattr(pool, "SCALE_STEP", math.inf)
    plain = train(0.01)
    assert not all(math.isfinite(v) and v < 1e6 for v in plain)
