"""Whole networks run the deployed way (wp.lutnet): LUT layers against float convs of the quantized
activations, the quantized-table error bound, and the checks on checkpoints."""

import copy

import pytest
import torch
import torch.nn as nn

from wp import WPError, lut, lutnet, pool, quant

from conftest import pooled_model


@pytest.mark.parametrize("network", ["tinyconv", "resnet_mlperf", "mobilenet_v2"])
@pytest.mark.parametrize("act_bits", [8, 4])
def test_exact_table_network_equals_quantized_activation_network(network, act_bits):
    """LUT execution with the unquantized table = float convs of the same quantized activations
    (float64: equal to roundoff), for unsigned (ResNet) and signed (TinyConv, MobileNet) inputs."""
    m, centers, idx = pooled_model(network)
    x = torch.rand(4, 1, 12, 12, dtype=torch.float64)
    ranges = quant.calibrated_ranges(m, list(idx), [x], method="max")
    if network != "resnet_mlperf":
        assert any(signed for _, signed in ranges.values())  # BN outputs feed these layers
    ref = lutnet.convert(copy.deepcopy(m), centers, idx, ranges, act_bits, None, use_table=False, lut_mode="strict", signed_mode="twos")
    for signed_mode in ("twos", "split"):
        lut_net = lutnet.convert(copy.deepcopy(m), centers, idx, ranges, act_bits, None, signed_mode=signed_mode, lut_mode="strict")
        assert sum(isinstance(mod, lutnet.LUTLayer) for mod in lut_net.modules()) == len(idx)
        with torch.no_grad():
            torch.testing.assert_close(lut_net(x), ref(x), rtol=1e-9, atol=1e-9)


def test_no_table_convert_attaches_quantizers_and_equals_conv_of_fake_quantized_input():
    m, centers, idx = pooled_model("tinyconv")
    keys = set(m.state_dict())
    ranges = {name: (2.0, True) for name in idx}
    lutnet.convert(m, centers, idx, ranges, 5, None, use_table=False, lut_mode="strict", signed_mode="twos")
    assert set(quant.quantizers(m)) == set(idx) and keys < set(m.state_dict())  # layers kept, keys kept
    x = torch.randn(2, 32, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(m.conv2(x), lutnet.reference_conv(x, m.conv2, 5, 2.0, True))
    lutnet.convert(m, centers, idx, {name: (4.0, False) for name in idx}, 3, None, use_table=False, lut_mode="strict", signed_mode="twos")  # replaces them
    assert {(q.bits, q.rng, q.signed) for q in quant.quantizers(m).values()} == {(3, 4.0, False)}


@pytest.mark.parametrize("lut_bits, mode", [(16, "strict"), (8, "strict"), (4, "strict"), (8, "reference")])
def test_quantized_table_error_is_within_its_bound(lut_bits, mode):
    """Each table entry is off by at most one (strict) or half a (reference) table step, so a LUT conv
    output is off by at most that times Σ_b 2^b · taps · groups · Δ_act."""
    torch.manual_seed(1)
    centers = torch.randn(16, 8, dtype=torch.float64)
    conv = nn.Conv2d(16, 6, 3, 1, 1, bias=False).double()
    w, indices = pool.project(conv.weight.data, centers)
    conv.weight.data.copy_(w)
    x = torch.rand(2, 16, 7, 7, dtype=torch.float64)
    bits, rng = 8, 1.0
    table = lut.build_table(centers)
    t, step = lutnet.layer_table(table, indices, lut_bits, mode)
    layer = lutnet.LUTLayer(conv, indices, t, step, bits, rng, False)
    # per entry: strict ≤ Δ_L/2, or Δ_L at the clipped top level; reference ≤ Δ_L/2, its step; so ≤ step
    bound = step * (2 ** bits - 1) * 9 * 2 * quant.act_step(bits, rng, False)
    with torch.no_grad():
        exact = lutnet.reference_conv(x, conv, bits, rng, False)
        err = float((layer(x) - exact).abs().max())
    assert 0 < err <= bound
    if lut_bits == 16:
        assert err < 1e-3 * float(exact.abs().max())


def test_zero_pool_vectors_make_a_zero_table_in_any_precision():
    table = torch.zeros(256, 4, dtype=torch.float64)
    t, step = lutnet.layer_table(table, torch.tensor([0, 1]), 8, "strict")
    assert not t.any() and step == 1.0


def test_weights_that_are_not_pool_vectors_are_refused():
    m, centers, idx = pooled_model("tinyconv")
    with torch.no_grad():
        m.conv2.weight.add_(0.01)
    with pytest.raises(WPError, match="not the pool vectors"):
        lutnet.check_indices(m, centers, idx)
    lutnet.check_indices(*pooled_model("tinyconv"))


def test_convert_needs_a_range_for_every_pooled_layer_and_a_table_for_lut_bits():
    m, centers, idx = pooled_model("tinyconv")
    with pytest.raises(WPError, match="no activation range"):
        lutnet.convert(m, centers, idx, {"conv2": (1.0, True)}, 8, None, lut_mode="strict", signed_mode="twos")
    with pytest.raises(WPError, match="needs the table"):
        lutnet.convert(m, centers, idx, {n: (1.0, True) for n in idx}, 8, 8, use_table=False, lut_mode="strict", signed_mode="twos")


def test_pooled_linear_runs_from_the_table():
    torch.manual_seed(0)
    centers = torch.randn(8, 8, dtype=torch.float64)
    fc = nn.Linear(16, 5).double()
    w, indices = pool.project(fc.weight.data, centers)
    fc.weight.data.copy_(w)
    x = torch.rand(3, 16, dtype=torch.float64)
    layer = lutnet.LUTLayer(fc, indices, lut.build_table(centers), 1.0, 8, 1.0, False)
    torch.testing.assert_close(layer(x), fc(quant.fake_quant(x, 8, 1.0, False)), rtol=1e-9, atol=1e-9)


def scaled_pooled_model(network, mode, seed=0, k=16):
    """conftest's pooled_model with every pooled layer's weights multiplied by its pool scales (one per
    layer or per output channel, spread over 0.5..4): a checkpoint of a scaled pool."""
    m, centers, idx = pooled_model(network, seed, k)
    g = torch.Generator().manual_seed(seed + 1)
    scales = {}
    for name, ix in idx.items():
        layer = m.get_submodule(name)
        n = 1 if mode == "layer" else layer.weight.shape[0]
        scales[name] = (0.5 + 3.5 * torch.rand(n, generator=g, dtype=torch.float64))
        layer.weight.data.copy_(pool.deployed_weight(centers, ix, layer.weight.shape, scales[name]))
    return m, centers, idx, scales


@pytest.mark.parametrize("network", ["tinyconv", "resnet_mlperf"])
@pytest.mark.parametrize("mode", ["layer", "channel"])
def test_exact_table_network_with_pool_scales_equals_quantized_activation_network(network, mode):
    """The pool scale folds into the requantization: LUT execution with scales = float convs of the
    quantized activations with the scaled pool weights (float64: equal to roundoff); without the
    scales the LUT network is a different one."""
    m, centers, idx, scales = scaled_pooled_model(network, mode)
    lutnet.check_indices(m, centers, idx, scales)
    with pytest.raises(WPError, match="not the scaled pool vectors"):
        lutnet.check_indices(m, centers, idx, {n: s * 1.001 for n, s in scales.items()})
    with pytest.raises(WPError, match="not the pool vectors"):
        lutnet.check_indices(m, centers, idx)
    x = torch.rand(4, 1, 12, 12, dtype=torch.float64)
    ranges = quant.calibrated_ranges(m, list(idx), [x], method="max")
    ref = lutnet.convert(copy.deepcopy(m), centers, idx, ranges, 6, None, use_table=False, lut_mode="strict", signed_mode="twos")
    lut_net = lutnet.convert(copy.deepcopy(m), centers, idx, ranges, 6, None, scales=scales, lut_mode="strict", signed_mode="twos")
    unscaled = lutnet.convert(copy.deepcopy(m), centers, idx, ranges, 6, None, lut_mode="strict", signed_mode="twos")
    with torch.no_grad():
        torch.testing.assert_close(lut_net(x), ref(x), rtol=1e-9, atol=1e-9)
        for name in idx:  # each LUT layer's output is its unscaled output times its scales
            layer, plain = lut_net.get_submodule(name), unscaled.get_submodule(name)
            xin = torch.rand(2, layer.weight_shape[1], 5, 5, dtype=torch.float64)
            bias = 0 if layer.bias is None else layer.bias.view(1, -1, 1, 1)
            torch.testing.assert_close(layer(xin) - bias, (plain(xin) - bias) * scales[name].view(1, -1, 1, 1))


def test_a_scale_of_the_wrong_size_is_refused():
    conv = nn.Conv2d(16, 6, 3).double()
    with pytest.raises(WPError, match="a pool scale of 4 values does not fit a layer of 6 outputs"):
        lutnet.LUTLayer(conv, torch.zeros(6 * 9 * 2, dtype=torch.long), lut.build_table(torch.randn(4, 8)), 1.0, 8, 1.0,
                        False, scale=torch.ones(4))
