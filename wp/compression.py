"""Storage and compression ratio of a compressed network: one calculator for every method.

What is counted: the weights and biases of every ``Conv2d`` and ``Linear`` layer (the parameters a
deployed network stores). BatchNorm parameters are not counted: at deployment they fold into each
layer's per-channel requantization, identically for every method, so they change no comparison.

The uncompressed reference stores each counted parameter at a *base* precision: ``fp32`` (32 bits) or
``int8`` (8 bits). A compressed network is a list of :class:`Part`\\ s: what it stores, per layer
(indices, codes, masks, per-layer scales or codebooks) and network-wide (a shared lookup table). A part
with ``bits=None`` is kept at the base precision (e.g. the float first conv, the biases), so the same
footprint is priced against fp32 and against int8 weights:

    ``ratio(base) = params · bits(base) / Σ_parts count · (bits or bits(base))``

The weight pool (:func:`weight_pool`): each pooled layer stores one index per z-vector of 8 weights,
``ceil(log2 K)`` bits bit-packed or 8 bits byte-aligned; the network stores one table of ``256·K``
entries of ``lut_bits``; every other weight and every bias stays at the base precision. The pool
vectors themselves are not stored (the table replaces them). With a pool scale (``pool_scale``, not in
the paper) each pooled layer also stores its scales (one, or one per output channel) as 32-bit floats,
the multipliers of its requantization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch.nn as nn

from wp import names
from wp.lut import PATTERNS  # table rows: 8-bit activation patterns
from wp.pool import VECTOR  # z-vector length

BASE_BITS = {"fp32": 32, "int8": 8}


@dataclass(frozen=True)
class Part:
    """``count`` stored items of ``bits`` bits each (``None``: the base precision) for ``layer``
    (``""`` for network-wide items). ``what`` says what they are: weights, bias, index, lut, codebook,
    mask, code, scale."""

    layer: str
    what: str
    count: int
    bits: int | None = None

    def total_bits(self, base: str) -> int:
        return self.count * (BASE_BITS[base] if self.bits is None else self.bits)


@dataclass
class Footprint:
    """The storage of one compressed network. ``params``: its counted parameters (module docstring)."""

    method: str
    params: int
    parts: list[Part] = field(default_factory=list)

    def bits(self, base: str) -> int:
        _check_base(base)
        return sum(p.total_bits(base) for p in self.parts)

    def bytes(self, base: str) -> float:
        return self.bits(base) / 8

    def ratio(self, base: str) -> float:
        """Uncompressed bits at ``base`` over compressed bits at ``base``."""
        return self.params * BASE_BITS[base] / self.bits(base)

    def bits_of(self, what: str, base: str = "int8") -> int:
        return sum(p.total_bits(base) for p in self.parts if p.what == what)

    def summary(self) -> dict:
        """Flat numbers for tables: params, bytes and ratio against fp32 and int8."""
        out = {"method": self.method, "params": self.params}
        for base in BASE_BITS:
            out[f"bytes_{base}"] = self.bytes(base)
            out[f"ratio_{base}"] = self.ratio(base)
        return out


def _check_base(base: str) -> None:
    if base not in BASE_BITS:
        raise ValueError(f"base precision must be one of {sorted(BASE_BITS)}, got {base!r}")


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The counted layers: every ``Conv2d`` and ``Linear``, by module name, in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def count_params(model: nn.Module) -> int:
    """Weights plus biases of the counted layers."""
    return sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in weight_layers(model).values())


def footprint(model: nn.Module, method: str, encoded: dict[str, list[Part]] | None = None,
              shared: list[Part] | None = None) -> Footprint:
    """The footprint of ``model`` when the weights of the layers in ``encoded`` are stored as the given
    parts (their biases stay at base precision unless a part of ``what="bias"`` is given), every other
    layer's weights stay at base precision, and ``shared`` network-wide parts come on top."""
    encoded = dict(encoded or {})
    layers = weight_layers(model)
    unknown = sorted(set(encoded) - set(layers))
    if unknown:
        raise KeyError(f"not conv/linear layers of the model: {unknown}")
    parts: list[Part] = []
    for name, m in layers.items():
        own = encoded.get(name)
        if own is None:
            parts.append(Part(name, "weights", m.weight.numel()))
        else:
            parts.extend(own)
        if m.bias is not None and not any(p.what == "bias" for p in own or []):
            parts.append(Part(name, "bias", m.bias.numel()))
    return Footprint(method, count_params(model), parts + list(shared or []))


def dense(model: nn.Module) -> Footprint:
    """The uncompressed network: every counted parameter at base precision (ratio 1)."""
    return footprint(model, "float")


def index_bits(k: int) -> int:
    """Bits of one bit-packed index into ``k`` entries: ``ceil(log2 k)`` (at least 1)."""
    if k < 2:
        raise ValueError(f"need at least 2 entries, got {k}")
    return max(1, math.ceil(math.log2(k)))


SCALE_BITS = 32  # a pool scale: one float32 multiplier of the layer's requantization


def weight_pool(model: nn.Module, pooled_layers: list[str], k: int, lut_bits: int = 8,
                packed: bool = True, tables: int = 1, scales: dict[str, int] | None = None) -> Footprint:
    """The weight-pool network: an index per z-vector of every pooled layer (bit-packed
    ``ceil(log2 k)`` bits, or one byte with ``packed=False``), one shared ``256·k``-entry table of
    ``lut_bits`` entries (``tables`` of them where layers quantize it with different ranges, as
    :mod:`wp.lutnet` does), everything else at base precision. ``scales``: per pooled layer how many
    pool scales it stores (``SCALE_BITS`` each); None for a pool without scale."""
    layers = weight_layers(model)
    bits = index_bits(k) if packed else 8
    encoded = {}
    for name in pooled_layers:
        n = layers[name].weight.numel()
        if n % VECTOR:
            raise ValueError(f"layer {name} has {n} weights, not a multiple of {VECTOR}")
        encoded[name] = [Part(name, "index", n // VECTOR, bits)]
        if scales is not None:
            encoded[name].append(Part(name, "scale", int(scales[name]), SCALE_BITS))
    return footprint(model, names.model(k), encoded, [Part("", "lut", PATTERNS * k, lut_bits) for _ in range(tables)])
