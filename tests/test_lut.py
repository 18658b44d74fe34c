import itertools

import pytest
import torch
import torch.nn.functional as F

from wp import lut, pool, quant

SIGNED = [(False, "twos"), (True, "twos"), (True, "split")]  # (signed, signed_mode); mode unused when unsigned


def _int_pool(k=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.randint(-4, 5, (k, 8), generator=g).float()
    p[p.abs().sum(1) == 0, 0] = 1.0  # no zero vectors (cosine assignment)
    return p


def _layer(out_c, in_c, k, pool_vectors, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_c, in_c, k, k, generator=g)
    return pool.project(w, pool_vectors)  # (projected weight, indices in order o, y, x, g)


def _codes(shape, bits, signed, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = quant.code_limits(bits, signed)
    c = torch.randint(lo, hi + 1, shape, generator=g)
    c.view(-1)[:2] = torch.tensor([lo, hi])  # always include the extreme codes
    return c


# ---------------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------------

def test_build_table_is_dot_product_with_bit_patterns():
    torch.manual_seed(0)
    p = torch.randn(10, 8, dtype=torch.float64)
    t = lut.build_table(p)
    assert t.shape == (256, 10) and t.dtype == torch.float64
    for s in torch.randint(0, 256, (40,)).tolist() + [0, 1, 128, 255]:
        bits = torch.tensor([(s >> j) & 1 for j in range(8)], dtype=torch.float64)  # channel j = bit j
        assert torch.allclose(t[s], p @ bits, rtol=0, atol=1e-12)
    assert torch.equal(t[0], torch.zeros(10, dtype=torch.float64))
    for j in range(8):
        assert torch.equal(t[1 << j], p[:, j])  # lowest channel is the least significant bit


def test_build_table_integer_pool_gives_exact_integer_table():
    p = _int_pool().long()
    t = lut.build_table(p)
    assert t.dtype == torch.int64
    assert torch.equal(t[255], p.sum(1)) and torch.equal(t[0b101], p[:, 0] + p[:, 2])
    assert torch.equal(t.float(), lut.build_table(p.float()))


# ---------------------------------------------------------------------------------------------------
# lut_conv2d == conv2d of the quantized activations with the projected weights (unquantized table)
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, stride, padding", list(itertools.product([1, 3, 5], [1, 2], [0, 1, 2])))
def test_lut_conv2d_equals_conv2d_exactly_with_integer_pool(k, stride, padding):
    p = _int_pool()
    table_f, table_i = lut.build_table(p), lut.build_table(p.long())
    for in_c, bits, (signed, mode) in itertools.product([8, 64], [8, 4, 3], SIGNED):
        weight, idx = _layer(6, in_c, k, p, seed=in_c + k)
        codes = _codes((2, in_c, 6, 5), bits, signed, seed=bits)
        ref = F.conv2d(codes.double(), weight.double(), stride=stride, padding=padding)
        got_i = lut.lut_conv2d(codes, idx, table_i, weight.shape, stride, padding, bits, signed, mode)
        got_f = lut.lut_conv2d(codes, idx, table_f, weight.shape, stride, padding, bits, signed, mode)
        assert got_i.dtype == torch.int64 and got_f.dtype == torch.float32
        assert torch.equal(got_i, ref.long()), (in_c, bits, signed, mode)
        assert torch.equal(got_f.double(), ref), (in_c, bits, signed, mode)


@pytest.mark.parametrize("signed, mode", SIGNED)
@pytest.mark.parametrize("bits", [8, 3])
def test_lut_conv2d_matches_conv2d_of_quantized_activations_float_pool(signed, mode, bits):
    torch.manual_seed(1)
    p = torch.randn(32, 8)
    weight, idx = _layer(16, 32, 3, p)
    x = torch.randn(2, 32, 7, 7)
    x = x if signed else x.relu()
    codes, step = quant.act_codes(x, bits, 2.0, signed)
    got = lut.lut_conv2d(codes, idx, lut.build_table(p), weight.shape, stride=1, padding=1, bits=bits,
                         signed=signed, signed_mode=mode, scale=step)
    ref = F.conv2d(quant.fake_quant(x, bits, 2.0, signed), weight, padding=1)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-4)  # float32 sums in different orders
    # a wrong bit weighting would not pass: treating signed codes as unsigned breaks it
    if signed:
        wrong = lut.lut_conv2d(codes & (2 ** bits - 1), idx, lut.build_table(p), weight.shape, 1, 1, bits,
                               scale=step)
        assert not torch.allclose(wrong, ref, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------------------------------
# lut_conv2d == the naive loop, also with quantized tables (where conv2d no longer applies)
# ---------------------------------------------------------------------------------------------------

NAIVE_CASES = [  # (in_c, k, stride, padding, bits, signed, mode, hw)
    (8, 3, 1, 1, 8, False, "twos", 5),
    (16, 3, 2, 0, 4, False, "twos", 6),
    (8, 1, 1, 0, 3, True, "twos", 4),
    (16, 5, 1, 2, 4, True, "split", 4),
    (8, 5, 2, 2, 3, True, "twos", 5),
    (64, 3, 1, 1, 3, True, "split", 3),
    (64, 1, 2, 0, 8, False, "twos", 3),
]


@pytest.mark.parametrize("in_c, k, stride, padding, bits, signed, mode, hw", NAIVE_CASES)
def test_lut_conv2d_equals_naive_loop_with_quantized_integer_table(in_c, k, stride, padding, bits, signed, mode, hw):
    torch.manual_seed(2)
    p = torch.randn(16, 8)
    weight, idx = _layer(3, in_c, k, p, seed=3)
    table = lut.build_table(p)
    tcodes, _ = lut.table_codes(table, 4, lut.table_range(table, idx), "reference")
    codes = _codes((2, in_c, hw, hw), bits, signed, seed=4)
    args = (codes, idx, tcodes, weight.shape, stride, padding, bits, signed, mode)
    got, naive = lut.lut_conv2d(*args), lut.lut_conv2d_naive(*args)
    assert got.dtype == naive.dtype == torch.int64
    assert torch.equal(got, naive)


@pytest.mark.parametrize("signed, mode", SIGNED)
def test_lut_conv2d_equals_naive_loop_exactly_with_integer_valued_float_table(signed, mode):
    p = _int_pool(seed=5)
    weight, idx = _layer(2, 16, 3, p, seed=6)
    codes = _codes((1, 16, 5, 5), 4, signed, seed=7)
    args = (codes, idx, lut.build_table(p), weight.shape, 2, 1, 4, signed, mode)
    assert torch.equal(lut.lut_conv2d(*args).double(), lut.lut_conv2d_naive(*args))


def test_quantized_float_table_and_integer_codes_with_scale_agree():
    torch.manual_seed(3)
    p = torch.randn(8, 8)
    weight, idx = _layer(4, 16, 3, p)
    table = lut.build_table(p)
    r = lut.table_range(table, idx)
    codes, a_step = quant.act_codes(torch.rand(2, 16, 6, 6), 8, 1.0)
    for mode in lut.TABLE_MODES:
        tcodes, t_step = lut.table_codes(table, 4, r, mode)
        exact = lut.lut_conv2d(codes, idx, tcodes, weight.shape, padding=1, bits=8, scale=a_step * t_step)
        approx = lut.lut_conv2d(codes, idx, lut.quantize_table(table, 4, r, mode), weight.shape, padding=1,
                                bits=8, scale=a_step)
        naive = lut.lut_conv2d_naive(codes[:1], idx, lut.quantize_table(table, 4, r, mode), weight.shape,
                                     padding=1, bits=8, scale=a_step)
        assert torch.allclose(exact, approx, rtol=1e-5, atol=1e-5)
        assert torch.allclose(exact[:1].double(), naive, rtol=1e-5, atol=1e-5)
    # 4-bit LUT entries change the result (the check above is not vacuous)
    unq = lut.lut_conv2d(codes, idx, table, weight.shape, padding=1, bits=8, scale=a_step)
    assert not torch.allclose(exact, unq, rtol=1e-3, atol=1e-3)


def test_signed_schemes_differ_only_once_the_table_is_quantized():
    torch.manual_seed(4)
    p = torch.randn(8, 8)
    weight, idx = _layer(4, 16, 3, p)
    table = lut.build_table(p)
    codes = _codes((2, 16, 5, 5), 4, True, seed=8)
    tcodes, _ = lut.table_codes(table, 3, lut.table_range(table), "strict")
    twos = lut.lut_conv2d(codes, idx, tcodes, weight.shape, 1, 1, 4, True, "twos")
    split = lut.lut_conv2d(codes, idx, tcodes, weight.shape, 1, 1, 4, True, "split")
    assert not torch.equal(twos, split)
    assert torch.allclose(lut.lut_conv2d(codes, idx, table, weight.shape, 1, 1, 4, True, "twos"),
                          lut.lut_conv2d(codes, idx, table, weight.shape, 1, 1, 4, True, "split"), atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# integer-exact path, chunking, validation, linear, devices
# ---------------------------------------------------------------------------------------------------

def test_large_integer_tables_stay_exact():
    # 16-bit LUT codes: sums pass 2^24, so float32 would round; the result must still be exact
    g = torch.Generator().manual_seed(9)
    table = torch.randint(-2 ** 15, 2 ** 15, (256, 8), generator=g)
    table[0] = 0
    idx = torch.randint(0, 8, (2 * 9 * 8,), generator=g)
    codes = _codes((1, 64, 3, 3), 8, False, seed=10)
    args = (codes, idx, table, (2, 64, 3, 3), 1, 1, 8)
    got = lut.lut_conv2d(*args)
    assert int(got.abs().max()) > 2 ** 24
    assert torch.equal(got, lut.lut_conv2d_naive(*args))


def test_chunking_does_not_change_the_result():
    p = _int_pool()
    weight, idx = _layer(5, 16, 3, p)
    codes = _codes((5, 16, 6, 6), 4, True, seed=11)
    table = lut.build_table(p.long())
    full = lut.lut_conv2d(codes, idx, table, weight.shape, 1, 1, 4, True)
    assert torch.equal(full, lut.lut_conv2d(codes, idx, table, weight.shape, 1, 1, 4, True, chunk_elements=1))


def test_padding_is_code_zero():
    p = _int_pool()
    weight, idx = _layer(3, 8, 3, p)
    codes = _codes((1, 8, 4, 4), 4, False)
    table = lut.build_table(p.long())
    padded = lut.lut_conv2d(F.pad(codes, (2, 2, 2, 2)), idx, table, weight.shape, 1, 0, 4)
    assert torch.equal(lut.lut_conv2d(codes, idx, table, weight.shape, 1, 2, 4), padded)


def test_inputs_are_validated():
    p = _int_pool()
    weight, idx = _layer(2, 8, 1, p)
    table = lut.build_table(p)
    with pytest.raises(ValueError):  # code 16 does not fit 4 unsigned bits
        lut.lut_conv2d(torch.full((1, 8, 2, 2), 16), idx, table, weight.shape, bits=4)
    with pytest.raises(ValueError):  # negative codes need signed=True
        lut.lut_conv2d(torch.full((1, 8, 2, 2), -1), idx, table, weight.shape, bits=4)
    with pytest.raises(TypeError):  # only integer codes
        lut.lut_conv2d(torch.zeros(1, 8, 2, 2), idx, table, weight.shape, bits=4)
    with pytest.raises(ValueError):  # wrong number of indices
        lut.lut_conv2d(torch.zeros(1, 8, 2, 2, dtype=torch.long), idx[:-1], table, weight.shape, bits=4)
    with pytest.raises(ValueError):  # index beyond the table
        lut.lut_conv2d(torch.zeros(1, 8, 2, 2, dtype=torch.long), idx + 100, table, weight.shape, bits=4)


@pytest.mark.parametrize("signed, mode", SIGNED)
def test_lut_linear_equals_linear(signed, mode):
    p = _int_pool()
    g = torch.Generator().manual_seed(12)
    w = torch.randn(5, 24, generator=g)
    wq, idx = pool.project(w, p)
    codes = _codes((3, 24), 4, signed, seed=13)
    bias = torch.randn(5, generator=g)
    got = lut.lut_linear(codes, idx, lut.build_table(p), 5, bits=4, signed=signed, signed_mode=mode,
                         scale=0.25, bias=bias)
    assert torch.allclose(got, F.linear(codes.float() * 0.25, wq, bias), atol=1e-5)


def test_emulate_conv2d_end_to_end():
    torch.manual_seed(5)
    p = torch.randn(16, 8)
    w = torch.randn(8, 16, 3, 3)
    x = torch.randn(2, 16, 6, 6)
    wq, _ = pool.project(w, p)
    ref = F.conv2d(quant.fake_quant(x, 8, 4.0, signed=True), wq, stride=2, padding=1)
    got = lut.emulate_conv2d(x, p, w, 2, 1, act_bits=8, act_range=4.0, signed=True)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)
    lut16 = lut.emulate_conv2d(x, p, w, 2, 1, act_bits=8, act_range=4.0, signed=True, lut_bits=16)
    lut3 = lut.emulate_conv2d(x, p, w, 2, 1, act_bits=8, act_range=4.0, signed=True, lut_bits=3)
    assert (lut16 - ref).abs().max() < 1e-2 * ref.abs().max()
    assert (lut3 - ref).abs().max() > (lut16 - ref).abs().max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lut_conv2d_on_cuda_matches_cpu():
    p = _int_pool()
    weight, idx = _layer(6, 16, 3, p)
    for signed, mode in SIGNED:
        codes = _codes((2, 16, 7, 7), 8, signed)
        for table in (lut.build_table(p), lut.build_table(p.long())):
            cpu = lut.lut_conv2d(codes, idx, table, weight.shape, 2, 1, 8, signed, mode)
            gpu = lut.lut_conv2d(codes.cuda(), idx.cuda(), table.cuda(), weight.shape, 2, 1, 8, signed, mode)
            assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)


# ---------------------------------------------------------------------------------------------------
# the fast kernel (bit-matrix transpose, "filters" and "pool" lookups) == the naive loop, exactly
# ---------------------------------------------------------------------------------------------------

def test_transpose_bytes_gives_the_bit_plane_patterns():
    g = torch.Generator().manual_seed(20)
    codes = torch.randint(0, 256, (50, 8), generator=g)
    codes[0], codes[1] = 0, 255
    words = (codes << (8 * torch.arange(8))).sum(1)  # byte j = code of channel j
    lut._transpose_bytes(words)
    for w, c in zip(words.tolist(), codes.tolist()):
        got = [(w >> (8 * b)) & 0xFF for b in range(8)]  # byte b = pattern of bit plane b
        assert got == [sum(((v >> b) & 1) << j for j, v in enumerate(c)) for b in range(8)]


FAST_CASES = [  # (k, stride, padding, bits, signed, mode, method)
    (1, 1, 0, 8, False, "twos", "filters"),
    (1, 1, 0, 8, False, "twos", "pool"),
    (1, 2, 0, 4, True, "twos", "pool"),
    (1, 2, 0, 5, True, "split", "filters"),
    (1, 1, 0, 8, True, "split", "pool"),
    (1, 1, 0, 11, True, "twos", "pool"),
    (1, 1, 0, 10, False, "twos", "filters"),
    (3, 1, 1, 8, True, "twos", "filters"),
    (3, 2, 1, 3, False, "twos", "filters"),
    (3, 2, 0, 6, True, "split", "filters"),
    (3, 1, 1, 9, True, "split", "filters"),
    (3, 1, 2, 12, True, "twos", "filters"),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("k, stride, padding, bits, signed, mode, method", FAST_CASES)
def test_fast_kernel_equals_naive_loop_on_random_codes(k, stride, padding, bits, signed, mode, method, channels_last):
    """Every way the kernel forms its bit planes (1 or 2 bytes, two's complement or split, NCHW or
    channels-last codes) and both lookups give the naive loop's integers, with a quantized table."""
    torch.manual_seed(21)
    p = torch.randn(12, 8)
    weight, idx = _layer(5, 24, k, p, seed=22)
    table = lut.build_table(p)
    tcodes, _ = lut.table_codes(table, 6, lut.table_range(table, idx), "strict")
    codes = _codes((3, 24, 5, 6), bits, signed, seed=bits)
    if channels_last:
        codes = codes.contiguous(memory_format=torch.channels_last)
    args = (codes, idx, tcodes, weight.shape, stride, padding, bits, signed, mode)
    naive = lut.lut_conv2d_naive(*args)
    got = lut.lut_conv2d(*args, method=method)
    assert got.dtype == torch.int64 and torch.equal(got, naive)
    assert torch.equal(lut.lut_conv2d(*args, method=method, chunk_elements=1), naive)  # one image per chunk


@pytest.mark.parametrize("signed, mode", SIGNED)
def test_pool_and_filter_lookups_agree_on_a_wide_layer(signed, mode):
    """A layer much wider than the pool (where "auto" takes the pool lookup): both lookups give the
    same integers, and a float table the same sums up to float32 rounding."""
    torch.manual_seed(23)
    p = torch.randn(8, 8)
    weight, idx = _layer(96, 32, 1, p, seed=24)
    table = lut.build_table(p)
    tcodes, _ = lut.table_codes(table, 8, lut.table_range(table, idx), "strict")
    codes = _codes((2, 32, 4, 3), 8, signed, seed=25)
    args = (codes, idx, tcodes, weight.shape, 1, 0, 8, signed, mode)
    filters = lut.lut_conv2d(*args, method="filters")
    assert torch.equal(lut.lut_conv2d(*args, method="pool"), filters)
    assert torch.equal(lut.lut_conv2d(*args), filters)
    assert torch.equal(filters[:1, :4], lut.lut_conv2d_naive(codes[:1], idx.view(96, 4)[:4], tcodes, (4, 32, 1, 1),
                                                              1, 0, 8, signed, mode))
    fargs = (codes, idx, table, weight.shape, 1, 0, 8, signed, mode)
    assert torch.allclose(lut.lut_conv2d(*fargs, method="pool"), lut.lut_conv2d(*fargs, method="filters"),
                          rtol=1e-5, atol=1e-4)


def test_pool_lookup_is_for_pointwise_layers_only():
    p = _int_pool()
    weight, idx = _layer(2, 8, 3, p)
    codes = torch.zeros(1, 8, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="1x1"):
        lut.lut_conv2d(codes, idx, lut.build_table(p), weight.shape, 1, 1, 4, method="pool")
    with pytest.raises(ValueError, match="method"):
        lut.lut_conv2d(codes, idx, lut.build_table(p), weight.shape, 1, 1, 4, method="fast")


def test_lut_speed_benchmark_runs_and_old_and_new_kernels_agree(capsys):
    """benchmarks/lut_speed.py at one image: every layer's old and new kernel give the same integers."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "lut_speed.py"
    spec = importlib.util.spec_from_file_location("lut_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--images", "1", "--repeats", "1", "--act-bits", "4", "--channels-last"]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("mobilenet_v2", "resnet_14"))]
    assert len(rows) == len(bench.LAYERS) and all(line.endswith("yes") for line in rows)


# LUT entry quantizers
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [4, 8, 3])
def test_strict_table_quantizer_has_2n_levels_and_no_clipping_below_top(bits):
    r = 0.75
    t = torch.linspace(-r, r, 20001, dtype=torch.float64)
    codes, step = lut.table_codes(t, bits, r, "strict")
    assert step == r / 2 ** (bits - 1)
    assert int(codes.min()) == -2 ** (bits - 1) and int(codes.max()) == 2 ** (bits - 1) - 1
    q = lut.quantize_table(t, bits, r, "strict")
    assert len(torch.unique(q)) == 2 ** bits
    err = (q - t).abs()
    below_top = t <= r - step
    assert err[below_top].max() <= step / 2 + 1e-12  # only rounding below the last level
    assert err.max() <= step + 1e-12  # clipping at the top costs at most one step
    assert float(q[0]) == -r  # -r is representable


@pytest.mark.parametrize("bits", [4, 8, 3])
def test_reference_table_quantizer_has_2n_plus_1_levels_and_matches_formula(bits):
    r = 0.5
    t = torch.linspace(-1.2 * r, 1.2 * r, 20001, dtype=torch.float64)
    q = lut.quantize_table(t, bits, r, "reference")
    assert len(torch.unique(q)) == 2 ** bits + 1
    delta = 2 * r / (2 ** bits - 1)
    formula = torch.clamp(torch.round(t / delta) * delta, -r, r)
    assert torch.allclose(q, formula, rtol=0, atol=1e-12)
    codes, step = lut.table_codes(t, bits, r, "reference")
    assert step == pytest.approx(delta / 2)
    top = 2 ** bits - 1
    odd = codes[codes % 2 != 0]
    assert set(odd.unique().tolist()) == {-top, top}  # only ±r are odd half-steps
    assert int(codes.abs().max()) == top


def test_strict_and_reference_differ_and_zero_stays_zero():
    t = torch.tensor([0.0, 0.1, -0.33, 0.49, 0.5])
    for mode in lut.TABLE_MODES:
        assert float(lut.quantize_table(t, 4, 0.5, mode)[0]) == 0.0
    assert not torch.equal(lut.quantize_table(t, 4, 0.5, "strict"), lut.quantize_table(t, 4, 0.5, "reference"))
    with pytest.raises(ValueError):
        lut.table_codes(t, 4, 0.5, "bogus")


def test_table_range_uses_only_the_layers_pool_entries():
    table = torch.tensor([[0.0, 0.0, 0.0], [1.0, -5.0, 2.0], [-3.0, 0.5, 0.25]])
    assert lut.table_range(table) == 5.0
    assert lut.table_range(table, torch.tensor([0, 2, 2])) == 3.0
    assert lut.table_range(table, torch.tensor([[2]])) == 2.0
