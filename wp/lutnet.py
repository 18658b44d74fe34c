"""A pooled network run the deployed way: quantized activations and bit-serial lookup-table layers.

Given a weight-pool network (a ``pooled`` checkpoint: projected weights, the pool, one pool index per
z-vector), :func:`convert` replaces every pooled layer by a module that

1. quantizes its input to ``act_bits`` integer codes with the layer's power-of-two range ``A``
   (unsigned after a ReLU, signed where the calibration saw negative inputs), with its
   :class:`wp.quant.ActQuantizer` (child ``act_quant``),
2. runs the layer from the codes, the layer's pool indices and the network's table
   ``T[s, k] = Σ_j bit_j(s)·pool[k, j]`` (:func:`wp.lut.lut_conv2d`), with ``T`` quantized to
   ``lut_bits`` integer codes (range calibrated per layer: ``max |T|`` over the columns the layer uses),
3. scales the integer result by ``Δ_act · Δ_lut`` (times the layer's pool scale ``s``, one per layer or
   per output channel, where the pool has one: :mod:`wp.pool`) and adds the bias.

With ``lut_bits=None`` there is no table: the layer stays, an :class:`~wp.quant.ActQuantizer` attached to
it (:func:`wp.quant.attach`), and the quantized activations are multiplied with the projected weights in float (the "no LUT" column of Table 5, and Table 6 without a table). Everything else of the
network (the first conv, BatchNorm, depthwise convs, unpooled linear layers) runs in float, as in the
paper's emulation.

Activation ranges are calibrated on *training* batches (:func:`wp.quant.calibrated_ranges`), never on the
test set; a checkpoint retrained with quantized activations (``act_train``) carries the quantizers it was
trained with in its ``state_dict`` (:func:`wp.checkpoint.build` attaches them before loading).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from wp import WPError, checkpoint, lut, quant, selection
from wp.pool import deployed_weight, to_vectors
from wp.train import Tensors


class LUTLayer(nn.Module):
    """A pooled ``Conv2d`` or ``Linear`` executed bit-serially from a lookup table.

    Holds the layer's pool indices, the (quantized) table as integer codes or floats, its step, the
    activation quantizer (an :class:`~wp.quant.ActQuantizer`, child ``act_quant``; ``bits``, ``rng`` and
    ``signed`` read it), the conv geometry and the pool scale (``scale``: 1 or out-channels values, or
    None); the weights themselves are not used. Output: ``acc · (Δ_act · Δ_lut) · scale + bias``,
    computed in float64 and then cast to the input's dtype."""

    def __init__(self, layer: nn.Module, indices: torch.Tensor, table: torch.Tensor, table_step: float,
                 bits: int, rng: float, signed: bool, signed_mode: str = "twos", scale: torch.Tensor | None = None):
        super().__init__()
        self.is_linear = isinstance(layer, nn.Linear)
        if self.is_linear:
            self.weight_shape = (layer.out_features, layer.in_features, 1, 1)
            self.stride, self.padding = (1, 1), (0, 0)
        else:
            if layer.dilation not in ((1, 1), 1) or layer.groups != 1 or isinstance(layer.padding, str):
                raise WPError(f"conv {layer} cannot run from the LUT (dilation/groups/string padding): it should not be pooled")
            self.weight_shape = tuple(layer.weight.shape)
            self.stride, self.padding = layer.stride, layer.padding
        self.register_buffer("indices", indices.detach().to(torch.int64).reshape(-1).clone())
        self.register_buffer("table", table.detach().clone())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())
        if scale is not None and scale.numel() not in (1, self.weight_shape[0]):
            raise WPError(f"a pool scale of {scale.numel()} values does not fit a layer of {self.weight_shape[0]} outputs: "
                          f"the checkpoint's scales come from another network; rerun wp_train")
        self.register_buffer("scale", None if scale is None else scale.detach().reshape(-1).clone())
        self.table_step, self.signed_mode = float(table_step), signed_mode
        self.add_module(quant.QUANTIZER, quant.ActQuantizer(bits, rng, signed))

    @property
    def bits(self) -> int:
        return self.act_quant.bits

    @property
    def rng(self) -> float:
        return self.act_quant.rng

    @property
    def signed(self) -> bool:
        return self.act_quant.signed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes, step = self.act_quant.codes(x)
        if self.is_linear:
            codes = codes[:, :, None, None]
        out = lut.lut_conv2d(codes, self.indices, self.table, self.weight_shape, self.stride, self.padding,
                             self.bits, self.signed, self.signed_mode)
        out = out.to(torch.float64) * (step * self.table_step)
        if self.scale is not None:
            out = out * self.scale.to(torch.float64).view(1, -1, 1, 1)
        out = out.to(x.dtype)
        if self.is_linear:
            out = out[:, :, 0, 0]
        if self.bias is not None:
            out = out + self.bias.view((1, -1) + (1,) * (out.dim() - 2))
        return out


def layer_table(table: torch.Tensor, indices: torch.Tensor, lut_bits: int | None, mode: str,
                ) -> tuple[torch.Tensor, float]:
    """The table one layer reads: ``(integer codes, step)`` quantized to ``lut_bits`` with the layer's
    range (``max |T|`` over the columns its indices use), or the float table and step 1 when
    ``lut_bits`` is None."""
    if lut_bits is None:
        return table, 1.0
    r = lut.table_range(table, indices)
    if r == 0.0:  # a layer whose used pool vectors are all zero: every entry is 0 in any code
        return torch.zeros_like(table, dtype=torch.int64), 1.0
    return lut.table_codes(table, lut_bits, r, mode)


def check_indices(model: nn.Module, pool: torch.Tensor, indices: dict[str, torch.Tensor],
                  scales: dict[str, torch.Tensor] | None = None) -> None:
    """The pooled layers' weights must be exactly their pool vectors (times their pool scales, where
    ``scales`` gives them): a pooled checkpoint."""
    modules = dict(model.named_modules())
    for name, idx in indices.items():
        weight = modules[name].weight.detach().cpu()
        w = to_vectors(weight.float())
        s = None if scales is None else scales[name].cpu()
        if (w.shape[0] != idx.numel() or (s is not None and w.shape[0] % s.numel())
                or not torch.equal(w, to_vectors(deployed_weight(pool.to(weight.dtype).cpu(), idx, weight.shape,
                                                                 None if s is None else s.to(weight.dtype))).float())):
            raise WPError(f"layer {name}: weights are not the {'scaled ' if s is not None else ''}pool vectors of its indices: "
                          f"the checkpoint is not a weight-pool checkpoint of this pool; rerun wp_train")


def convert(model: nn.Module, pool: torch.Tensor, indices: dict[str, torch.Tensor],
            ranges: dict[str, tuple[float, bool]], act_bits: int, lut_bits: int | None, *,
            lut_mode: str, signed_mode: str, use_table: bool = True,
            scales: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Replace (in place) every pooled layer named in ``indices`` by its deployed version and return the
    model: a :class:`LUTLayer` when ``use_table`` (its table quantized to ``lut_bits``, or the exact float
    table when None), else the layer itself with an :class:`~wp.quant.ActQuantizer` attached (activations
    quantized, float weights; ``lut_bits`` must then be None; a quantizer already attached is replaced).
    ``ranges``: per layer ``(A, signed)`` (:func:`act_ranges`); ``scales``: per layer its pool scales (a
    checkpoint's ``scales``), None for a pool without scale."""
    if not use_table and lut_bits is not None:
        raise WPError("lut_bits needs the table: quantized table entries exist only in LUT execution")
    missing = sorted(set(indices) - set(ranges))
    if missing:
        raise WPError(f"no activation range for pooled layers {missing}: calibrate them first")
    param = next(model.parameters())
    device = param.device
    table = lut.build_table(pool.to(device=device, dtype=torch.float64))
    if lut_bits is None:  # the exact table, in the model's precision
        table = table.to(param.dtype)
    for name, idx in indices.items():
        layer = model.get_submodule(name)
        rng, signed = ranges[name]
        if use_table:
            t, step = layer_table(table, idx.to(device), lut_bits, lut_mode)
            s = None if scales is None else scales[name].to(device)
            new = LUTLayer(layer, idx.to(device), t, step, act_bits, rng, signed, signed_mode, s)
            replace_module(model, name, new)
        else:
            quant.detach(model, [name] if name in quant.quantizers(model) else [])
            quant.attach(model, {name: quant.ActQuantizer(act_bits, rng, signed)})
    return model


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` (dotted, as ``named_modules`` gives it) is."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def reference_conv(x: torch.Tensor, layer: nn.Conv2d, bits: int, rng: float, signed: bool) -> torch.Tensor:
    """``conv2d`` of the quantized input with the layer's (projected) float weights: what a LUT layer
    with an unquantized table must equal."""
    return F.conv2d(quant.fake_quant(x, bits, rng, signed), layer.weight, layer.bias, layer.stride, layer.padding)


# ---- the deployed network as the stages load it (quant_eval, act_train, export) ----

def load_pooled(ckpt_path: str | Path, network: str, device: torch.device) -> tuple[dict, torch.nn.Module]:
    """A pooled checkpoint and its model on ``device``, its weights checked against pool and indices."""
    ckpt = checkpoint.load(ckpt_path, network=network, kind="pooled")
    checkpoint.require_quantizers(ckpt, ckpt_path)
    model = checkpoint.build(ckpt, device).eval()
    check_indices(model, ckpt["pool"], ckpt["indices"], checkpoint.pool_scale(ckpt)[1])
    return ckpt, model


def check_trained_bits(ckpt: dict, act_bits: int, ckpt_path) -> int | None:
    """A checkpoint retrained by ``act_train`` runs only at its own bit width; returns that width (or None)."""
    trained_bits = ckpt.get("act_bits")
    if trained_bits is not None and trained_bits != act_bits:
        raise WPError(f"checkpoint {ckpt_path} was retrained for {trained_bits}-bit activations, not {act_bits}: use it at {trained_bits} bits")
    return trained_bits


def act_ranges(ckpt: dict, model: torch.nn.Module, train: Tensors, images: int, seed: int, *, bits: int,
               method: str) -> dict[str, tuple[float, bool]]:
    """Per pooled layer ``(A, signed)``: the ranges of the quantizers the model was retrained with (read
    from them: ``act_train``'s checkpoint) or ranges calibrated on ``images`` training images for
    ``bits``-bit activations (``method``: see :func:`wp.quant.calibrated_ranges`)."""
    trained = quant.quantizers(model)
    if trained:
        return {name: (q.rng, q.signed) for name, q in trained.items()}
    if method not in quant.RANGE_METHODS:
        raise WPError(f"unknown activation range method {method!r}: use one of {', '.join(quant.RANGE_METHODS)}")
    return quant.calibrated_ranges(model, ckpt["pooled_layers"], selection.calibration_batches(train, images, seed),
                                   method=method, bits=bits)
