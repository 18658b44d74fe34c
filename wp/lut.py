"""Bit-serial lookup-table (LUT) execution of pooled layers (spec: reference-behaviour.md sections 7 and 9).

A pooled layer stores, instead of weights, one pool index per z-vector (``W[o, 8g:8g+8, y, x]``, order
o, y, x, g as in :mod:`wp.pool`), and the network shares one table

    ``T[s, k] = Σ_j bit_j(s) · pool[k, j]``   (``s`` in 0..255, bit ``j`` of ``s`` ↔ channel ``j`` of the group,
                                              the lowest channel being the least significant bit)

For unsigned integer activation codes ``a_j < 2^B`` the dot product of a z-vector with its 8 activations is

    ``Σ_j pool[k, j] · a_j = Σ_b 2^b · T[s_b, k]``,   ``s_b = Σ_j bit_b(a_j) · 2^j``,

so a layer runs with ``B`` table reads per z-vector and no multiplications (:func:`lut_conv2d`); the result
is scaled by the activation step Δ at the end. Replacing ``T`` by a quantized table (:func:`table_codes`)
emulates Table 5 bit-exactly when the table is given as integer codes (the integer-exact mode).

Signed activations
------------------
Layers that see BN outputs (TinyConv, MobileNet-v2) get signed codes in ``[-2^(B-1), 2^(B-1))``. Two
schemes are offered (``signed_mode``); both equal ``conv2d`` of the quantized activations exactly when the
table is not quantized:

* ``"twos"`` (default): the codes are read as ``B``-bit two's complement,
  ``a = -2^(B-1)·bit_(B-1)(a) + Σ_(b<B-1) 2^b·bit_b(a)``, so the same bit-serial loop applies with the
  top bit plane *subtracted*: ``Σ_(b<B-1) 2^b·T[s_b, k] - 2^(B-1)·T[s_(B-1), k]``. One lookup per bit, the
  same table and the same cost as the unsigned case; this is the standard way bit-serial hardware handles
  signed operands.
* ``"split"``: sign-magnitude, ``a = a⁺ - a⁻`` with ``a⁺ = max(a, 0)``, ``a⁻ = max(-a, 0)`` (``a⁻`` may be
  ``2^(B-1)``, so it needs ``B`` bit planes, ``a⁺`` needs ``B-1``): ``Σ_b 2^b·(T[s⁺_b, k] - T[s⁻_b, k])``, two
  lookups per bit.

With a quantized table the two schemes differ (each lookup is rounded separately), and neither equals
the reference's emulation, which quantizes ``T[s⁺] - T[s⁻]`` as one value (a ternary pattern that a
256-row table cannot hold; spec §9.2).

Zero padding is code 0 = pattern 0 in every bit plane; ``T[0, k] = 0`` (also after quantization), so padded
taps contribute nothing, exactly as zero padding in ``conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wp import pool as pool_mod
from wp import quant
from wp.pool import VECTOR

PATTERNS = 1 << VECTOR  # 256 rows in the table
SIGNED_MODES = ("twos", "split")


def build_table(pool: torch.Tensor) -> torch.Tensor:
    """The lookup table ``T[s, k] = Σ_j bit_j(s) · pool[k, j]`` for a pool ``[K, 8]``: shape ``[256, K]``.

    Same dtype and device as ``pool`` (an integer pool gives an int64 table of exact integers).
    """
    if pool.dim() != 2 or pool.shape[1] != VECTOR:
        raise ValueError(f"pool must be [K, {VECTOR}], got {tuple(pool.shape)}")
    s = torch.arange(PATTERNS, device=pool.device)
    bits = (s[:, None] >> torch.arange(VECTOR, device=pool.device)) & 1  # [256, 8]
    if not pool.is_floating_point():
        pool = pool.to(torch.int64)
    return (bits[:, None, :].to(pool.dtype) * pool[None, :, :]).sum(-1)  # [256, K]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` with its dimensions permuted into memory order (contiguous for a dense tensor, e.g. a
    channels-last one), for a reduction over all elements: torch's reductions copy non-contiguous input."""
    v = t.permute(sorted(range(t.dim()), key=lambda d: -t.stride(d)))
    return v if v.is_contiguous() else t


def _check(codes: torch.Tensor, indices: torch.Tensor, table: torch.Tensor, weight_shape, bits: int,
           signed: bool, signed_mode: str) -> None:
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
    if codes.dim() != 4:
        raise ValueError(f"codes must be [N, C, H, W], got {tuple(codes.shape)}")
    out_c, in_c, kh, kw = weight_shape
    if in_c != codes.shape[1] or in_c % VECTOR:
        raise ValueError(f"weight in_channels {in_c} must equal the codes' {codes.shape[1]} and divide by 8")
    if indices.numel() != out_c * kh * kw * in_c // VECTOR:
        raise ValueError(f"expected {out_c * kh * kw * in_c // VECTOR} indices for {tuple(weight_shape)}, "
                         f"got {indices.numel()}")
    if table.dim() != 2 or table.shape[0] != PATTERNS:
        raise ValueError(f"table must be [256, K], got {tuple(table.shape)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= table.shape[1]):
        raise ValueError("pool indices out of range for the table")
    if signed and signed_mode not in SIGNED_MODES:
        raise ValueError(f"signed_mode must be one of {SIGNED_MODES}, got {signed_mode!r}")
    lo, hi = quant.code_limits(bits, signed)
    if codes.numel() and any(not lo <= int(v) <= hi for v in torch.aminmax(_dense(codes))):
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"codes outside the {bits}-bit {kind} range [{lo}, {hi}]")


# The 8x8 bit-matrix transpose as three masked swaps (shift, mask of the lower bit of each swapped pair),
# bit ``8j + b`` ↔ bit ``8b + j``. The masks keep the top bits clear, so int64's arithmetic right shift is harmless.
_TRANSPOSE_SWAPS = ((7, 0x00AA00AA00AA00AA), (14, 0x0000CCCC0000CCCC), (28, 0x00000000F0F0F0F0))


def _transpose_bytes(v: torch.Tensor) -> None:
    """In place on int64 ``v`` whose 8 bytes are the codes ``c_0..c_7`` of one channel group (byte ``j`` =
    channel ``j``): afterwards byte ``b`` is ``Σ_j bit_b(c_j)·2^j``, the table row of bit plane ``b``."""
    t = torch.empty_like(v)
    for shift, mask in _TRANSPOSE_SWAPS:  # t = (v ^ v >> s) & m; v ^= t ^ (t << s)
        torch.bitwise_right_shift(v, shift, out=t)
        t.bitwise_xor_(v).bitwise_and_(mask)
        v.bitwise_xor_(t)
        v.bitwise_xor_(t.bitwise_left_shift_(shift))


def _plane_parts(codes: torch.Tensor, bits: int, signed: bool, signed_mode: str) -> list[tuple[torch.Tensor, list[int], bool]]:
    """``(values, weights, twos)`` per operand: ``values`` are codes whose bit ``b`` is weighted by
    ``weights[b]`` (a signed power of two); ``twos``: the values are two's-complement (may be negative)."""
    if not signed:
        return [(codes, [1 << b for b in range(bits)], False)]
    if signed_mode == "twos":  # the top bit of a B-bit two's-complement code weighs -2^(B-1)
        return [(codes, [-(1 << b) if b == bits - 1 else 1 << b for b in range(bits)], True)]
    return [(codes.clamp(min=0), [1 << b for b in range(bits - 1)], False),
            ((-codes).clamp(min=0), [-(1 << b) for b in range(bits)], False)]


def _code_byte(v: torch.Tensor, byte: int, nbytes: int) -> torch.Tensor:
    """Byte ``byte`` of codes of ``nbytes`` bytes, as values in [0, 255] (the bits of the two's complement)."""
    return ((v >> (VECTOR * byte)) if byte else v) & 0xFF


def _pattern_bytes(v: torch.Tensor, byte: int, nbytes: int, twos: bool, ph: int, pw: int,
                   pixel_major: bool = False) -> torch.Tensor:
    """``[N, G, H + 2ph, W + 2pw, 8]`` uint8 bit-plane patterns of the codes ``v [N, C, H, W]`` (zero-padded):
    ``[n, g, y, x, b]`` is the 8-bit table row of bit plane ``8·byte + b`` of channels ``8g..8g+7`` at pixel
    ``(y, x)``, for codes of ``nbytes`` bytes (``twos``: two's complement, else non-negative).

    The 8 channels' code bytes are put into the 8 bytes of one int64 word, which :func:`_transpose_bytes`
    turns into the 8 planes' patterns. Channels-last codes (the layout after a channels-last conv) already
    have a group's 8 channels side by side: one cast to bytes places them. Other layouts are packed by
    shift/or passes over the channel planes, in their own layout; ``pixel_major`` then stores the words
    channels-last too (one pass over them), for readers that take all groups of a pixel at once."""
    n, c, h, w = v.shape
    groups, hp, wp = c // VECTOR, h + 2 * ph, w + 2 * pw
    make = torch.zeros if ph or pw else torch.empty
    if v.stride(1) == 1 and c > 1:  # channels last: [N, H, W, C] bytes are [N, H, W, G] words
        buf = make(n, hp, wp, c, dtype=torch.uint8, device=v.device)
        dst, src = buf[:, ph:ph + h, pw:pw + w], v.permute(0, 2, 3, 1)
        if nbytes > 1:
            src = _code_byte(src, byte, nbytes)
        elif twos:  # 1-byte two's-complement codes are exactly int8 values
            dst = dst.view(torch.int8)
        dst.copy_(src)
        _transpose_bytes(buf.view(torch.int64))
        return buf.view(n, hp, wp, groups, VECTOR).permute(0, 3, 1, 2, 4)
    words = make(n, groups, hp, wp, dtype=torch.int64, device=v.device)
    inner = words[:, :, ph:ph + h, pw:pw + w]
    tmp = torch.empty(n, groups, h, w, dtype=torch.int64, device=v.device)
    v = v.unflatten(1, (groups, VECTOR))
    for j in range(VECTOR):  # word |= byte of channel j << 8j
        x = v[:, :, j]
        if byte:
            x = torch.bitwise_right_shift(x, VECTOR * byte, out=tmp)
        if twos or nbytes > 1:
            x = torch.bitwise_and(x, 0xFF, out=tmp)
        if j == 0:
            inner.copy_(x)
        else:
            inner.bitwise_or_(torch.bitwise_left_shift(x, VECTOR * j, out=tmp))
    _transpose_bytes(words)
    if pixel_major:
        cl = torch.empty(n, hp, wp, groups, dtype=torch.int64, device=v.device).copy_(words.permute(0, 2, 3, 1))
        return cl.view(torch.uint8).view(n, hp, wp, groups, VECTOR).permute(0, 3, 1, 2, 4)
    return words.view(torch.uint8).view(n, groups, hp, wp, VECTOR)


def _plane_patterns(codes: torch.Tensor, bits: int, signed: bool, signed_mode: str, ph: int, pw: int,
                    pixel_major: bool = False) -> list[tuple[torch.Tensor, list[int]]]:
    """``(patterns, weights)`` pairs: ``patterns [N, G, Hp, Wp, 8]`` uint8 (:func:`_pattern_bytes`)
    and the weights ``w_b`` of its first ``len(weights)`` planes, the ones used."""
    out = []
    for v, weights, twos in _plane_parts(codes, bits, signed, signed_mode):
        nbytes = -(-len(weights) // VECTOR)
        for byte in range(nbytes):
            out.append((_pattern_bytes(v, byte, nbytes, twos, ph, pw, pixel_major), weights[VECTOR * byte:VECTOR * (byte + 1)]))
    return out


def lut_conv2d(codes: torch.Tensor, indices: torch.Tensor, table: torch.Tensor, weight_shape,
               stride=1, padding=0, bits: int = 8, signed: bool = False, signed_mode: str = "twos",
               scale: float | None = None, bias: torch.Tensor | None = None,
               chunk_elements: int = 1 << 20, method: str = "auto") -> torch.Tensor:
    """Bit-serial LUT convolution of integer activation codes with a pooled weight.

    Args:
        codes: ``[N, C, H, W]`` integer activation codes, in ``[0, 2^bits)`` (unsigned) or
            ``[-2^(bits-1), 2^(bits-1))`` (``signed``), e.g. from :func:`wp.quant.act_codes`.
        indices: the pool index of every z-vector of the weight, ``O·kh·kw·C/8`` integers in the order
            o, y, x, g (as :func:`wp.pool.project` returns them); any shape with that many elements.
        table: ``[256, K]`` lookup table (:func:`build_table`, optionally quantized). A floating table gives a
            result of its dtype; an *integer* table (e.g. codes from :func:`wp.quant.table_codes`) gives,
            with ``scale=None``, the exact integer result as int64 (integer-exact mode, see below).
        weight_shape: ``(O, C, kh, kw)`` of the pooled conv.
        stride, padding: as in ``conv2d`` (int or pair); padding is with code 0.
        bits: activation bit width ``B`` (number of bit planes).
        signed, signed_mode: signed codes, handled as ``"twos"`` or ``"split"`` (module docstring).
        scale: multiplies the result (the activation step Δ, or Δ times the table step for integer tables);
            ``None`` leaves the raw sum. An integer result is converted to the default float dtype first.
        bias: optional ``[O]`` added after scaling.
        chunk_elements: memory bound (elements) of the per-chunk working tensors (lookup indices, partial
            sums); images are processed in chunks of at least one.
        method: ``"filters"``, ``"pool"`` (1x1 convolutions only) or ``"auto"`` (the cheaper one): see below.
            All give the same integer result.

    Returns:
        ``[N, O, OH, OW]`` with ``out[n, o, p] = scale · Σ_(y, x, g) Σ_b w_b · T[s_b(n, g, p, y, x), idx[o, y, x, g]]``,
        ``w_b = ±2^b`` the weight of bit plane b and ``s_b`` the 8-bit pattern of bit b over the 8 channels
        of group g at the input pixel under tap (y, x) of output pixel p.

    How: the 8 codes of a channel group are packed into the 8 bytes of one int64 word and the word's 8x8
    bit matrix is transposed (three masked swaps), so byte ``b`` becomes the pattern ``s_b`` of bit plane
    ``b``: all planes of all pixels in a few vectorized passes (codes wider than 8 bits, and the two
    halves of ``"split"``, a byte at a time). Then, per chunk of images (the working tensors stay small
    enough for the cache), one of two lookups, both with ``embedding_bag``:

    * ``"filters"``: the layer's view of the table, ``E[(tap, g), s, o] = T[s, idx[o, tap, g]]`` (the
      runtime's per-filter lookup), is read once per output pixel as a bag of ``taps·G·planes`` rows of
      length O, weighted by ``w_b`` (a power of two, so the weighting is exact) and summed.
    * ``"pool"`` (1x1): first every pixel's dot product with every pool vector the layer uses,
      ``R[g, k, p] = Σ_b w_b·T[s_b(g, p), k]`` (bags of ``planes`` rows of the small table itself), then
      each filter sums its own ``R[g, idx[o, g], ·]`` over g (bags of G rows of length pixels). This is
      the weight-pool saving: ``planes·K + O`` instead of ``planes·O`` reads per pixel and group, a gain
      for wide layers (``O`` much larger than the pool's ``K``).

    No Python loop over pixels, channels or bits; works on any device.

    Integer-exact mode: the sum is computed in float32 when ``max|T| · Σ_b|w_b| · taps · G < 2^24`` and
    otherwise in float64 (limit ``2^53``, else ``ValueError``). Below these bounds every partial sum is an
    integer that the float type represents exactly, so the int64 result is exact in any summation order
    and either method (float arithmetic on integers is exact until 2^24 / 2^53), and float32 keeps the
    fast path for the usual 4-8-bit tables.
    """
    _check(codes, indices, table, weight_shape, bits, signed, signed_mode)
    if bits > 16:
        raise ValueError(f"at most 16 activation bits, got {bits}")
    if method not in ("auto", "filters", "pool"):
        raise ValueError(f"method must be auto, filters or pool, got {method!r}")
    device = codes.device
    out_c, in_c, kh, kw = (int(v) for v in weight_shape)
    n, _, h, w = codes.shape
    groups, taps = in_c // VECTOR, kh * kw
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if oh <= 0 or ow <= 0:
        raise ValueError("kernel larger than the padded input")
    pointwise = taps == 1 and ph == pw == 0
    if method == "pool" and not pointwise:
        raise ValueError("the pool method is for 1x1 convolutions without padding")
    if pointwise and (sh, sw) != (1, 1):  # a strided 1x1 conv reads every sh-th pixel only
        codes, sh, sw, h, w = codes[:, :, ::sh, ::sw], 1, 1, oh, ow
    table = table.to(device)
    idx = indices.to(device=device, dtype=torch.int64).reshape(out_c, taps * groups)
    weights = [wb for _, ws, _ in _plane_parts(codes[:0], bits, signed, signed_mode) for wb in ws]
    planes = len(weights)

    integer = not table.is_floating_point()
    if integer:
        bound = int(table.abs().max()) * sum(abs(wb) for wb in weights) * taps * groups
        if bound >= 1 << 53:
            raise ValueError(f"integer LUT sum may reach {bound} >= 2^53: not exactly computable")
        acc = torch.float32 if bound < 1 << 24 else torch.float64
    else:
        acc = table.dtype
    table = table.to(acc)
    out = torch.empty(n, out_c, oh, ow, dtype=torch.int64 if integer else acc, device=device)
    used = torch.unique(idx) if pointwise else None
    if method == "pool" or (method == "auto" and pointwise and _pool_is_cheaper(out_c, planes, len(used))):
        _pool_lookup(codes, idx, table, used, bits, signed, signed_mode, weights, out, chunk_elements)
    else:
        _filter_lookup(codes, idx, table, (kh, kw), (sh, sw), (ph, pw), bits, signed, signed_mode, weights, out,
                       chunk_elements)
    return _finish(out, scale, bias)


def _pool_is_cheaper(out_channels: int, planes: int, pool_vectors: int) -> bool:
    """``method="auto"``'s choice for a 1x1 layer: the pool lookup once the layer is wide enough. Per pixel
    and group the filter lookup reads ``planes·O`` table entries, the pool lookup ``planes·k`` plus ``O``
    (``k`` pool vectors used), each at its own cost per entry; the weights are fitted to CPU timings of
    MobileNet-v2's layers (``benchmarks/lut_speed.py``). It decides only the speed, never the result."""
    return out_channels * (planes - 1.6) > 2.6 * planes * pool_vectors


def _fill_lookups(dst: torch.Tensor, patterns: list[tuple[torch.Tensor, list[int]]], src_view, offset) -> None:
    """Write ``src_view(pattern)[..., :planes] + offset`` of every pattern source into its planes' slot of
    ``dst [..., planes]`` (int32 row numbers)."""
    col = 0
    for pat, ws in patterns:
        torch.add(src_view(pat[..., :len(ws)]), offset, out=dst[..., col:col + len(ws)])
        col += len(ws)


def _filter_lookup(codes, idx, table, kernel, stride, padding, bits, signed, signed_mode, weights, out, chunk_elements):
    """The ``"filters"`` method of :func:`lut_conv2d`, into ``out``."""
    device, (kh, kw), (sh, sw), (ph, pw) = codes.device, kernel, stride, padding
    n, out_c, oh, ow = out.shape
    taps, groups, planes = kh * kw, codes.shape[1] // VECTOR, len(weights)
    # E[(t*G + g)*256 + s, o] = T[s, idx[o, t, g]]: one gather (the table and the indices broadcast)
    emb = torch.gather(table.expand(taps * groups, PATTERNS, -1), 2,
                       idx.t().unsqueeze(1).expand(-1, PATTERNS, -1)).view(taps * groups * PATTERNS, out_c)
    offsets = (torch.arange(taps * groups, device=device, dtype=torch.int32) * PATTERNS).view(taps, groups, 1)
    pix, bag = oh * ow, taps * groups * planes
    chunk = max(1, min(n, chunk_elements // (pix * max(bag, out_c))))
    # bag weights, contiguous (embedding_bag flattens them: an expanded row would be copied per call)
    psw = torch.tensor(weights, dtype=table.dtype, device=device).repeat(chunk * pix * taps * groups).view(-1, bag)
    lookups = torch.empty(chunk, oh, ow, taps, groups, planes, dtype=torch.int32, device=device)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        look = lookups[:n1 - n0]
        patterns = _plane_patterns(codes[n0:n1], bits, signed, signed_mode, ph, pw, taps > 1)  # [m, G, Hp, Wp, 8] each
        for t, (ky, kx) in enumerate((ky, kx) for ky in range(kh) for kx in range(kw)):
            # row number (t*G + g)*256 + s_b of every plane, into its slot of the bag
            _fill_lookups(look[:, :, :, t], patterns,
                          lambda p: p[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw].permute(0, 2, 3, 1, 4),
                          offsets[t])
        sums = F.embedding_bag(look.view(-1, bag), emb, mode="sum", per_sample_weights=psw[:look.shape[0] * pix])
        out[n0:n1] = sums.view(n1 - n0, oh, ow, out_c).permute(0, 3, 1, 2)  # exact integers → int64 here


def _pool_lookup(codes, idx, table, used, bits, signed, signed_mode, weights, out, chunk_elements):
    """The ``"pool"`` method of :func:`lut_conv2d` (1x1, stride 1, no padding), into ``out``."""
    device = codes.device
    n, out_c, h, w = out.shape
    groups, planes, k = codes.shape[1] // VECTOR, len(weights), len(used)
    pool_table = table[:, used]  # the columns the layer uses, renumbered 0..k-1
    slot = torch.searchsorted(used, idx)  # idx[o, g] → its column in pool_table
    rows = (slot + torch.arange(groups, device=device) * k).to(torch.int32)  # [O, G]: row g*k + slot of R
    pix = h * w
    chunk = max(1, min(n, chunk_elements // (pix * groups * max(planes, k))))
    psw = torch.tensor(weights, dtype=table.dtype, device=device).repeat(groups * chunk * pix).view(-1, planes)
    lookups = torch.empty(groups * chunk * pix * planes, dtype=torch.int32, device=device)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        look = lookups[:groups * (n1 - n0) * pix * planes].view(groups, n1 - n0, h, w, planes)
        patterns = _plane_patterns(codes[n0:n1], bits, signed, signed_mode, 0, 0)  # [m, G, H, W, 8] each
        _fill_lookups(look, patterns, lambda p: p.transpose(0, 1), 0)
        q = (n1 - n0) * pix
        r = F.embedding_bag(look.view(-1, planes), pool_table, mode="sum", per_sample_weights=psw[:groups * q])
        r = r.view(groups, q, k).transpose(1, 2).reshape(groups * k, q)  # R[g*k + slot, pixel]
        sums = F.embedding_bag(rows, r, mode="sum")  # [O, q]: filter o sums its pool vectors' rows over g
        out[n0:n1] = sums.view(out_c, n1 - n0, h, w).transpose(0, 1)


def _finish(out: torch.Tensor, scale: float | None, bias: torch.Tensor | None) -> torch.Tensor:
    if scale is not None:
        if not out.is_floating_point():
            out = out.to(torch.get_default_dtype())
        out = out * scale
    if bias is not None:
        shape = (1, -1) + (1,) * (out.dim() - 2)
        out = out + bias.to(out.device).view(shape)
    return out


def lut_linear(codes: torch.Tensor, indices: torch.Tensor, table: torch.Tensor, out_features: int,
               bits: int = 8, signed: bool = False, signed_mode: str = "twos", scale: float | None = None,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """Bit-serial LUT version of a pooled ``Linear``: ``codes [N, F]`` (F divisible by 8), ``indices`` of the
    ``out_features·F/8`` z-vectors (8 consecutive input features, order o, g). Returns ``[N, out_features]``.
    Same arguments and semantics as :func:`lut_conv2d` (it is a 1x1 convolution on a 1x1 image)."""
    if codes.dim() != 2:
        raise ValueError(f"codes must be [N, F], got {tuple(codes.shape)}")
    out = lut_conv2d(codes[:, :, None, None], indices, table, (out_features, codes.shape[1], 1, 1),
                     bits=bits, signed=signed, signed_mode=signed_mode, scale=scale)
    out = out[:, :, 0, 0]
    return _finish(out, None, bias)


def lut_conv2d_naive(codes: torch.Tensor, indices: torch.Tensor, table: torch.Tensor, weight_shape,
                     stride=1, padding=0, bits: int = 8, signed: bool = False, signed_mode: str = "twos",
                     scale: float | None = None) -> torch.Tensor:
    """Reference implementation of :func:`lut_conv2d` with explicit Python loops over images, output
    channels, output pixels, kernel taps, channel groups and bits, in Python integers/floats. For tiny
    tensors only (tests). Returns ``[N, O, OH, OW]``: int64 for an integer table and ``scale=None``,
    else float64."""
    _check(codes, indices, table, weight_shape, bits, signed, signed_mode)
    out_c, in_c, kh, kw = (int(v) for v in weight_shape)
    n, _, h, w = codes.shape
    groups = in_c // VECTOR
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    a = codes.cpu().tolist()
    t = table.cpu().tolist()
    idx = indices.cpu().reshape(out_c, kh, kw, groups).tolist()

    def code(i, c, y, x):
        return a[i][c][y][x] if 0 <= y < h and 0 <= x < w else 0  # zero padding

    def pattern(values, b):
        return sum(((v >> b) & 1) << j for j, v in enumerate(values))

    res = [[[[0] * ow for _ in range(oh)] for _ in range(out_c)] for _ in range(n)]
    for i in range(n):
        for o in range(out_c):
            for oy in range(oh):
                for ox in range(ow):
                    acc = 0
                    for ky in range(kh):
                        for kx in range(kw):
                            y, x = oy * sh - ph + ky, ox * sw - pw + kx
                            for g in range(groups):
                                k = idx[o][ky][kx][g]
                                v = [code(i, VECTOR * g + j, y, x) for j in range(VECTOR)]
                                if signed and signed_mode == "split":
                                    vp = [max(c, 0) for c in v]
                                    vn = [max(-c, 0) for c in v]
                                    for b in range(bits):
                                        acc += 2 ** b * (t[pattern(vp, b)][k] - t[pattern(vn, b)][k])
                                else:
                                    for b in range(bits):
                                        wb = -(2 ** b) if signed and b == bits - 1 else 2 ** b
                                        acc += wb * t[pattern(v, b)][k]
                    res[i][o][oy][ox] = acc if scale is None else acc * scale
    integer = not table.is_floating_point() and scale is None
    return torch.tensor(res, dtype=torch.int64 if integer else torch.float64)


def emulate_conv2d(x: torch.Tensor, pool: torch.Tensor, weight: torch.Tensor, stride=1, padding=0,
                   act_bits: int = 8, act_range: float = 1.0, signed: bool = False,
                   lut_bits: int | None = None, lut_range: float | None = None, lut_mode: str = "strict",
                   signed_mode: str = "twos", bias: torch.Tensor | None = None) -> torch.Tensor:
    """One pooled conv run the deployed way, from float input: quantize ``x [N, C, H, W]`` to ``act_bits``
    with range ``act_range`` (:func:`wp.quant.act_codes`), assign the (latent or projected) ``weight
    [O, C, kh, kw]`` to ``pool [K, 8]``, build the table, optionally quantize it to ``lut_bits``
    (``lut_range`` default: :func:`table_range` over the pool entries this layer uses; ``lut_mode``
    strict/reference) and run :func:`lut_conv2d` in integer-exact mode. Returns ``[N, O, OH, OW]`` floats.
    """
    codes, a_step = quant.act_codes(x, act_bits, act_range, signed)
    _, idx = pool_mod.project(weight.detach(), pool.to(weight.device))
    table = build_table(pool.to(device=x.device, dtype=torch.float64))
    t_step = 1.0
    if lut_bits is not None:
        r = table_range(table, idx) if lut_range is None else lut_range
        table, t_step = table_codes(table, lut_bits, r, lut_mode)
    out = lut_conv2d(codes, idx, table, weight.shape, stride, padding, act_bits, signed, signed_mode)
    out = out.to(torch.float64) * (a_step * t_step)
    return _finish(out.to(x.dtype), None, bias)

# ----------------------------------------------------------------------------------------------------
# Lookup-table entry quantizers (Table 5)
# ----------------------------------------------------------------------------------------------------
# The table ``T[s, k]`` can be quantized to ``n`` bits (Table 5) in two ways:
#
# * ``mode="strict"`` (the default of ``sweeps.lut_mode``): a true ``n``-bit signed uniform quantizer with ``2^n`` levels, the
#   integers ``[-2^(n-1), 2^(n-1) - 1]`` times a step ``Δ_L = r / 2^(n-1)``, where ``r`` is the layer's range
#   ``max |T|`` over the table columns the layer uses (:func:`table_range`). With this step ``-r`` is exactly
#   representable and nothing is clipped except entries in ``(r - Δ_L, r]``, which land on the
#   asymmetric top level ``r - Δ_L`` (at most one step of error, the same as two's-complement integers).
#   We prefer this to ``Δ_L = r / (2^(n-1) - 1)`` (symmetric, no clipping) because that wastes one of the
#   ``2^n`` codes and makes the step ``2^(n-1)/(2^(n-1)-1)`` times coarser everywhere.
# * ``mode="reference"``: the reference's ``quantization_n``: ``Δ_L = 2r / (2^n - 1)``,
#   ``T_q = clamp(round(T / Δ_L) · Δ_L, -r, r)``. Since ``r / Δ_L = 2^(n-1) - 1/2`` this reaches
#   ``{k·Δ_L : |k| ≤ 2^(n-1) - 1} ∪ {±r}``: ``2^n + 1`` levels, the outermost step being half-width.
#   All of them are integer multiples of ``Δ_L / 2``, which is what :func:`table_codes` uses as its step in
#   this mode (codes ``2k`` and ``±(2^n - 1)``), so the integer-exact LUT path works for both modes.

TABLE_MODES = ("strict", "reference")


def table_range(table: torch.Tensor, indices: torch.Tensor | None = None) -> float:
    """The LUT range ``r`` of one layer: ``max |T[:, k]|`` over the pool entries ``k`` the layer uses
    (all columns when ``indices`` is None). ``table`` is ``[256, K]``; ``indices`` any shape of ints < K."""
    if indices is not None:
        table = table[:, torch.unique(indices.to(table.device).long())]
    r = float(table.detach().abs().max())
    return r


def table_codes(table: torch.Tensor, bits: int, rng: float, mode: str) -> tuple[torch.Tensor, float]:
    """Quantize LUT entries to integer codes (int64, same shape as ``table``) and a step, such that
    ``codes * step`` is the quantized table (see the comment above for both modes).

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


def quantize_table(table: torch.Tensor, bits: int, rng: float, mode: str) -> torch.Tensor:
    """The quantized table as floats (same shape and dtype as ``table``): ``codes * step`` of
    :func:`table_codes`. In ``reference`` mode this equals ``clamp(round(T/Δ_L)·Δ_L, -r, r)`` up to the
    last float ulp."""
    codes, step = table_codes(table, bits, rng, mode)
    dtype = table.dtype if table.is_floating_point() else torch.get_default_dtype()
    return codes.to(dtype) * step
