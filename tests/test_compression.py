"""The storage calculator against hand-counted networks and the spec's index-byte counts."""

import pytest
import torch.nn as nn

from wp import compression, models, pool


def tiny():
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 1, bias=False), nn.Flatten(), nn.Linear(8, 4))


def test_dense_counts_weights_and_biases_only():
    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Linear(16, 4))
    fp = compression.dense(m)
    assert fp.params == 3 * 16 * 9 + 16 + 16 * 4 + 4  # BatchNorm not counted
    assert fp.ratio("fp32") == fp.ratio("int8") == 1.0
    assert fp.bits("fp32") == 32 * fp.params and fp.bits("int8") == 8 * fp.params


def test_weight_pool_by_hand():
    m = tiny()
    fp = compression.weight_pool(m, ["2"], k=64, lut_bits=8)
    # layer 0: 432 weights + 16 bias at base; layer 2: 128 weights -> 16 indices of 6 bits; fc: 32 + 4 at base
    assert fp.bits("int8") == (432 + 16 + 36) * 8 + 16 * 6 + 256 * 64 * 8
    assert fp.bits("fp32") == (432 + 16 + 36) * 32 + 16 * 6 + 256 * 64 * 8
    assert fp.ratio("int8") == pytest.approx(fp.params * 8 / fp.bits("int8"))
    byte = compression.weight_pool(m, ["2"], k=64, packed=False)
    assert byte.bits_of("index") == 16 * 8
    assert compression.weight_pool(m, ["2"], k=64, lut_bits=4).bits_of("lut") == 256 * 64 * 4


def test_pool_scales_are_priced_as_float32_per_layer():
    m = tiny()
    plain = compression.weight_pool(m, ["2"], k=64)
    for n in (1, 8):  # one scale for the layer, or one per output channel of its 8
        fp = compression.weight_pool(m, ["2"], k=64, scales={"2": n})
        assert fp.bits_of("scale") == 32 * n and fp.bits("int8") == plain.bits("int8") + 32 * n
        assert fp.bits("fp32") == plain.bits("fp32") + 32 * n and fp.params == plain.params


@pytest.mark.parametrize("k,bits", [(2, 1), (32, 5), (33, 6), (64, 6), (128, 7), (256, 8)])
def test_index_bits(k, bits):
    assert compression.index_bits(k) == bits


def test_index_bytes_match_the_spec():
    # spec 9.4: one byte per pooled z-vector of resnet_10 on CIFAR-10 is 82,944 bytes
    m = models.create("resnet_10", in_channels=3, num_classes=10, image_size=32)
    layers = [n for n in pool.pooled_layers(m) if "downsample" not in n]
    fp = compression.weight_pool(m, layers, k=64, packed=False)
    assert fp.bits_of("index") // 8 == 82_944
    tc = models.create("tinyconv", in_channels=1, num_classes=100, image_size=28)
    # the reference's wp stage also pooled tinyconv's fc1 (pool_fc): 9,600 conv + 12,800 fc vectors
    assert compression.weight_pool(tc, pool.pooled_layers(tc, pool_fc=True), k=64, packed=False).bits_of("index") // 8 == 22_400


def test_bad_input_is_refused():
    with pytest.raises(KeyError):
        compression.footprint(tiny(), "x", {"nope": []})
    with pytest.raises(ValueError):
        compression.dense(tiny()).bits("int4")
    with pytest.raises(ValueError):
        compression.index_bits(1)
