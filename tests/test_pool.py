import pytest
import torch
import torch.nn as nn

from wp import pool


def test_z_vector_is_eight_consecutive_input_channels():
    w = torch.arange(2 * 16 * 3 * 3, dtype=torch.float32).reshape(2, 16, 3, 3)
    v = pool.to_vectors(w)
    assert v.shape == (2 * 3 * 3 * 2, 8)
    # order o, y, x, g: row 1 is (o=0, y=0, x=0, g=1)
    assert torch.equal(v[1], w[0, 8:16, 0, 0])
    assert torch.equal(v[2], w[0, 0:8, 0, 1])
    assert torch.equal(v[-1], w[1, 8:16, 2, 2])
    assert torch.equal(pool.from_vectors(v, w.shape), w)


def test_linear_vectors_are_consecutive_inputs():
    w = torch.randn(3, 16)
    v = pool.to_vectors(w)
    assert torch.equal(v[1], w[0, 8:16]) and torch.equal(pool.from_vectors(v, w.shape), w)


def test_assign_uses_cosine_not_euclidean():
    p = torch.tensor([[10.0] + [0] * 7, [0.1, 0.1] + [0] * 6])
    x = torch.tensor([[0.2, 0.0] + [0] * 6, [0.1, 0.12] + [0] * 6])
    # x[0] is nearest to p[1] in Euclidean distance but parallel to p[0]
    assert pool.assign(x, p).tolist() == [0, 1]


def test_project_replaces_vectors_by_pool_vectors_and_is_idempotent():
    torch.manual_seed(0)
    p = torch.randn(16, 8)
    w = torch.randn(4, 24, 3, 3)
    proj, idx = pool.project(w, p)
    assert torch.equal(pool.to_vectors(proj), p[idx])
    proj2, idx2 = pool.project(proj, p)
    assert torch.equal(idx, idx2) and torch.equal(proj, proj2)


def test_straight_through_gradient_reaches_latent_weights():
    torch.manual_seed(0)
    p = torch.randn(8, 8)
    conv = nn.Conv2d(8, 4, 3, bias=False)
    x = torch.randn(2, 8, 5, 5)
    pool.attach(conv, p, [""])
    out = conv(x)
    proj, _ = pool.project(conv.parametrizations.weight.original.detach(), p)
    assert torch.allclose(out, nn.functional.conv2d(x, proj))
    out.square().sum().backward()
    # d/dW of the projected conv, passed unchanged to the latent weights
    w = proj.clone().requires_grad_()
    nn.functional.conv2d(x, w).square().sum().backward()
    assert torch.allclose(conv.parametrizations.weight.original.grad, w.grad)
    assert not any(b.requires_grad for b in conv.buffers())


def test_detach_bakes_pool_vectors_into_plain_weights():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3), nn.Conv2d(16, 16, 1))
    p = torch.randn(5, 8)
    layers = pool.pooled_layers(model)
    assert layers == ["1", "2"]
    pool.attach(model, p, layers)
    pool.detach(model)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"}
    for name in layers:
        vectors = pool.to_vectors(dict(model.named_modules())[name].weight.detach())
        assert all(any(torch.equal(v, q) for q in p) for v in vectors)


@pytest.mark.parametrize("groups", [8])
def test_depthwise_conv_is_never_pooled(groups):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=groups), nn.Linear(8, 8))
    assert pool.pooled_layers(model) == []
    assert pool.pooled_layers(model, pool_fc=True) == ["2"]


def _pooled_net(seed: int) -> tuple[nn.Module, torch.Tensor, list[str]]:
    """A small conv net with several pooled convs (3x3 and 1x1) and a pooled linear layer, channels_last."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    model = model.to(memory_format=torch.channels_last)
    return model, torch.randn(12, 8), pool.pooled_layers(model, pool_fc=True)


def _reference_run(model: nn.Module, p: torch.Tensor, layers: list[str], x: torch.Tensor):
    """Output and weight gradients of a copy of ``model`` whose pooled layers hold plain parameters
    equal to ``pool.project`` of each layer alone: what the straight-through projection must give."""
    import copy

    ref = copy.deepcopy(model)
    modules = dict(ref.named_modules())
    with torch.no_grad():
        for name in layers:
            modules[name].weight.copy_(pool.project(modules[name].weight, p)[0])
    out = ref(x)
    out.square().sum().backward()
    return out, {name: modules[name].weight.grad for name in layers}


def test_batched_projection_equals_per_layer_projection_in_values_and_gradients(monkeypatch):
    model, p, layers = _pooled_net(2)
    assert layers == ["3", "5", "9"]
    x = torch.randn(4, 3, 6, 6)
    ref_out, ref_grads = _reference_run(model, p, layers, x)
    calls = []
    nearest = pool.nearest
    monkeypatch.setattr(pool, "nearest", lambda v, u: calls.append(len(v)) or nearest(v, u))
    pool.attach(model, p, layers)
    calls.clear()  # registering a parametrization evaluates it once per layer
    out = model(x)
    assert len(calls) == 1 and calls[0] == sum(dict(model.named_modules())[n].weight.numel() // 8 for n in layers)
    assert torch.equal(out, ref_out)
    out.square().sum().backward()
    modules = dict(model.named_modules())
    for name in layers:
        assert torch.equal(modules[name].parametrizations.weight.original.grad, ref_grads[name])
        assert modules[name].parametrizations.weight[0].batched is None  # dropped after the forward


def test_projection_outside_forward_and_state_dict_keys_are_unchanged():
    model, p, layers = _pooled_net(3)
    latents = {n: dict(model.named_modules())[n].weight.detach().clone() for n in layers}
    pool.attach(model, p, layers)
    modules = dict(model.named_modules())
    for name in layers:  # reading a layer's weight by itself projects that layer alone
        assert torch.equal(modules[name].weight, pool.project(latents[name], p)[0])
    assert "3.parametrizations.weight.original" in model.state_dict() and "3.weight" not in model.state_dict()
    for w, name in zip(pool.projected_weights(model), layers):
        assert torch.equal(w, pool.project(latents[name], p)[0])
    pool.detach(model)
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert "3.weight" in model.state_dict()


def test_projection_stays_fp32_under_bf16_autocast():
    model, p, layers = _pooled_net(4)
    pool.attach(model, p, layers)
    latents = [dict(model.named_modules())[n].parametrizations.weight.original.detach() for n in layers]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights = pool.projected_weights(model)
        model(torch.randn(2, 3, 6, 6))
    for w, latent in zip(weights, latents):
        assert w.dtype == torch.float32 and torch.equal(w, pool.project(latent, p)[0])


# ---- pool scale (pool_scale: a fitted scale per layer or per output channel) ----

@pytest.mark.parametrize("mode", ["layer", "channel"])
def test_scaled_projection_is_the_least_squares_scale_times_the_pool_vectors(mode):
    """Each layer's (channel's) scale minimises |W - s·P|² for the cosine-nearest pool vectors P:
    checked against torch.linalg.lstsq per group, and the forward pass returns exactly s·P."""
    model, p, layers = _pooled_net(5)
    latents = {n: dict(model.named_modules())[n].weight.detach().clone() for n in layers}
    pool.attach(model, p, layers, mode)
    modules = dict(model.named_modules())
    fitted = pool.scales(model, p, layers, mode)
    for name, w in zip(layers, pool.projected_weights(model)):
        proj, idx = pool.project(latents[name], p)
        v, pv = pool.to_vectors(latents[name]).double(), pool.to_vectors(proj).double()
        groups = 1 if mode == "layer" else w.shape[0]
        assert fitted[name].shape == (groups,)
        for g, (vg, pg) in enumerate(zip(v.reshape(groups, -1, 1), pv.reshape(groups, -1, 1))):
            s = torch.linalg.lstsq(pg, vg).solution.item()
            assert fitted[name][g].item() == pytest.approx(s, rel=1e-5, abs=1e-7)
        assert (fitted[name] > 0).all()  # cosine-nearest vectors point the weights' way
        assert torch.equal(w, pool.deployed_weight(p, idx, w.shape, fitted[name]))
        assert torch.equal(modules[name].weight, w)  # one layer alone: the same values


def test_scaled_projection_batched_equals_per_layer_with_a_straight_through_gradient():
    model, p, layers = _pooled_net(6)
    x = torch.randn(4, 3, 6, 6)
    import copy

    ref = copy.deepcopy(model)
    pool.attach(model, p, layers, "channel")
    with torch.no_grad():  # plain parameters holding the scaled projection of each layer alone
        mods = dict(ref.named_modules())
        for name, w in zip(layers, pool.projected_weights(model)):
            mods[name].weight.copy_(w)
    ref_out = ref(x)
    ref_out.square().sum().backward()
    out = model(x)
    assert torch.equal(out, ref_out)
    out.square().sum().backward()
    for name in layers:
        assert torch.equal(dict(model.named_modules())[name].parametrizations.weight.original.grad, mods[name].weight.grad)


def test_a_scaled_layer_keeps_its_magnitude_and_bake_writes_the_deployed_weights():
    """Weights 100x the pool's: without a scale the projection loses the factor, with one it keeps it."""
    torch.manual_seed(7)
    p = torch.randn(16, 8)
    fc = nn.Linear(32, 6)
    with torch.no_grad():
        fc.weight.copy_(100 * p[torch.randint(0, 16, (24,))].reshape(6, 32))
    model = nn.Sequential(fc)
    for mode, factor in (("none", 1.0), ("layer", 100.0), ("channel", 100.0)):
        m = __import__("copy").deepcopy(model)
        pool.attach(m, p, ["0"], mode)
        w = pool.projected_weights(m)[0]
        torch.testing.assert_close(w, fc.weight.detach() * factor / 100)
        idx, sc = pool.indices(m, p, ["0"]), pool.scales(m, p, ["0"], mode)
        pool.detach(m)
        pool.bake(m, p, idx, sc)
        assert torch.equal(m[0].weight, w.detach()) and (sc is None) == (mode == "none")


def test_normalised_vectors_have_unit_rms_norm_per_group():
    torch.manual_seed(8)
    v = torch.randn(6, 4, 8) * torch.tensor([1.0, 5.0, 0.01, 0.0, 2.0, 3.0]).view(6, 1, 1)
    n = pool.normalise(v.reshape(-1, 8), 6).reshape(6, 4, 8)
    rms = n.square().sum(2).mean(1).sqrt()
    torch.testing.assert_close(rms, torch.tensor([1.0, 1, 1, 0, 1, 1]))
    assert torch.allclose(torch.nn.functional.cosine_similarity(n[0], v[0], dim=1), torch.ones(4))
    model = nn.Sequential(nn.Linear(16, 4), nn.Linear(4 * 2, 2))
    vec, counts = pool.model_vectors(model, ["0"], "channel")
    assert counts == [8] and torch.allclose(vec.reshape(4, 2, 8).square().sum(2).mean(1), torch.ones(4))
    with pytest.raises(pool.WPError, match="unknown pool scale 'rows'"):
        pool.model_vectors(model, ["0"], "rows")
