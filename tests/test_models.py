import pytest
import torch

from wp import WPError, models, pool

# Trainable parameter counts from the spec (reference-behaviour.md section 3).
SPEC = {
    "resnet_10": ((3, 10, 32), 676_682),
    "resnet_14": ((3, 10, 32), 2_777_674),
    "resnet_mlperf": ((3, 10, 32), 175_258),
    "mobilenet_v2": ((1, 100, 28), 2_411_636),
    "tinyconv": ((1, 100, 28), 180_456),
}


def build(name, c, k, s):
    return models.create(name, in_channels=c, num_classes=k, image_size=s)


@pytest.mark.parametrize("name", sorted(SPEC))
def test_parameter_counts_match_spec(name):
    (c, k, s), expected = SPEC[name]
    net = build(name, c, k, s)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == expected


def test_registry_lists_the_five_networks():
    assert models.names() == sorted(SPEC)


def test_unknown_network_is_a_clear_error():
    with pytest.raises(WPError, match="unknown network 'resnet_99'.*choose one of"):
        build("resnet_99", 3, 10, 32)


def _vectors_of(net, predicate):
    return sum(m.weight.numel() // 8 for name, m in net.named_modules() if name in pool.pooled_layers(net) and predicate(m))


def test_resnet10_block_convs_have_82944_z_vectors():
    net = build("resnet_10", 3, 10, 32)
    assert _vectors_of(net, lambda m: m.kernel_size == (3, 3)) == 82_944
    # the 1x1 downsample conv is pooled too (in_channels 64 divides by 8), the stem and fc are not
    assert "layer2.0.downsample.0" in pool.pooled_layers(net)
    assert "conv1" not in pool.pooled_layers(net) and "fc" not in pool.pooled_layers(net)


@pytest.mark.parametrize("name,count", [("resnet_14", 340_992), ("resnet_mlperf", 21_312)])
def test_resnet_block_conv_vectors(name, count):
    assert _vectors_of(build(name, 3, 10, 32), lambda m: m.kernel_size == (3, 3)) == count


def test_mobilenet_pools_every_1x1_conv_and_no_depthwise():
    net = build("mobilenet_v2", 1, 100, 28)
    layers = pool.pooled_layers(net)
    assert pool.model_vectors(net, layers)[0].shape == (272_992, 8)
    modules = dict(net.named_modules())
    assert all(modules[n].kernel_size == (1, 1) and modules[n].groups == 1 for n in layers)
    assert "conv2" in layers and "layers.0.shortcut.0" in layers


def test_tinyconv_pools_conv2_conv3_and_fc_only_on_request():
    net = build("tinyconv", 1, 100, 28)
    assert pool.pooled_layers(net) == ["conv2", "conv3"]
    assert pool.model_vectors(net, ["conv2", "conv3"])[0].shape == (9_600, 8)
    assert pool.pooled_layers(net, pool_fc=True) == ["conv2", "conv3", "fc1"]


@pytest.mark.parametrize("name", sorted(SPEC))
@pytest.mark.parametrize("c,k,s", [(1, 10, 28), (3, 10, 32), (1, 10, 8)])
def test_every_network_runs_on_every_input_shape(name, c, k, s):
    net = build(name, c, k, s).eval()
    with torch.no_grad():
        assert net(torch.rand(2, c, s, s)).shape == (2, k)
