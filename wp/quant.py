"""Activation quantizers (spec: reference-behaviour.md sections 7 and 8): ranges, codes, fake-quant, the module.

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

The quantizer as a module: :class:`ActQuantizer` holds a layer's bit width, range and signedness as buffers
(so they live in the network's ``state_dict``, as observers/fake-quant modules do in
``torch.ao.quantization``); :func:`attach` makes it the child ``act_quant`` of a layer and quantizes the
layer's first input with it from a forward pre-hook, so the network's own ``state_dict`` keys stay as
they were (only ``<layer>.act_quant.*`` are added). :class:`wp.lutnet.LUTLayer` quantizes its input with the
same module. The lookup-table quantizers are in :mod:`wp.lut`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn

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
        mn, mx = (float(v) for v in torch.aminmax(x))
        lo[name] = min(lo.get(name, mn), mn)
        hi[name] = max(hi.get(name, mx), mx)

    _observe_inputs(model, layer_names, batches, observe, max_batches, device)
    return {n: (lo[n], hi[n]) for n in layer_names}


class _SquaredErrors:
    """``errors(x, ranges, signed)``: per candidate range, ``Σ (clamp(round(x/Δ), lo, hi)·Δ - x)²`` of quantizing
    ``x`` to ``bits``, the squares in float32 summed in float64 (as ``sum(dtype=float64)`` sums them).

    Computed in place in two scratch buffers reused for every layer, batch and candidate (the big
    temporaries, not the arithmetic, were the cost): the codes stay floats (small integers, exact in
    float32) and ``Δ`` is a power of two, so every product is exact and the sums equal the
    integer-code formula's bit for bit. The buffers take ``x``'s strides, so each sum adds in the same order."""

    def __init__(self, bits: int):
        self.bits = bits
        self.scratch: dict[torch.dtype, torch.Tensor] = {}

    def _buffer(self, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if not (like.is_contiguous() or like.is_contiguous(memory_format=torch.channels_last)):
            return torch.empty_like(like, dtype=dtype)  # the strides like's own temporaries would get
        size = like.shape.numel()
        buf = self.scratch.get(dtype)
        if buf is None or buf.numel() < size or buf.device != like.device:
            buf = self.scratch[dtype] = torch.empty(size, dtype=dtype, device=like.device)
        return buf.as_strided(like.shape, like.stride(), 0)

    def __call__(self, x: torch.Tensor, rngs: Sequence[float], signed: bool) -> list[float]:
        xf = x.float()
        lo, hi = code_limits(self.bits, signed)
        q, q64 = self._buffer(xf, torch.float32), self._buffer(xf, torch.float64)
        out = []
        for rng in rngs:
            step = act_step(self.bits, rng, signed)
            torch.div(xf, step, out=q)
            q.round_().clamp_(lo, hi).mul_(step).sub_(xf)
            q.mul_(q)
            q64.copy_(q)  # what sum(dtype=float64) does first, into reused memory
            out.append(float(q64.sum()))
        return out


def observe_quant_errors(model: nn.Module, candidates: dict[str, tuple[list[float], bool]], bits: int,
                         batches: Iterable, max_batches: int | None = None,
                         device: torch.device | str | None = None) -> dict[str, list[float]]:
    """Per layer in ``candidates`` (name → (ranges, signed)), the summed squared error of quantizing its
    input over ``batches`` to ``bits`` with each candidate range, in the candidates' order."""
    errors = {n: [0.0] * len(rngs) for n, (rngs, _) in candidates.items()}
    squared_errors = _SquaredErrors(bits)

    def observe(name: str, x: torch.Tensor) -> None:
        rngs, signed = candidates[name]
        for i, e in enumerate(squared_errors(x, rngs, signed)):
            errors[name][i] += e

    _observe_inputs(model, list(candidates), batches, observe, max_batches, device)
    return errors


def _mse_candidates(lo: float, hi: float) -> tuple[tuple[float, bool], list[float]]:
    """``((A_max, signed), [A_max / 2^j for j = 0..MSE_SHIFTS])`` of inputs seen within ``[lo, hi]``."""
    a = calibrate_range(max(abs(lo), abs(hi)))
    return (a, lo < 0), [a / 2**j for j in range(MSE_SHIFTS + 1)]


def _mse_ranges(model: nn.Module, layer_names: Sequence[str], batches: list, bits: int,
                device: torch.device | str | None) -> dict[str, tuple[float, bool]]:
    """The "mse" ranges, in one pass where it can: each batch's errors are computed at once for the
    candidates of the inputs seen so far (batches 1..b), which are the final candidates unless a later
    batch widens a layer's range or makes it signed; only those (batch, layer) pairs are run again. The
    per-batch errors are then added in batch order, so the sums equal two full passes' (extrema, then
    :func:`observe_quant_errors`) exactly."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    seen: dict[str, list[list[tuple[tuple[float, bool], list[float]]]]] = {n: [] for n in layer_names}
    squared_errors = _SquaredErrors(bits)

    def observe(name: str, x: torch.Tensor) -> None:
        mn, mx = (float(v) for v in torch.aminmax(x))
        lo[name], hi[name] = min(lo.get(name, mn), mn), max(hi.get(name, mx), mx)
        key, rngs = _mse_candidates(lo[name], hi[name])
        seen[name][-1].append((key, squared_errors(x, rngs, key[1])))

    for batch in batches:
        for calls in seen.values():
            calls.append([])
        _observe_inputs(model, layer_names, [batch], observe, None, device)
    final = {n: _mse_candidates(lo[n], hi[n]) for n in layer_names}
    for b, batch in enumerate(batches):
        stale = [n for n in layer_names if any(key != final[n][0] for key, _ in seen[n][b])]
        if not stale:
            continue
        for n in stale:
            seen[n][b] = []

        def again(name: str, x: torch.Tensor, b: int = b) -> None:
            key, rngs = final[name]
            seen[name][b].append((key, squared_errors(x, rngs, key[1])))

        _observe_inputs(model, stale, [batch], again, None, device)
    ranges = {}
    for n in layer_names:
        (_, signed), rngs = final[n]
        errors = [0.0] * len(rngs)
        for calls in seen[n]:
            for _, errs in calls:
                for i, e in enumerate(errs):
                    errors[i] += e
        # ties (e.g. all-zero inputs) keep the larger range: min() returns the first minimum
        ranges[n] = (rngs[min(range(len(rngs)), key=errors.__getitem__)], signed)
    return ranges


def observe_input_ranges(model: nn.Module, layer_names: Sequence[str], batches: Iterable,
                         max_batches: int | None = None, device: torch.device | str | None = None,
                         ) -> dict[str, float]:
    """Per layer, the max |input| seen over ``batches`` (raw, not rounded; see :func:`calibrate_range`)."""
    ext = observe_input_extrema(model, layer_names, batches, max_batches, device)
    return {n: max(abs(mn), abs(mx)) for n, (mn, mx) in ext.items()}


def calibrated_ranges(model: nn.Module, layer_names: Sequence[str], batches: Iterable,
                      max_batches: int | None = None, device: torch.device | str | None = None,
                      *, method: str, bits: int | None = None) -> dict[str, tuple[float, bool]]:
    """Per layer, ``(A, signed)``: the power-of-two range (``method`` "max" or "mse", see the module
    docstring; "mse" needs the activation ``bits``) and whether the layer saw negative inputs (then it
    needs the signed quantizer)."""
    if method not in RANGE_METHODS:
        raise ValueError(f"unknown range method {method!r}: use one of {', '.join(RANGE_METHODS)}")
    if method == "max":
        ext = observe_input_extrema(model, layer_names, batches, max_batches, device)
        return {n: (calibrate_range(max(abs(mn), abs(mx))), mn < 0) for n, (mn, mx) in ext.items()}
    if bits is None:
        raise ValueError("the mse range method needs the activation bits")
    code_limits(bits, True)  # validates bits
    missing = [n for n in layer_names if n not in dict(model.named_modules())]
    if missing:
        raise KeyError(f"no such modules: {missing}")
    batches = list(batches)[:max_batches]  # a second pass may revisit some of them
    if not batches:
        raise RuntimeError(f"layers never called: {sorted(layer_names)}")
    return _mse_ranges(model, list(layer_names), batches, bits, device)


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


QUANTIZER = "act_quant"  # the child name of a layer's input quantizer (its state_dict keys: <layer>.act_quant.*)


class ActQuantizer(nn.Module):
    """A layer's activation quantizer: bit width, range ``A`` and signedness as buffers (``act_bits``,
    ``act_range``, ``act_signed``: they travel in the ``state_dict`` and load with it).

    ``q(x)`` is :func:`fake_quant` (``ste`` chooses the training gradient; the forward value is the same
    either way), ``q.codes(x)`` :func:`act_codes`; ``bits``, ``rng``, ``signed`` and ``step`` are the
    current values as Python numbers. Its range is fixed once calibrated (:func:`calibrated_ranges`),
    not observed on the fly."""

    def __init__(self, bits: int, rng: float, signed: bool, ste: bool = True):
        super().__init__()
        act_step(bits, rng, signed)  # validate now rather than in the forward pass
        self.register_buffer("act_bits", torch.tensor(int(bits), dtype=torch.int64))
        self.register_buffer("act_range", torch.tensor(float(rng), dtype=torch.float64))
        self.register_buffer("act_signed", torch.tensor(bool(signed)))
        self.ste = ste
        self.enabled = True  # False: the forward pass returns its input (see :func:`disabled`)
        self._read_buffers()

    def _read_buffers(self) -> None:
        # Python copies for the forward pass (no device sync per call); buffers change only by loading
        self.bits, self.rng, self.signed = int(self.act_bits), float(self.act_range), bool(self.act_signed)
        self.step = act_step(self.bits, self.rng, self.signed)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._read_buffers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant(x, self.bits, self.rng, self.signed, self.ste) if self.enabled else x

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        return act_codes(x, self.bits, self.rng, self.signed)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, rng={self.rng}, signed={self.signed}, ste={self.ste}"


def _quantize_input(module: nn.Module, inputs: tuple) -> tuple:
    return (getattr(module, QUANTIZER)(inputs[0]), *inputs[1:])


def attach(model: nn.Module, quantizers: dict[str, ActQuantizer]) -> None:
    """Quantize the first input of every layer named in ``quantizers`` with its :class:`ActQuantizer`,
    which becomes the layer's child ``act_quant`` (called from a forward pre-hook; :func:`detach` undoes
    it). The network's existing ``state_dict`` keys do not change."""
    for name, q in quantizers.items():
        layer = model.get_submodule(name)
        if hasattr(layer, QUANTIZER):
            raise ValueError(f"layer {name} already has an input quantizer")
        ref = next(iter(layer.parameters()), None)
        layer.add_module(QUANTIZER, q if ref is None else q.to(ref.device))
        layer._act_quant_hook = layer.register_forward_pre_hook(_quantize_input)


def attach_input_quantizers(model: nn.Module, ranges: dict[str, tuple[float, bool]], bits: int,
                            ste: bool = True) -> None:
    """:func:`attach` a ``bits``-bit :class:`ActQuantizer` to every layer in ``ranges`` (name → (A, signed),
    as returned by :func:`calibrated_ranges`)."""
    attach(model, {name: ActQuantizer(bits, rng, signed, ste) for name, (rng, signed) in ranges.items()})


def quantizers(model: nn.Module) -> dict[str, ActQuantizer]:
    """The attached input quantizers, by layer name (empty when there are none)."""
    return {name: getattr(m, QUANTIZER) for name, m in model.named_modules()
            if isinstance(getattr(m, QUANTIZER, None), ActQuantizer) and hasattr(m, "_act_quant_hook")}


def detach(model: nn.Module, names: Iterable[str] | None = None) -> None:
    """Remove the input quantizers of the layers ``names`` (default: all of them)."""
    for name in list(quantizers(model) if names is None else names):
        layer = model.get_submodule(name)
        layer._act_quant_hook.remove()
        del layer._act_quant_hook
        delattr(layer, QUANTIZER)


@contextlib.contextmanager
def disabled(model: nn.Module):
    """Within the block the attached input quantizers pass their inputs through (the float network)."""
    qs = list(quantizers(model).values())
    before = [q.enabled for q in qs]
    for q in qs:
        q.enabled = False
    try:
        yield model
    finally:
        for q, e in zip(qs, before):
            q.enabled = e


def state_dict_layers(state_dict: dict) -> list[str]:
    """The layers whose input quantizer a (network) ``state_dict`` holds."""
    suffix = f".{QUANTIZER}.act_range"
    return [k[:-len(suffix)] for k in state_dict if k.endswith(suffix)]


def attach_for_loading(model: nn.Module, state_dict: dict) -> None:
    """Attach a placeholder quantizer to every layer whose quantizer ``state_dict`` holds, so that
    ``model.load_state_dict(state_dict)`` then fills in their bit widths, ranges and signedness."""
    attach(model, {name: ActQuantizer(8, 1.0, False) for name in state_dict_layers(state_dict)})
