"""A deployed network on integers only, end to end: the program the C runtime (``wp/runtime_c``) runs.

:mod:`wp.lutnet` runs the pooled layers bit-serially on integer codes but everything else in float.
A microcontroller has no float to spare, so :func:`compile` turns a lutnet network (or a plain float
network: the int8 baseline) into a list of integer ops on HWC tensors, and :func:`run` executes that
list in numpy exactly as ``wp_rt.c`` does (the runtime's logits and every intermediate tensor must be
identical; ``tests/test_runtime.py`` checks it). The arithmetic:

* the image is quantized like a LUT layer's input: ``clamp(round(x / Δ))`` (half to even), 8 bits, with a
  power-of-two range calibrated on the given images;
* a pooled layer (:class:`wp.lutnet.LUTLayer`) gives its integer sum ``acc`` exactly as
  :func:`wp.lut.lut_conv2d` does (the same indices, table codes, bits and signedness);
* any other conv / linear layer has int8 weights (per output channel, symmetric, ``max|w| → 127``) and
  an int32 accumulator over the input codes (CMSIS-NN's ``arm_convolve_s8``);
* a layer's float output is ``scale[c]·acc + offset[c]`` (``scale`` = input step × weight or table step;
  ``offset`` = bias). BatchNorm folds into it, a residual add contributes a second such term, and the
  result is requantized to the codes of whatever reads it next: ``q = (Σ_i acc_i·M_i[c] + B[c] + 2^(S-1)) >> S``
  with ``M_i = round(scale_i / Δ_next · 2^S)``, ``B = round(offset / Δ_next · 2^S)`` (int64), then clamped
  to the next code range (from 0 after a ReLU). A generic per-output-channel multiplier, so any per-layer
  or per-channel scale of a pooled layer folds in the same way.
* a tensor read by a pooled layer takes that layer's quantizer (bits, range, signedness); a tensor read
  only by int8 layers is 8-bit with a calibrated power-of-two range; max pooling runs on codes (it
  commutes with a monotone quantizer), average pooling is a window sum whose divisor folds into the
  next requantization, Hardtanh a clamp of that sum (exact: the steps are powers of two).
* a pooled linear layer after a spatial tensor reads it through a flatten op that reorders the HWC codes
  into torch's NCHW flatten order (channel slowest), so a z-vector is 8 consecutive features of that order.

Codes are stored one byte per value, ``stored = code - zp`` (``zp = 128`` for unsigned 8-bit codes, else 0).

Supported architectures: TinyConv, the CIFAR ResNets (``resnet_mlperf``, ``resnet_10``, ``resnet_14``) and
MobileNet-v2 (depthwise convs int8, CMSIS-NN ``arm_depthwise_conv_s8`` order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from wp import WPError, lut, lutnet, quant
from wp.c_header import C_TYPES

QUANT_INPUT, CONV8, LUTCONV, MAXPOOL, SUMPOOL, REQUANT, DWCONV8, FLATTEN = 1, 2, 3, 4, 5, 6, 7, 8
PLAIN, CACHE, PRECOMPUTE = 0, 1, 2
VARIANTS = {"plain": PLAIN, "cache": CACHE, "precompute": PRECOMPUTE}
NONE, CODES, INT32 = 0, 1, 2
MULT_BITS = 24  # |M| < 2^24
LOGIT_BITS = 20  # logits: int32 in units of A / 2^20


@dataclass
class Spec:
    """The quantizer of a code tensor."""
    bits: int
    rng: float
    signed: bool

    @property
    def step(self) -> float:
        return quant.act_step(self.bits, self.rng, self.signed)

    @property
    def limits(self) -> tuple[int, int]:
        return quant.code_limits(self.bits, self.signed)

    @property
    def zp(self) -> int:
        return 128 if (self.bits == 8 and not self.signed) else 0


@dataclass
class Tensor:
    id: int
    shape: tuple[int, int, int]  # H, W, C
    kind: int  # CODES or INT32
    spec: Spec | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * (4 if self.kind == INT32 else 1)


@dataclass
class Program:
    ops: list[dict] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    input: int = 0
    output: int = 0
    offsets: dict[int, int] = field(default_factory=dict)
    arena_bytes: int = 0
    lut_dtype: str = "int8"
    names: list[str] = field(default_factory=list)  # one per op: the module it comes from

    def flash_bytes(self) -> int:
        """Bytes of constant data (weights, indices, tables, requantization constants)."""
        return int(sum(a.nbytes for a in self.arrays.values()))


# ----------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------

def _affine_bn(bn: nn.Module | None, c: int) -> tuple[np.ndarray, np.ndarray]:
    if bn is None:
        return np.ones(c), np.zeros(c)
    var = bn.running_var.detach().double().cpu().numpy()
    a = bn.weight.detach().double().cpu().numpy() / np.sqrt(var + bn.eps) if bn.affine else 1.0 / np.sqrt(var + bn.eps)
    b = (bn.bias.detach().double().cpu().numpy() if bn.affine else 0.0) - a * bn.running_mean.detach().double().cpu().numpy()
    return np.broadcast_to(a, (c,)).copy(), np.broadcast_to(b, (c,)).copy()


def _lut_affine(layer: lutnet.LUTLayer, in_spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, offset)`` per output channel of a pooled layer's float output from its integer sum: the one
    place that reads how a :class:`~wp.lutnet.LUTLayer` scales its sum."""
    out_c = int(layer.weight_shape[0])
    scale = np.full(out_c, in_spec.step * layer.table_step)
    extra = getattr(layer, "scale", None)  # a per-layer / per-channel scale, where a network has one
    if extra is not None:
        scale = scale * np.broadcast_to(torch.as_tensor(extra).double().cpu().numpy().reshape(-1), (out_c,))
    bias = np.zeros(out_c) if layer.bias is None else layer.bias.detach().double().cpu().numpy()
    return scale, bias


class Builder:
    def __init__(self, variant: str):
        self.p = Program()
        self.variant = variant
        self.seen: dict = {}
        self.last_affine: tuple[np.ndarray, np.ndarray] | None = None  # of the last conv (a downsample branch)

    def tensor(self, shape, kind, spec=None) -> Tensor:
        t = Tensor(len(self.p.tensors), tuple(int(v) for v in shape), kind, spec)
        self.p.tensors.append(t)
        return t

    def array(self, name: str, a: np.ndarray) -> str:
        """The name of constant array ``a`` (an identical array already stored is shared)."""
        a = np.ascontiguousarray(a)
        key = (name, a.dtype.str, a.shape, a.tobytes())
        if key not in self.seen:
            self.seen[key] = f"{name}_{len(self.p.arrays)}"
            self.p.arrays[self.seen[key]] = a
        return self.seen[key]

    def op(self, name: str, **fields) -> dict:
        self.p.ops.append(fields)
        self.p.names.append(name)
        return fields

    def requant_fields(self, name: str, terms: list[tuple[np.ndarray, Tensor | None]], offset: np.ndarray,
                       out: Tensor, relu: bool) -> dict:
        """Multipliers/offset of ``q = Σ scale_i·acc_i + offset`` into ``out`` (codes of its spec, or int32 logits)."""
        step = out.spec.step if out.kind == CODES else out.spec.rng / (1 << LOGIT_BITS)
        ms = [np.asarray(s, dtype=np.float64) / step for s, _ in terms]
        top = max(float(np.abs(m).max()) for m in ms)
        shift = MULT_BITS - 1 - (math.floor(math.log2(top)) if top > 0 else 0)
        shift = max(0, min(shift, 48))
        mi = [np.round(m * 2.0 ** shift).astype(np.int64) for m in ms]
        if any(np.abs(m).max() >= 2 ** 31 for m in mi):
            raise WPError(f"{name}: requantization multiplier does not fit int32")
        b = np.round(np.asarray(offset, dtype=np.float64) / step * 2.0 ** shift).astype(np.int64)
        if out.kind == CODES:
            lo, hi = out.spec.limits
            lo = max(lo, 0) if relu else lo
        else:
            lo, hi = -(2 ** 31), 2 ** 31 - 1
        f = {"m0": self.array("m0", mi[0].astype(np.int32)), "b": self.array("b", b), "shift": shift, "lo": lo, "hi": hi,
             "out_kind": out.kind, "out_zp": out.spec.zp if out.kind == CODES else 0, "in1_kind": NONE, "in1": -1, "in1_zp": 0}
        if len(terms) > 1:
            src = terms[1][1]
            f.update(m1=self.array("m1", mi[1].astype(np.int32)), in1=src.id, in1_kind=src.kind,
                     in1_zp=src.spec.zp if src.kind == CODES else 0)
        return f

    def raw_fields(self, out: Tensor) -> dict:
        """No requantization: the int32 sum itself (multiplier 1, shift 0)."""
        c = out.shape[2]
        return {"m0": self.array("m0", np.ones(c, np.int32)), "b": self.array("b", np.zeros(c, np.int64)), "shift": 0,
                "lo": -(2 ** 31), "hi": 2 ** 31 - 1, "out_kind": INT32, "out_zp": 0, "in1_kind": NONE, "in1": -1, "in1_zp": 0}

    def flatten(self, name: str, x: Tensor) -> Tensor:
        """``x`` (HWC codes) as a ``(1, 1, H·W·C)`` tensor in torch's NCHW flatten order (channel slowest)."""
        h, w, c = x.shape
        out = self.tensor((1, 1, h * w * c), x.kind, x.spec)
        self.op(name, type=FLATTEN, in0=x.id, out=out.id, in_h=h, in_w=w, in_c=c, out_h=1, out_w=1, out_c=h * w * c,
                in_zp=x.spec.zp, out_zp=x.spec.zp)
        return out

    # ---- layers --------------------------------------------------------------------------------------

    def conv(self, name: str, module: nn.Module, x: Tensor) -> tuple[dict, np.ndarray, np.ndarray, tuple]:
        """The op of a conv / linear reading ``x``: (op fields, scale, offset, out shape HWC)."""
        h, w, c = x.shape
        if isinstance(module, lutnet.LUTLayer):
            out_c, in_c, kh, kw = (int(v) for v in module.weight_shape)
            (sh, sw), (ph, pw) = lut._pair(module.stride), lut._pair(module.padding)
            if module.bits > 8:
                raise WPError(f"{name}: the runtime runs at most 8 activation bits, the layer has {module.bits}")
            spec = Spec(module.bits, module.rng, module.signed)
            if x.spec != spec:
                raise WPError(f"{name}: its input is quantized as {x.spec}, the layer reads {spec}")
            if module.signed and module.signed_mode != "twos":
                raise WPError(f"{name}: the runtime reads signed codes as two's complement; export with signed_mode twos")
            if module.is_linear:
                if h * w * c != in_c:
                    raise WPError(f"{name}: linear layer reads {in_c} features, the tensor has {h * w * c}")
                if (h, w) != (1, 1):  # torch's flatten is C, H, W: a z-vector is 8 consecutive features of that order
                    x = self.flatten(f"{name}.flatten", x)
                    h, w, c = x.shape
            idx = module.indices.cpu().numpy().reshape(out_c, kh, kw, in_c // 8).transpose(1, 2, 3, 0)
            table = module.table.cpu().numpy()
            dt = np.int8 if table.min() >= -128 and table.max() <= 127 else np.int16
            self.p.lut_dtype = "int16" if dt == np.int16 or self.p.lut_dtype == "int16" else "int8"
            k = table.shape[1]
            variant = self.variant
            if variant == "auto":
                variant = "precompute" if out_c > k else "cache"
            fields = {"type": LUTCONV, "w": self.array("idx", idx.astype(np.uint8 if k <= 256 else np.uint16)),
                      "lut": self.array("lut", table.astype(dt)), "k": k, "bits": module.bits, "is_signed": int(module.signed),
                      "variant": VARIANTS[variant], "ref_indices": module.indices, "ref_table": module.table}
            if k > 256:
                raise WPError(f"{name}: the runtime's indices are bytes: pool size {k} > 256")
            scale, offset = _lut_affine(module, x.spec)
        else:
            if isinstance(module, nn.Linear):
                weight = module.weight.detach().double().cpu().numpy()
                out_c = weight.shape[0]
                if weight.shape[1] != h * w * c:
                    raise WPError(f"{name}: linear layer reads {weight.shape[1]} features, the tensor has {h * w * c}")
                weight = weight.reshape(out_c, c, h, w).transpose(0, 2, 3, 1).reshape(out_c, 1, 1, h * w * c)
                kh = kw = 1
                (sh, sw), (ph, pw) = (1, 1), (0, 0)
                x = Tensor(x.id, (1, 1, h * w * c), x.kind, x.spec)
            else:
                depthwise = module.groups == module.in_channels == module.out_channels and module.groups > 1
                if (module.groups != 1 and not depthwise) or module.dilation not in ((1, 1), 1):
                    raise WPError(f"{name}: grouped (other than depthwise) / dilated convs are not supported by the runtime")
                weight = module.weight.detach().double().cpu().numpy().transpose(0, 2, 3, 1)  # OHWI
                out_c, kh, kw = weight.shape[0], weight.shape[1], weight.shape[2]
                (sh, sw), (ph, pw) = lut._pair(module.stride), lut._pair(module.padding)
            if x.spec.bits > 8:
                raise WPError(f"{name}: int8 layers read at most 8-bit codes")
            s_w = np.abs(weight).reshape(out_c, -1).max(1) / 127.0
            s_w[s_w == 0] = 1.0
            wq = np.clip(np.round(weight / s_w[:, None, None, None]), -127, 127).astype(np.int8)
            if isinstance(module, nn.Conv2d) and depthwise:  # [C, kh, kw, 1] -> [kh][kw][C]
                fields = {"type": DWCONV8, "w": self.array("w", np.ascontiguousarray(wq[..., 0].transpose(1, 2, 0)))}
            else:
                fields = {"type": CONV8, "w": self.array("w", wq)}
            scale = x.spec.step * s_w
            offset = np.zeros(out_c) if module.bias is None else module.bias.detach().double().cpu().numpy()
        h, w, c = x.shape
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        self.last_affine = (scale, offset)
        fields.update(in_h=h, in_w=w, in_c=c, out_h=oh, out_w=ow, out_c=out_c, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
                      in0=x.id, in_zp=x.spec.zp)
        return fields, scale, offset, (oh, ow, out_c)

    def conv_requant(self, name: str, module, x: Tensor, bn, out: Tensor | None, relu: bool,
                     residual: tuple[np.ndarray, Tensor] | None = None, res_offset=None) -> Tensor:
        fields, scale, offset, shape = self.conv(name, module, x)
        a, b = _affine_bn(bn, shape[2])
        if out is None:  # raw int32 (the downsample branch of a residual block), BN folded later
            out = self.tensor(shape, INT32)
            fields.update(self.raw_fields(out))
        else:
            out.shape = shape
            terms = [(scale * a, None)] + ([residual] if residual is not None else [])
            off = a * offset + b + (0 if res_offset is None else res_offset)
            fields.update(self.requant_fields(name, terms, off, out, relu))
        fields["out"] = out.id
        self.op(name, **fields)
        return out


# ----------------------------------------------------------------------------------------------------
# Calibration of the tensors no pooled layer reads
# ----------------------------------------------------------------------------------------------------

def _pow2_spec(lo: float, hi: float, bits: int = 8) -> Spec:
    return Spec(bits, quant.calibrate_range(max(abs(lo), abs(hi))), lo < 0)


def _consumer_spec(module: nn.Module, observed: tuple[float, float]) -> Spec:
    if isinstance(module, lutnet.LUTLayer):
        return Spec(module.bits, module.rng, module.signed)
    return _pow2_spec(*observed)


def _observe(model: nn.Module, images: torch.Tensor, points: dict) -> dict[str, tuple[float, float]]:
    """min/max of named tensors over ``images``: ``points`` maps a name to (module, 'in'|'out', call index)."""
    seen: dict[str, list[float]] = {}
    calls: dict[int, int] = {}
    handles = []

    def rec(key, t):
        lo, hi = float(t.min()), float(t.max())
        old = seen.get(key, [lo, hi])
        seen[key] = [min(old[0], lo), max(old[1], hi)]

    by_module: dict[int, list] = {}
    for key, (m, where, call) in points.items():
        by_module.setdefault(id(m), []).append((key, where, call, m))
    for mid, items in by_module.items():
        m = items[0][3]

        def hook(mod, inp, out, items=items, mid=mid):
            n = calls.get(mid, 0)
            calls[mid] = n + 1
            for key, where, call, _ in items:
                if call is None or call == n:
                    rec(key, inp[0] if where == "in" else out)
        handles.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), 64):
                calls.clear()
                model(images[i:i + 64].float())
    finally:
        for hd in handles:
            hd.remove()
        model.train(was)
    return {k: tuple(v) for k, v in seen.items()}


# ----------------------------------------------------------------------------------------------------
# Architectures
# ----------------------------------------------------------------------------------------------------

def _input(b: Builder, images: torch.Tensor, spec: Spec) -> Tensor:
    n, c, h, w = images.shape
    x = b.tensor((h, w, c), CODES, spec)
    lo, hi = spec.limits
    b.op("input", type=QUANT_INPUT, out=x.id, out_h=h, out_w=w, out_c=c, lo=lo, hi=hi, out_zp=spec.zp,
         inv_step=1.0 / spec.step)
    b.p.input = x.id
    return x


def _logits(b: Builder, lo_hi) -> Tensor:
    return b.tensor((1, 1, 0), INT32, Spec(8, quant.calibrate_range(max(abs(lo_hi[0]), abs(lo_hi[1]))), True))


def _pooled_classifier(b: Builder, x: Tensor, obs: dict, name: str, fc: nn.Module) -> None:
    """The head of the ResNets and MobileNet-v2: global average pooling (an integer sum, requantized to the
    classifier's input codes), then the classifier ``fc`` (named ``name``) writing the int32 logits."""
    h, w, c = x.shape
    s = b.tensor((1, 1, c), INT32)
    b.op("avgpool", type=SUMPOOL, in0=x.id, out=s.id, in_h=h, in_w=w, in_c=c, out_h=1, out_w=1, out_c=c, kh=h, kw=w,
         sh=1, sw=1, ph=0, pw=0, in_zp=x.spec.zp)
    g = b.tensor((1, 1, c), CODES, _pow2_spec(*obs["fc"]))
    f = b.requant_fields("avgpool", [(np.full(c, x.spec.step / (h * w)), None)], np.zeros(c), g, relu=False)
    b.op("avgpool_q", type=REQUANT, in0=s.id, out=g.id, out_h=1, out_w=1, out_c=c, **f)
    out = _logits(b, obs["logits"])
    b.conv_requant(name, fc, g, None, out, relu=False)
    b.p.output = out.id


def _tinyconv(b: Builder, model: nn.Module, images: torch.Tensor) -> None:
    convs, bns = [model.conv1, model.conv2, model.conv3], [model.bn1, model.bn2, model.bn3]
    pts = {"image": (convs[0], "in", None), "fc": (model.fc1, "in", None), "logits": (model.bn_fc, "out", None)}
    pts.update({f"relu{i}": (model.pool, "in", i) for i in range(3)})
    pts.update({f"conv{i}": (convs[i], "in", None) for i in range(1, 3)})
    obs = _observe(model, images, pts)
    x = _input(b, images, _consumer_spec(convs[0], obs["image"]))
    for i in range(3):
        r = b.tensor((0, 0, 0), CODES, Spec(8, quant.calibrate_range(obs[f"relu{i}"][1]), False))
        r = b.conv_requant(f"conv{i + 1}", convs[i], x, None, r, relu=True)
        h, w, c = r.shape
        pk = model.pool.kernel_size if isinstance(model.pool.kernel_size, int) else model.pool.kernel_size[0]
        s = b.tensor((h // pk, w // pk, c), INT32)
        b.op(f"pool{i + 1}", type=SUMPOOL, in0=r.id, out=s.id, in_h=h, in_w=w, in_c=c, out_h=h // pk, out_w=w // pk,
             out_c=c, kh=pk, kw=pk, sh=pk, sw=pk, ph=0, pw=0, in_zp=r.spec.zp)
        nxt = _consumer_spec(convs[i + 1], obs[f"conv{i + 1}"]) if i < 2 else _consumer_spec(model.fc1, obs["fc"])
        x = b.tensor(s.shape, CODES, nxt)
        a, off = _affine_bn(bns[i], c)
        clip = int(round(model.clip.max_val * pk * pk / r.spec.step))  # Hardtanh on the window sum, exact
        f = b.requant_fields(f"bn{i + 1}", [(a * r.spec.step / (pk * pk), None)], off, x, relu=False)
        f.update(pre_lo=b.array("plo", np.full(c, -clip, np.int32)), pre_hi=b.array("phi", np.full(c, clip, np.int32)))
        b.op(f"bn{i + 1}", type=REQUANT, in0=s.id, out=x.id, out_h=s.shape[0], out_w=s.shape[1], out_c=c, **f)
    out = _logits(b, obs["logits"])
    b.conv_requant("fc1", model.fc1, x, model.bn_fc, out, relu=False)
    b.p.output = out.id


def _resnet(b: Builder, model: nn.Module, images: torch.Tensor) -> None:
    blocks = [blk for i in range(model.num_stages) for blk in getattr(model, f"layer{i + 1}")]
    pts = {"image": (model.conv1, "in", None), "last": (model.avgpool, "in", None), "fc": (model.fc, "in", None),
           "logits": (model.fc, "out", None)}
    for j, blk in enumerate(blocks):
        pts[f"b{j}.conv1"] = (blk.conv1, "in", None)
        pts[f"b{j}.conv2"] = (blk.conv2, "in", None)
    obs = _observe(model, images, pts)
    x = _input(b, images, _consumer_spec(model.conv1, obs["image"]))

    def block_in_spec(j):
        if j == len(blocks):
            return _pow2_spec(*obs["last"])
        blk = blocks[j]
        readers = [blk.conv1] + ([blk.downsample[0]] if blk.downsample is not None else [])
        specs = [_consumer_spec(m, obs[f"b{j}.conv1"]) for m in readers if isinstance(m, lutnet.LUTLayer)]
        if any(s != specs[0] for s in specs):
            raise WPError(f"block {j}: its two pooled convs quantize the same input differently ({specs})")
        return specs[0] if specs else _pow2_spec(*obs[f"b{j}.conv1"])

    stem = b.tensor((0, 0, 0), CODES, block_in_spec(0))
    stem = b.conv_requant("conv1", model.conv1, x, model.bn1, stem, relu=True)
    mp = model.maxpool
    k, s, p = (v if isinstance(v, int) else v[0] for v in (mp.kernel_size, mp.stride, mp.padding))
    h, w, c = stem.shape
    x = b.tensor(((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, c), CODES, stem.spec)
    b.op("maxpool", type=MAXPOOL, in0=stem.id, out=x.id, in_h=h, in_w=w, in_c=c, out_h=x.shape[0], out_w=x.shape[1],
         out_c=c, kh=k, kw=k, sh=s, sw=s, ph=p, pw=p, in_zp=stem.spec.zp, out_zp=stem.spec.zp)
    names = {id(m): n for n, m in model.named_modules()}
    for j, blk in enumerate(blocks):
        mid_spec = _consumer_spec(blk.conv2, obs[f"b{j}.conv2"])
        mid = b.conv_requant(names[id(blk.conv1)], blk.conv1, x, blk.bn1, b.tensor((0, 0, 0), CODES, mid_spec), relu=True)
        if blk.downsample is not None:
            ds = b.conv_requant(names[id(blk.downsample[0])], blk.downsample[0], x, None, None, relu=False)
            ds_scale, ds_off = b.last_affine
            a, off = _affine_bn(blk.downsample[1], ds.shape[2])
            residual, res_off = (ds_scale * a, ds), a * ds_off + off
        else:
            residual, res_off = (np.full(x.shape[2], x.spec.step), x), 0.0
        out = b.tensor((0, 0, 0), CODES, block_in_spec(j + 1))
        x = b.conv_requant(names[id(blk.conv2)], blk.conv2, mid, blk.bn2, out, relu=True, residual=residual,
                           res_offset=res_off)
    _pooled_classifier(b, x, obs, "fc", model.fc)


def _mobilenet(b: Builder, model: nn.Module, images: torch.Tensor) -> None:
    blocks = list(model.layers)
    pts = {"image": (model.conv1, "in", None), "head": (model.conv2, "in", None), "last": (model.bn2, "out", None),
           "fc": (model.linear, "in", None), "logits": (model.linear, "out", None)}
    for j, blk in enumerate(blocks):
        pts.update({f"b{j}.{c}": (getattr(blk, c), "in", None) for c in ("conv1", "conv2", "conv3")})
    obs = _observe(model, images, pts)
    x = _input(b, images, _consumer_spec(model.conv1, obs["image"]))

    def block_in_spec(j):
        if j == len(blocks):
            return _consumer_spec(model.conv2, obs["head"])
        blk = blocks[j]
        readers = [blk.conv1] + ([blk.shortcut[0]] if len(blk.shortcut) else [])
        specs = [_consumer_spec(m, obs[f"b{j}.conv1"]) for m in readers if isinstance(m, lutnet.LUTLayer)]
        if any(s != specs[0] for s in specs):
            raise WPError(f"block {j}: its two pooled convs quantize the same input differently ({specs})")
        return specs[0] if specs else _pow2_spec(*obs[f"b{j}.conv1"])

    x = b.conv_requant("conv1", model.conv1, x, model.bn1, b.tensor((0, 0, 0), CODES, block_in_spec(0)), relu=True)
    names = {id(m): n for n, m in model.named_modules()}
    for j, blk in enumerate(blocks):
        e = b.conv_requant(names[id(blk.conv1)], blk.conv1, x, blk.bn1,
                           b.tensor((0, 0, 0), CODES, _consumer_spec(blk.conv2, obs[f"b{j}.conv2"])), relu=True)
        d = b.conv_requant(names[id(blk.conv2)], blk.conv2, e, blk.bn2,
                           b.tensor((0, 0, 0), CODES, _consumer_spec(blk.conv3, obs[f"b{j}.conv3"])), relu=True)
        residual, res_off = None, None
        if blk.stride == 1:
            if len(blk.shortcut):
                sc = b.conv_requant(names[id(blk.shortcut[0])], blk.shortcut[0], x, None, None, relu=False)
                sc_scale, sc_off = b.last_affine
                a, off = _affine_bn(blk.shortcut[1], sc.shape[2])
                residual, res_off = (sc_scale * a, sc), a * sc_off + off
            else:
                residual, res_off = (np.full(x.shape[2], x.spec.step), x), 0.0
        x = b.conv_requant(names[id(blk.conv3)], blk.conv3, d, blk.bn3, b.tensor((0, 0, 0), CODES, block_in_spec(j + 1)),
                           relu=False, residual=residual, res_offset=res_off)
    lo, hi = obs["last"]
    h = b.conv_requant("conv2", model.conv2, x, model.bn2, b.tensor((0, 0, 0), CODES, _pow2_spec(0.0, max(hi, 0.0))),
                       relu=True)
    _pooled_classifier(b, h, obs, "linear", model.linear)


def compile(model: nn.Module, images: torch.Tensor, *, variant: str = "auto") -> Program:
    """The integer program of ``model`` (a :func:`wp.lutnet.convert`\\ ed network, or a float one: all
    its convs then run as int8), with the ranges of the tensors no pooled layer reads calibrated on
    ``images`` (``[N, C, H, W]`` float, training images). ``variant``: the LUT kernel of every pooled layer,
    ``plain``, ``cache``, ``precompute`` or ``auto`` (precomputation where filters exceed the pool size, else
    the cache)."""
    if variant not in (*VARIANTS, "auto"):
        raise WPError(f"unknown LUT kernel variant {variant!r}: use plain, cache, precompute or auto")
    b = Builder(variant)
    model = model.eval()
    kind = type(model).__name__
    if kind == "TinyConv":
        _tinyconv(b, model, images)
    elif kind == "CifarResNet":
        _resnet(b, model, images)
    elif kind == "MobileNetV2":
        _mobilenet(b, model, images)
    else:
        raise WPError(f"the runtime supports TinyConv, the CIFAR ResNets and MobileNet-v2, not {kind}: "
                      "write its op list in wp/intnet.py")
    _plan(b.p)
    return b.p


def compile_layer(layer: nn.Module, images: torch.Tensor, *, variant: str = "auto") -> Program:
    """A program of one conv layer (a :class:`~wp.lutnet.LUTLayer` or an ``nn.Conv2d``, run as int8) reading
    ``images`` (``[N, C, H, W]`` float): the input quantizer (the layer's own, or 8-bit calibrated on the
    images), the layer, and a ReLU requantization to 8-bit codes. For single-layer measurements."""
    if variant not in (*VARIANTS, "auto"):
        raise WPError(f"unknown LUT kernel variant {variant!r}: use plain, cache, precompute or auto")
    b = Builder(variant)
    if isinstance(layer, lutnet.LUTLayer):
        spec = Spec(layer.bits, layer.rng, layer.signed)
    else:
        spec = _pow2_spec(float(images.min()), float(images.max()))
    x = _input(b, images, spec)
    with torch.no_grad():
        y = layer(images.float())
    out = b.tensor((0, 0, 0), CODES, Spec(8, quant.calibrate_range(float(y.abs().max())), False))
    out = b.conv_requant("layer", layer, x, None, out, relu=True)
    b.p.output = out.id
    _plan(b.p)
    return b.p


def _plan(p: Program) -> None:
    """Arena offsets: first fit, a tensor lives from the op that writes it to the last op that reads it."""
    last: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, op in enumerate(p.ops):
        first.setdefault(op["out"], i)
        for key in ("in0", "in1"):
            t = op.get(key, -1)
            if t is not None and t >= 0:
                last[t] = i
    last[p.output] = len(p.ops)
    live: list[tuple[int, int, int]] = []  # (offset, size, tensor)
    top = 0
    for i, op in enumerate(p.ops):
        live = [e for e in live if last.get(e[2], -1) >= i]
        t = p.tensors[op["out"]]
        size = (t.nbytes + 7) // 8 * 8
        off = 0
        for o, s, _ in sorted(live):
            if off + size <= o:
                break
            off = max(off, o + s)
        live.append((off, size, t.id))
        p.offsets[t.id] = off
        top = max(top, off + size)
    p.arena_bytes = top


# ----------------------------------------------------------------------------------------------------
# The reference run (numpy / torch, integers)
# ----------------------------------------------------------------------------------------------------

def _requant(p: Program, op: dict, acc: np.ndarray, vals: dict) -> np.ndarray:
    """acc: int64 [..., C]."""
    if "pre_lo" in op:
        acc = np.clip(acc, p.arrays[op["pre_lo"]].astype(np.int64), p.arrays[op["pre_hi"]].astype(np.int64))
    v = acc * p.arrays[op["m0"]].astype(np.int64) + p.arrays[op["b"]]
    if op["in1_kind"] != NONE:
        v = v + vals[op["in1"]].reshape(v.shape) * p.arrays[op["m1"]].astype(np.int64)
    if op["shift"]:
        v = (v + (1 << (op["shift"] - 1))) >> op["shift"]
    return np.clip(v, op["lo"], op["hi"])


def run(p: Program, images: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(logits [N, classes] int64, per-op outputs)``: every op's output tensor as integers ``[N, H, W, C]``
    (codes, not stored bytes; int32 values), exactly what ``wp_rt.c`` computes."""
    vals: dict[int, np.ndarray] = {}
    outs = []
    n = len(images)
    for op in p.ops:
        t = op["type"]
        if t == QUANT_INPUT:
            x = images.float().permute(0, 2, 3, 1).numpy().astype(np.float32)
            q = np.rint(x * np.float32(op["inv_step"]))
            y = np.clip(q, op["lo"], op["hi"]).astype(np.int64)
        elif t in (CONV8, LUTCONV, DWCONV8):
            x = vals[op["in0"]]
            h, w, c = op["in_h"], op["in_w"], op["in_c"]
            codes = torch.from_numpy(x.reshape(n, h, w, c)).permute(0, 3, 1, 2)
            if t == CONV8:
                wt = torch.from_numpy(p.arrays[op["w"]].astype(np.float64)).permute(0, 3, 1, 2)
                acc = F.conv2d(codes.double(), wt, None, (op["sh"], op["sw"]), (op["ph"], op["pw"]))
                acc = acc.round().long()
            elif t == DWCONV8:
                wt = torch.from_numpy(p.arrays[op["w"]].astype(np.float64)).permute(2, 0, 1)[:, None]
                acc = F.conv2d(codes.double(), wt, None, (op["sh"], op["sw"]), (op["ph"], op["pw"]), groups=c)
                acc = acc.round().long()
            else:
                acc = lut.lut_conv2d(codes, op["ref_indices"].cpu(), op["ref_table"].cpu(),
                                     (op["out_c"], c, op["kh"], op["kw"]), (op["sh"], op["sw"]), (op["ph"], op["pw"]),
                                     op["bits"], bool(op["is_signed"]), "twos")
            acc = acc.permute(0, 2, 3, 1).numpy().astype(np.int64)
            y = _requant(p, op, acc, vals)
        elif t == MAXPOOL:
            x = torch.from_numpy(vals[op["in0"]].reshape(n, op["in_h"], op["in_w"], op["in_c"])).permute(0, 3, 1, 2)
            y = F.max_pool2d(x.double(), op["kh"], op["sh"], op["ph"]).long().permute(0, 2, 3, 1).numpy()
        elif t == SUMPOOL:
            x = torch.from_numpy(vals[op["in0"]].reshape(n, op["in_h"], op["in_w"], op["in_c"])).permute(0, 3, 1, 2)
            y = F.avg_pool2d(x.double(), (op["kh"], op["kw"]), (op["sh"], op["sw"]), divisor_override=1)
            y = y.round().long().permute(0, 2, 3, 1).numpy()
        elif t == FLATTEN:
            y = vals[op["in0"]].reshape(n, op["in_h"], op["in_w"], op["in_c"]).transpose(0, 3, 1, 2)
        elif t == REQUANT:
            y = _requant(p, op, vals[op["in0"]].reshape(n, op["out_h"], op["out_w"], op["out_c"]), vals)
        else:
            raise WPError(f"unknown op type {t}")
        y = y.reshape(n, -1)
        vals[op["out"]] = y
        outs.append(y)
    return vals[p.output].reshape(n, -1), outs


# ----------------------------------------------------------------------------------------------------
# The C header
# ----------------------------------------------------------------------------------------------------

OP_FIELDS = ("type", "variant", "bits", "is_signed", "in_zp", "out_zp", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c",
             "kh", "kw", "sh", "sw", "ph", "pw", "k", "in1_kind", "out_kind", "shift", "in1_zp", "lo", "hi")


def c_header(p: Program, name: str = "wp_net") -> str:
    """A C header defining ``static const wp_op <name>_ops[]``, the arrays, ``<NAME>_ARENA_BYTES`` and a
    ``wp_net`` initializer macro ``<NAME>_INIT(arena)``."""
    up = name.upper()
    lines = [f"/* Generated by wp.intnet.c_header: {len(p.ops)} ops, arena {p.arena_bytes} bytes. */",
             f"#ifndef {up}_H", f"#define {up}_H", '#include "wp_rt.h"', ""]
    if p.lut_dtype == "int16":
        lines += ["#ifndef WP_LUT16", "#error this network's tables are int16: compile with -DWP_LUT16", "#endif", ""]
    for an, a in p.arrays.items():
        ctype = C_TYPES[a.dtype.name]
        if an.startswith("lut"):
            ctype = "wp_lut_t"
        vals = ",".join(str(int(v)) + ("LL" if a.dtype == np.int64 else "") for v in a.reshape(-1).tolist())
        lines.append(f"static const {ctype} {name}_{an}[{max(1, a.size)}] __attribute__((aligned(4))) = {{{vals}}};")
    lines.append(f"static const wp_op {name}_ops[{len(p.ops)}] = {{")
    for op in p.ops:
        parts = [f".{f} = {int(op[f])}" for f in OP_FIELDS if f in op]
        for key in ("in0", "in1", "out"):
            t = op.get(key, -1)
            parts.append(f".{key} = {p.offsets[t] if t is not None and t >= 0 else -1}")
        if "inv_step" in op:
            parts.append(f".inv_step = {float(op['inv_step']).hex()}f")
        for key in ("w", "lut", "m0", "m1", "b", "pre_lo", "pre_hi"):
            if key in op:
                parts.append(f".{key} = {name}_{op[key]}")
        lines.append("    {" + ", ".join(parts) + "},")
    lines += ["};", f"#define {up}_N_OPS {len(p.ops)}", f"#define {up}_ARENA_BYTES {p.arena_bytes}",
              f"#define {up}_INPUT_SIZE {int(np.prod(p.tensors[p.input].shape))}",
              f"#define {up}_N_OUT {int(np.prod(p.tensors[p.output].shape))}",
              f"#define {up}_OUTPUT_OFF {p.offsets[p.output]}",
              f"#define {up}_INIT(arena) {{{name}_ops, {up}_N_OPS, (arena), 0, {up}_OUTPUT_OFF, {up}_N_OUT}}",
              "#endif", ""]
    return "\n".join(lines)
