"""Activation and lookup-table-entry quantizers (spec: reference-behaviour.md sections 7, 8, 9).

Activations
-----------
A pooled layer's input is quantized with a per-layer *range* ``A`` (a power of two) to ``B`` bits:

* **unsigned** (the input follows a ReLU): step ``Δ = A / 2^B``, integer code
  ``c = clamp(round(x / Δ), 0, 2^B - 1)``, value ``c · Δ`` (so the largest value is ``A - Δ``);
* **signed** (the input follows a BN, e.g. TinyConv, MobileNet-v2): ``B`` bits in two's-complement
  style, step ``Δ = A / 2^(B-1)``, ``c = clamp(round(x / Δ), -2^(B-1), 2^(B-1) - 1)``, value range
  ``[-A, A - Δ]``.

``round`` is :func:`torch.round` (half to even), as in the reference. The range is calibrated per layer on
training batches (:func:`calibrated_ranges`; the reference instead hard-coded ranges picked on the test
set), in one of two ways (``method``):

* ``"max"``: the max |input| rounded up to a power of two (:func:`calibrate_range`): nothing is clipped,
  but a few outliers make the step coarse for everything else — fine at 8 bits, poor at 3 or 4;
* ``"mse"``: of the powers of two ``A_max / 2^j`` (``j = 0..MSE_SHIFTS``, ``A_max`` the "max" range), the
  one with the least squared quantization error over the calibration inputs at the bit width used. It
  trades clipping a few large inputs for a finer step, and equals "max" where clipping does not pay.

For training, :func:`fake_quant` applies the quantizer in the forward pass with a straight-through
estimator (``ste=True``, our default: the gradient is 1 inside the clamp range and 0 outside) or, with
``ste=False``, exactly as the reference does, ``clamp(round(x/Δ)·Δ, lo, hi)`` on the autograd graph,
whose gradient is zero everywhere (the derivative of ``round`` is 0).

Lookup-table entries
--------------------
The table ``T[s, k]`` (see :mod:`wp.lut`) can be quantized to ``n`` bits (Table 5) in two ways:

* ``mode="strict"`` (our default): a true ``n``-bit signed uniform quantizer with ``2^n`` levels, the
  integers ``[-2^(n-1), 2^(n-1) - 1]`` times a step ``Δ_L = r / 2^(n-1)``, where ``r`` is the layer's range
  ``max |T|`` over the table columns the layer uses (:func:`table_range`). With this step ``-r`` is exactly
  representable and nothing is clipped except entries in ``(r - Δ_L, r]``, which land on the
  asymmetric top level ``r - Δ_L`` (at most one step of error, the same as two's-complement integers).
  We prefer this to ``Δ_L = r / (2^(n-1) - 1)`` (symmetric, no clipping) because that wastes one of the
  ``2^n`` codes and makes the step ``2^(n-1)/(2^(n-1)-1)`` times coarser everywhere.
* ``mode="reference"``: the reference's ``quantization_n``: ``Δ_L = 2r / (2^n - 1)``,
  ``T_q = clamp(round(T / Δ_L) · Δ_L, -r, r)``. Since ``r / Δ_L = 2^(n-1) - 1/2`` this reaches
  ``{k·Δ_L : |k| ≤ 2^(n-1) - 1} ∪ {±r}``: ``2^n + 1`` levels, the outermost step being half-width.
  All of them are integer multiples of ``Δ_L / 2``, which is what :func:`table_codes` uses as its step in
  this mode (codes ``2k`` and ``±(2^n - 1)``), so the integer-exact LUT path works for both modes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn

TABLE_MODES = ("strict", "reference")


# ----------------------------------------------------------------------------------------------------
# Activation ranges
# ----------------------------------------------------------------------------------------------------

def calibrate_range(max_abs: float) -> float:
    """The smallest power of two ``>= max_abs`` (0.7 → 1, 1.2 → 2, 0.3 → 0.5, 1.0 → 1.0).

    A layer whose inputs were all zero (``max_abs == 0``) gets 1.0: any range quantizes zeros exactly.
    Raises ``ValueError`` for a negative or non-finite value.
    """
    max_abs = float(max_abs)
    if not math.isfinite(max_abs) or max_abs < 0:
        raise ValueError(f"max_abs must be finite and >= 0, got {max_abs}")
    if max_abs == 0.0:
        return 1.0
    mantissa, exponent = math.frexp(max_abs)  # max_abs = mantissa * 2**exponent, 0.5 <= mantissa < 1
    if mantissa == 0.5:  # already a power of two
        return max_abs
    return math.ldexp(1.0, exponent)


RANGE_METHODS = ("max", "mse")
MSE_SHIFTS = 4  # "mse" tries A_max, A_max/2, ..., A_max/16


def _observe_inputs(model: nn.Module, layer_names: Sequence[str], batches: Iterable, observe,
                    max_batches: int | None, device: torch.device | str | None) -> None:
    """Run ``model`` (in eval mode, without gradients) over ``batches`` and call ``observe(name, x)`` with
    the first positional input ``x`` of each module named in ``layer_names``.

    ``batches`` yields input tensors or ``(inputs, targets, ...)`` tuples/lists (only the first element is
    used). ``max_batches`` stops early; ``device`` moves each batch there (default: the model's device).
    The model's train/eval mode is restored afterwards and the hooks are removed even on error.
    """
    modules = dict(model.named_modules())
    missing = [n for n in layer_names if n not in modules]
    if missing:
        raise KeyError(f"no such modules: {missing}")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    seen: set[str] = set()

    def make_hook(name: str):
        def hook(_module, inputs):
            seen.add(name)
            observe(name, inputs[0].detach())
        return hook

    handles = [modules[n].register_forward_pre_hook(make_hook(n)) for n in layer_names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen != set(layer_names):
        raise RuntimeError(f"layers never called: {sorted(set(layer_names) - seen)}")


def observe_input_extrema(model: nn.Module, layer_names: Sequence[str], batches: Iterable,
                          max_batches: int | None = None, device: torch.device | str | None = None,
                          ) -> dict[str, tuple[float, float]]:
    """Per module named in ``layer_names``, the (min, max) of its first input over ``batches`` (see
    :func:`_observe_inputs` for ``batches``, ``max_batches`` and ``device``)."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}

    def observe(name: str, x: torch.Tensor) -> None:
        mn, mx = float(x.min()), float(x.max())
        lo[name] = min(lo.get(name, mn), mn)
        hi[name] = max(hi.get(name, mx), mx)

    _observe_inputs(model, layer_names, batches, observe, max_batches, device)
    return {n: (lo[n], hi[n]) for n in layer_names}


def observe_quant_errors(model: nn.Module, candidates: dict[str, tuple[list[float], bool]], bits: int,
                         batches: Iterable, max_batches: int | None = None,
                         device: torch.device | str | None = None) -> dict[str, list[float]]:
    """Per layer in ``candidates`` (name → (ranges, signed)), the summed squared error of quantizing its
    input over ``batches`` to ``bits`` with each candidate range, in the candidates' order."""
    errors = {n: [0.0] * len(rngs) for n, (rngs, _) in candidates.items()}

    def observe(name: str, x: torch.Tensor) -> None:
        rngs, signed = candidates[name]
        xf = x.float()
        for i, rng in enumerate(rngs):
            codes, step = act_codes(xf, bits, rng, signed)
            errors[name][i] += float(((codes.to(xf.dtype) * step - xf) ** 2).sum(dtype=torch.float64))

    _observe_inputs(model, list(candidates), batches, observe, max_batches, device)
    return errors


def observe_input_ranges(model: nn.Module, layer_names: Sequence[str], batches: Iterable,
                         max_batches: int | None = None, device: torch.device | str | None = None,
                         ) -> dict[str, float]:
    """Per layer, the max |input| seen over ``batches`` (raw, not rounded; see :func:`calibrate_range`)."""
    ext = observe_input_extrema(model, layer_names, batches, max_batches, device)
    return {n: max(abs(mn), abs(mx)) for n, (mn, mx) in ext.items()}


def calibrated_ranges(model: nn.Module, layer_names: Sequence[str], batches: Iterable,
                      max_batches: int | None = None, device: torch.device | str | None = None,
                      *, method: str = "max", bits: int | None = None) -> dict[str, tuple[float, bool]]:
    """Per layer, ``(A, signed)``: the power-of-two range (``method`` "max" or "mse", see the module
    docstring; "mse" needs the activation ``bits``) and whether the layer saw negative inputs (then it
    needs the signed quantizer)."""
    if method not in RANGE_METHODS:
        raise ValueError(f"unknown range method {method!r}: use one of {', '.join(RANGE_METHODS)}")
    if method == "mse":
        if bits is None:
            raise ValueError("the mse range method needs the activation bits")
        batches = list(batches)[:max_batches]  # two passes over the same images
    ext = observe_input_extrema(model, layer_names, batches, max_batches, device)
    ranges = {n: (calibrate_range(max(abs(mn), abs(mx))), mn < 0) for n, (mn, mx) in ext.items()}
    if method == "max":
        return ranges
    code_limits(bits, True)  # validates bits
    candidates = {n: ([a / 2**j for j in range(MSE_SHIFTS + 1)], signed) for n, (a, signed) in ranges.items()}
    errors = observe_quant_errors(model, candidates, bits, batches, device=device)
    # ties (e.g. all-zero inputs) keep the larger range: min() returns the first minimum
    return {n: (rngs[min(range(len(rngs)), key=errors[n].__getitem__)], signed) for n, (rngs, signed) in candidates.items()}


# ----------------------------------------------------------------------------------------------------
# Activation quantizers
# ----------------------------------------------------------------------------------------------------

def code_limits(bits: int, signed: bool) -> tuple[int, int]:
    """Smallest and largest integer code: ``(0, 2^B - 1)`` unsigned, ``(-2^(B-1), 2^(B-1) - 1)`` signed."""
    if bits < 1 or (signed and bits < 2):
        raise ValueError(f"need bits >= 1 (>= 2 when signed), got {bits}")
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def act_step(bits: int, rng: float, signed: bool) -> float:
    """The activation step Δ: ``A / 2^B`` unsigned, ``A / 2^(B-1)`` signed."""
    code_limits(bits, signed)  # validates bits
    if not rng > 0:
        raise ValueError(f"range must be > 0, got {rng}")
    return float(rng) / (1 << (bits - 1 if signed else bits))


def act_codes(x: torch.Tensor, bits: int, rng: float, signed: bool = False) -> tuple[torch.Tensor, float]:
    """Integer codes (int64, same shape as ``x``) and the step Δ such that ``codes * Δ`` is the quantized
    activation. Codes lie in :func:`code_limits`."""
    step = act_step(bits, rng, signed)
    lo, hi = code_limits(bits, signed)
    codes = torch.clamp(torch.round(x.detach() / step), lo, hi).to(torch.int64)
    return codes, step


def unsigned_codes(x: torch.Tensor, bits: int, rng: float) -> tuple[torch.Tensor, float]:
    """:func:`act_codes` for a non-negative (post-ReLU) input: codes in ``[0, 2^B)``, Δ = A / 2^B."""
    return act_codes(x, bits, rng, signed=False)


def signed_codes(x: torch.Tensor, bits: int, rng: float) -> tuple[torch.Tensor, float]:
    """:func:`act_codes` for a signed input: codes in ``[-2^(B-1), 2^(B-1))``, Δ = A / 2^(B-1)."""
    return act_codes(x, bits, rng, signed=True)


def fake_quant(x: torch.Tensor, bits: int, rng: float, signed: bool = False, ste: bool = True) -> torch.Tensor:
    """Quantize-dequantize ``x`` (same shape and dtype) for training and evaluation.

    The forward value equals ``act_codes(x)[0] * Δ``. With ``ste=True`` the backward pass is the
    straight-through estimator of the clamp: gradient 1 where ``lo <= x <= hi`` (``lo, hi`` = the smallest
    and largest representable values), 0 outside. With ``ste=False`` the expression is the reference's
    ``clamp(round(x/Δ)·Δ, lo, hi)``, whose gradient is 0 everywhere.
    """
    step = act_step(bits, rng, signed)
    cmin, cmax = code_limits(bits, signed)
    lo, hi = cmin * step, cmax * step
    # quantize in fp32 even under bf16 autocast (bf16 cannot tell x/Δ's half-steps apart); the
    # quantized values (at most 16-bit codes times a power of two) then cast back exactly for B <= 8
    xf = x.float()
    if not ste:
        return torch.clamp(torch.round(xf / step) * step, lo, hi).to(x.dtype)
    return _StraightThroughQuant.apply(xf, step, lo, hi).to(x.dtype)


class _StraightThroughQuant(torch.autograd.Function):
    """Forward ``clamp(round(x/Δ)·Δ, lo, hi)``; backward passes the gradient where ``lo <= x <= hi``
    (both ends included, independent of how ``torch.clamp`` treats its boundaries) and blocks it outside."""

    @staticmethod
    def forward(ctx, x, step, lo, hi):
        ctx.save_for_backward((x >= lo) & (x <= hi))
        return torch.clamp(torch.round(x / step) * step, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None, None


class InputQuantizer:
    """A forward pre-hook that fake-quantizes a module's first input: ``module.register_forward_pre_hook(
    InputQuantizer(bits, rng, signed))``."""

    def __init__(self, bits: int, rng: float, signed: bool = False, ste: bool = True):
        act_step(bits, rng, signed)  # validate now rather than in the forward pass
        self.bits, self.rng, self.signed, self.ste = bits, float(rng), signed, ste

    def __call__(self, _module, inputs):
        return (fake_quant(inputs[0], self.bits, self.rng, self.signed, self.ste), *inputs[1:])

    def __repr__(self) -> str:
        return f"InputQuantizer(bits={self.bits}, rng={self.rng}, signed={self.signed}, ste={self.ste})"


def attach_input_quantizers(model: nn.Module, ranges: dict[str, tuple[float, bool]], bits: int,
                            ste: bool = True) -> list:
    """Fake-quantize the input of every layer in ``ranges`` (name → (A, signed), as returned by
    :func:`calibrated_ranges`) to ``bits``. Returns the hook handles (``h.remove()`` undoes it)."""
    modules = dict(model.named_modules())
    return [modules[name].register_forward_pre_hook(InputQuantizer(bits, rng, signed, ste))
            for name, (rng, signed) in ranges.items()]


# ----------------------------------------------------------------------------------------------------
# Lookup-table entry quantizers
# ----------------------------------------------------------------------------------------------------

def table_range(table: torch.Tensor, indices: torch.Tensor | None = None) -> float:
    """The LUT range ``r`` of one layer: ``max |T[:, k]|`` over the pool entries ``k`` the layer uses
    (all columns when ``indices`` is None). ``table`` is ``[256, K]``; ``indices`` any shape of ints < K."""
    if indices is not None:
        table = table[:, torch.unique(indices.to(table.device).long())]
    r = float(table.detach().abs().max())
    return r


def table_codes(table: torch.Tensor, bits: int, rng: float, mode: str = "strict") -> tuple[torch.Tensor, float]:
    """Quantize LUT entries to integer codes (int64, same shape as ``table``) and a step, such that
    ``codes * step`` is the quantized table (see the module docstring for both modes).

    * ``strict``: step ``r / 2^(n-1)``, codes ``clamp(round(T / step), -2^(n-1), 2^(n-1) - 1)``: ``2^n``
      levels.
    * ``reference``: ``Δ_L = 2r / (2^n - 1)``, ``T_q = clamp(round(T/Δ_L)·Δ_L, -r, r)``; returned as codes
      in units of ``step = Δ_L / 2`` (``2·round(T/Δ_L)`` clamped to ``±(2^n - 1)``): ``2^n + 1`` levels.
    """
    if bits < 2:
        raise ValueError(f"LUT bits must be >= 2, got {bits}")
    if not rng > 0:
        raise ValueError(f"LUT range must be > 0, got {rng}")
    t = table.detach()
    if mode == "strict":
        step = float(rng) / (1 << (bits - 1))
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return torch.clamp(torch.round(t / step), lo, hi).to(torch.int64), step
    if mode == "reference":
        delta = 2.0 * float(rng) / ((1 << bits) - 1)
        top = (1 << bits) - 1  # r in units of delta / 2
        return torch.clamp(2 * torch.round(t / delta), -top, top).to(torch.int64), delta / 2
    raise ValueError(f"mode must be one of {TABLE_MODES}, got {mode!r}")


def quantize_table(table: torch.Tensor, bits: int, rng: float, mode: str = "strict") -> torch.Tensor:
    """The quantized table as floats (same shape and dtype as ``table``): ``codes * step`` of
    :func:`table_codes`. In ``reference`` mode this equals ``clamp(round(T/Δ_L)·Δ_L, -r, r)`` up to the
    last float ulp."""
    codes, step = table_codes(table, bits, rng, mode)
    dtype = table.dtype if table.is_floating_point() else torch.get_default_dtype()
    return codes.to(dtype) * step
