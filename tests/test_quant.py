import math

import pytest
import torch
import torch.nn as nn

from wp import quant


# ---------------------------------------------------------------------------------------------------
# ranges
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("max_abs, expected", [
    (0.7, 1.0), (1.2, 2.0), (0.3, 0.5), (1.0, 1.0), (0.5, 0.5), (3.0, 4.0), (4.0, 4.0), (4.0001, 8.0),
    (0.126, 0.25), (2.0 ** -10, 2.0 ** -10), (1000.0, 1024.0), (0.0, 1.0),
])
def test_calibrate_range_rounds_up_to_power_of_two(max_abs, expected):
    assert quant.calibrate_range(max_abs) == expected


@pytest.mark.parametrize("bad", [-0.1, math.inf, math.nan])
def test_calibrate_range_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        quant.calibrate_range(bad)


def _toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1),
                         nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1))


def test_observe_input_ranges_records_max_abs_of_layer_inputs_and_restores_model():
    model = _toy_model().train()
    batches = [(torch.randn(4, 2, 5, 5), torch.zeros(4)) for _ in range(3)]
    n_hooks = sum(len(m._forward_pre_hooks) for m in model.modules())
    got = quant.observe_input_ranges(model, ["3", "5"], batches)
    assert model.training
    assert sum(len(m._forward_pre_hooks) for m in model.modules()) == n_hooks
    model.eval()
    with torch.no_grad():
        ins3 = [model[:3](x) for x, _ in batches]
        ins5 = [model[:5](x) for x, _ in batches]
    assert got["3"] == pytest.approx(max(float(t.abs().max()) for t in ins3))
    assert got["5"] == pytest.approx(max(float(t.abs().max()) for t in ins5))
    # max_batches: only the first batch
    first = quant.observe_input_ranges(model, ["3"], batches, max_batches=1)
    assert first["3"] == pytest.approx(float(ins3[0].abs().max()))


def test_calibrated_ranges_are_powers_of_two_and_detect_signed_inputs():
    model = _toy_model()
    batches = [torch.randn(4, 2, 5, 5) for _ in range(2)]
    got = quant.calibrated_ranges(model, ["3", "5"], batches, method="max")
    raw = quant.observe_input_ranges(model, ["3", "5"], batches)
    for name in ("3", "5"):
        rng, _ = got[name]
        assert rng >= raw[name] and rng / 2 < raw[name]
        assert math.log2(rng) == int(math.log2(rng))
    assert got["3"][1] is False  # after ReLU
    assert got["5"][1] is True  # after BN: negative values


def _sse(x, bits, rng, signed):
    """Squared error of quantizing ``x``, written out from the quantizer's definition."""
    step = rng / 2 ** (bits - 1 if signed else bits)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return float(((torch.clamp(torch.round(x / step), lo, hi) * step - x) ** 2).sum())


@pytest.mark.parametrize("signed", [False, True])
def test_mse_range_is_the_power_of_two_with_least_error(signed):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, generator=gen).abs() * 0.2
    if signed:
        x = x * torch.where(torch.rand(2000, generator=gen) < 0.5, -1.0, 1.0)
    x[:3] = torch.tensor([3.0, 2.5, 2.9]) * (-1 if signed else 1)  # three outliers set the max range to 4
    model = nn.Sequential(nn.Identity(), nn.Identity())
    batches = [x[:1000].view(1, 1000), x[1000:].view(1, 1000)]
    (a_max, s_max), = quant.calibrated_ranges(model, ["1"], batches, method="max").values()
    assert (a_max, s_max) == (4.0, signed)
    for bits in (3, 4, 8):
        (a, s), = quant.calibrated_ranges(model, ["1"], iter(batches), method="mse", bits=bits).values()  # a generator: two passes
        assert s is signed
        candidates = [4.0 / 2 ** j for j in range(quant.MSE_SHIFTS + 1)]
        errors = [_sse(x, bits, c, signed) for c in candidates]
        assert a == candidates[min(range(len(errors)), key=errors.__getitem__)]
        assert _sse(x, bits, a, signed) <= _sse(x, bits, a_max, signed)
    # few bits: clipping the three outliers pays; the range shrinks
    (a3, _), = quant.calibrated_ranges(model, ["1"], batches, method="mse", bits=3).values()
    assert a3 < a_max


def test_mse_range_keeps_the_max_range_when_inputs_fill_it():
    x = torch.linspace(0, 3.9, 4000).view(1, -1)  # uniform over [0, 4): clipping only hurts
    model = nn.Sequential(nn.Identity(), nn.Identity())
    for bits in (3, 8):
        assert quant.calibrated_ranges(model, ["1"], [x], method="mse", bits=bits) == {"1": (4.0, False)}


def test_range_method_errors():
    model = _toy_model()
    with pytest.raises(ValueError, match="unknown range method 'median'"):
        quant.calibrated_ranges(model, ["3"], [torch.randn(1, 2, 5, 5)], method="median")
    with pytest.raises(ValueError, match="needs the activation bits"):
        quant.calibrated_ranges(model, ["3"], [torch.randn(1, 2, 5, 5)], method="mse")


# ---------------------------------------------------------------------------------------------------
# activation quantizers
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 4, 3])
def test_unsigned_codes_range_levels_and_values(bits):
    rng = 2.0
    x = torch.linspace(-1.0, 3.0, 5001)
    codes, step = quant.unsigned_codes(x, bits, rng)
    assert step == rng / 2 ** bits
    assert codes.dtype == torch.int64
    assert int(codes.min()) == 0 and int(codes.max()) == 2 ** bits - 1
    assert len(torch.unique(codes)) == 2 ** bits
    values = codes * step
    inside = (x >= 0) & (x <= rng - step)
    assert (values[inside] - x[inside]).abs().max() <= step / 2 + 1e-7
    assert torch.all(values[x > rng] == rng - step) and torch.all(values[x < 0] == 0)


@pytest.mark.parametrize("bits", [8, 4, 3])
def test_signed_codes_twos_complement_range(bits):
    rng = 1.0
    x = torch.linspace(-2.0, 2.0, 5001)
    codes, step = quant.signed_codes(x, bits, rng)
    assert step == rng / 2 ** (bits - 1)
    assert int(codes.min()) == -2 ** (bits - 1) and int(codes.max()) == 2 ** (bits - 1) - 1
    assert len(torch.unique(codes)) == 2 ** bits
    assert int(quant.signed_codes(torch.tensor([-rng]), bits, rng)[0]) == -2 ** (bits - 1)  # -A exact
    assert float(quant.fake_quant(torch.tensor([rng]), bits, rng, signed=True)) == rng - step


def test_rounding_is_half_to_even():
    step = 1.0 / 2 ** 4
    x = torch.tensor([0.5, 1.5, 2.5, 3.5]) * step
    assert quant.unsigned_codes(x, 4, 1.0)[0].tolist() == [0, 2, 2, 4]
    assert quant.signed_codes(-x, 5, 1.0)[0].tolist() == [0, -2, -2, -4]


@pytest.mark.parametrize("signed", [False, True])
def test_fake_quant_value_equals_codes_times_step(signed):
    x = torch.randn(1000) * 1.5
    codes, step = quant.act_codes(x, 4, 1.0, signed)
    for ste in (True, False):
        assert torch.equal(quant.fake_quant(x, 4, 1.0, signed, ste=ste), codes.float() * step)


@pytest.mark.parametrize("signed", [False, True])
def test_ste_gradient_is_one_inside_clamp_range_zero_outside(signed):
    bits, rng = 3, 1.0
    lo, hi = (-rng, rng - rng / 4) if signed else (0.0, rng - rng / 8)
    x = torch.tensor([lo - 0.3, lo - 0.01, lo, (lo + hi) / 2 + 0.013, hi, hi + 0.01, hi + 0.3], requires_grad=True)
    quant.fake_quant(x, bits, rng, signed, ste=True).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_no_ste_gives_zero_gradient_like_the_reference():
    x = torch.linspace(-2, 2, 101, requires_grad=True)
    y = quant.fake_quant(x, 4, 1.0, signed=True, ste=False)
    (y * torch.arange(101.0)).sum().backward()
    assert torch.count_nonzero(x.grad) == 0


def test_input_quantizer_hooks_quantize_layer_inputs():
    lin = nn.Linear(8, 3)
    x = torch.randn(5, 8)
    model = nn.ModuleDict({"fc": lin})
    quant.attach_input_quantizers(model, {"fc": (1.0, True)}, bits=3)
    got = lin(x)
    assert torch.allclose(got, lin.forward(quant.fake_quant(x, 3, 1.0, signed=True)))
    assert not torch.allclose(got, lin.forward(x))
    with quant.disabled(model):
        assert torch.equal(lin(x), lin.forward(x))
    assert torch.equal(lin(x), got)
    quant.detach(model)
    assert torch.equal(lin(x), lin.forward(x)) and quant.quantizers(model) == {}


def test_quantizers_live_in_the_state_dict_without_renaming_the_networks_keys():
    model = _toy_model().eval()
    keys = list(model.state_dict())
    quant.attach_input_quantizers(model, {"3": (2.0, False), "5": (0.5, True)}, bits=4)
    sd = model.state_dict()
    assert [k for k in sd if ".act_quant." not in k] == keys
    assert {k for k in sd if ".act_quant." in k} == {f"{n}.act_quant.{b}" for n in ("3", "5")
                                                      for b in ("act_bits", "act_range", "act_signed")}
    assert (float(sd["5.act_quant.act_range"]), bool(sd["5.act_quant.act_signed"]), int(sd["5.act_quant.act_bits"])) == (0.5, True, 4)
    # a fresh network: placeholders attached from the keys, then load_state_dict fills them in
    fresh = _toy_model().eval()
    quant.attach_for_loading(fresh, sd)
    fresh.load_state_dict(sd)
    qs = quant.quantizers(fresh)
    assert {n: (q.bits, q.rng, q.signed, q.step) for n, q in qs.items()} == {"3": (4, 2.0, False, 2.0 / 16), "5": (4, 0.5, True, 0.5 / 8)}
    x = torch.randn(3, 2, 5, 5)
    with torch.no_grad():
        expected = model[5].forward(quant.fake_quant(model[4](model[3].forward(quant.fake_quant(model[:3](x), 4, 2.0, False))), 4, 0.5, True))
        assert torch.equal(fresh(x), expected) and torch.equal(model(x), expected)


def test_squared_errors_equal_the_integer_code_formula_bit_for_bit():
    """The in-place error sums equal the plain formula (int64 codes, float32 squares summed in float64)
    exactly, also for a channels_last input and a buffer reused at a smaller size."""
    gen = torch.Generator().manual_seed(3)
    errors = quant._SquaredErrors(4)
    for shape, cl in (((4, 16, 9, 9), True), ((2, 8, 5, 5), False), ((3, 16, 7, 7), True)):
        x = torch.randn(shape, generator=gen) * 1.7
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        for signed in (False, True):
            rngs = [4.0, 2.0, 1.0, 0.5, 0.25]
            got = errors(x, rngs, signed)
            want = []
            for r in rngs:
                codes, step = quant.act_codes(x, 4, r, signed)
                want.append(float(((codes.to(x.dtype) * step - x) ** 2).sum(dtype=torch.float64)))
            assert got == want


def test_mse_ranges_rerun_only_batches_whose_candidates_changed_and_equal_two_passes():
    """A later batch widens layer "1"'s range and makes it signed: the earlier batches' errors are computed
    again with the final candidates, and the ranges equal the two-pass computation's."""
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Identity(), nn.Identity(), nn.ReLU(), nn.Identity())
    batches = [torch.rand(1, 500, generator=gen) * 0.3, torch.rand(1, 500, generator=gen) * 0.3,
               torch.cat([torch.randn(1, 497, generator=gen) * 0.3, torch.tensor([[-3.0, 2.5, 2.9]])], 1)]
    calls = []
    hook = model[1].register_forward_pre_hook(lambda m, i: calls.append(1))
    for bits in (3, 8):
        calls.clear()
        got = quant.calibrated_ranges(model, ["1", "3"], batches, method="mse", bits=bits)
        assert len(calls) == 3 + 2  # one pass, then the two stale batches again
        ext = quant.observe_input_extrema(model, ["1", "3"], batches)
        for name, (lo, hi) in ext.items():
            a = quant.calibrate_range(max(abs(lo), abs(hi)))
            cands = {name: ([a / 2 ** j for j in range(quant.MSE_SHIFTS + 1)], lo < 0)}
            errs = quant.observe_quant_errors(model, cands, bits, batches)[name]
            assert got[name] == (cands[name][0][errs.index(min(errs))], lo < 0)
        assert got["1"][1] is True and got["3"][1] is False
    hook.remove()


def test_bad_bits_and_ranges_are_rejected():
    with pytest.raises(ValueError):
        quant.act_codes(torch.zeros(3), 0, 1.0)
    with pytest.raises(ValueError):
        quant.act_codes(torch.zeros(3), 1, 1.0, signed=True)
    with pytest.raises(ValueError):
        quant.act_codes(torch.zeros(3), 4, 0.0)
