"""LUT kernel benchmark: prints, for pooled convolutions of MobileNet-v2 (1x1) and ResNet-14 (3x3, and
its strided 1x1 shortcut) at the sizes the networks run them, images/s of ``wp.lut.lut_conv2d`` before
(the kernel as it was up to commit 0b69e7b, kept below as ``previous_lut_conv2d``) and now, the speedup,
the lookup the new kernel chose ("filters" or "pool"), and whether both gave the same integers.

    python benchmarks/lut_speed.py                    # one thread, 32 images, 8-bit codes and table, K = 64
    python benchmarks/lut_speed.py --images 128 --act-bits 4 --lut-bits 4 --channels-last

Inputs are random activation codes (unsigned after a ReLU, signed after a BatchNorm, as the layers see
them in ``wp.lutnet``), a random pool of K vectors, random pool indices and the table quantized to
``--lut-bits`` integer codes: the integer-exact mode that ``quant_eval`` runs. Speed does not depend on
the values. Times are the best of ``--repeats`` wall-clock runs. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wp import lut, quant  # noqa: E402

# (network, layer, kernel, stride, padding, in_channels, out_channels, input side, signed codes)
LAYERS = [
    ("mobilenet_v2", "layers.1.conv3", 1, 1, 0, 144, 24, 32, False),
    ("mobilenet_v2", "layers.2.conv1", 1, 1, 0, 24, 144, 32, True),
    ("mobilenet_v2", "layers.7.conv3", 1, 1, 0, 384, 64, 8, False),
    ("mobilenet_v2", "layers.14.conv1", 1, 1, 0, 160, 960, 4, True),
    ("mobilenet_v2", "conv2", 1, 1, 0, 320, 1280, 4, True),
    ("resnet_14", "layer1.0.conv1", 3, 1, 1, 64, 64, 16, False),
    ("resnet_14", "layer2.0.conv1", 3, 2, 1, 64, 128, 16, False),
    ("resnet_14", "layer2.0.downsample.0", 1, 2, 0, 64, 128, 16, False),
    ("resnet_14", "layer3.1.conv2", 3, 1, 1, 256, 256, 4, False),
]


def previous_lut_conv2d(codes, indices, table, weight_shape, stride=1, padding=0, bits=8, signed=False,
                        signed_mode="twos", chunk_elements=1 << 22):
    """The kernel before issue 16 (integer tables, ``scale=None``): per bit plane ``Σ_j bit_b(a_j)·2^j``
    by shift/and/sum passes over int32 codes, the taps stacked into one int32 index tensor per chunk,
    one ``embedding_bag`` over the per-filter table view ``E``."""
    out_c, in_c, kh, kw = (int(v) for v in weight_shape)
    n, _, h, w = codes.shape
    groups, taps = in_c // 8, kh * kw
    (sh, sw), (ph, pw) = lut._pair(stride), lut._pair(padding)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    lo, hi = quant.code_limits(bits, signed)
    if int(codes.min()) < lo or int(codes.max()) > hi:
        raise ValueError("codes out of range")
    idx = indices.to(torch.int64).reshape(out_c, taps, groups)
    x = F.pad(codes.to(torch.int32), (pw, pw, ph, ph))
    x = x.permute(0, 2, 3, 1).reshape(n, h + 2 * ph, w + 2 * pw, groups, 8)
    shifts = torch.arange(8, dtype=x.dtype)

    def pattern(v, b):
        return (((v >> b) & 1) << shifts).sum(-1, dtype=v.dtype)

    if not signed:
        planes = [(1 << b, pattern(x, b)) for b in range(bits)]
    elif signed_mode == "twos":
        planes = [(-(1 << b) if b == bits - 1 else 1 << b, pattern(x, b)) for b in range(bits)]
    else:
        pos, neg = x.clamp(min=0), (-x).clamp(min=0)
        planes = [(1 << b, pattern(pos, b)) for b in range(bits - 1)] + [(-(1 << b), pattern(neg, b)) for b in range(bits)]
    del x
    pat = torch.stack([p for _, p in planes], dim=-1)
    weights = [wb for wb, _ in planes]
    bound = int(table.abs().max()) * sum(abs(wb) for wb in weights) * taps * groups
    acc = torch.float32 if bound < 1 << 24 else torch.float64
    emb = table[:, idx].to(acc).permute(2, 3, 0, 1).reshape(taps * groups * 256, out_c)
    offsets = (torch.arange(taps * groups, dtype=torch.int32) * 256).view(taps, groups, 1)
    psw_row = torch.tensor(weights, dtype=acc).repeat(taps * groups)
    pix, bag = oh * ow, taps * groups * len(planes)
    chunk = max(1, chunk_elements // (pix * bag))
    out = torch.empty(n, pix, out_c, dtype=acc)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        lookups = torch.stack([pat[n0:n1, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
                               for ky in range(kh) for kx in range(kw)], dim=3)
        lookups = lookups.add_(offsets).view((n1 - n0) * pix, bag)
        out[n0:n1] = F.embedding_bag(lookups, emb, mode="sum", per_sample_weights=psw_row.expand((n1 - n0) * pix, bag)
                                     ).view(n1 - n0, pix, out_c)
    return out.view(n, oh, ow, out_c).permute(0, 3, 1, 2).contiguous().to(torch.int64)


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def layer_inputs(spec, args, gen: torch.Generator):
    _, _, k, _, _, in_c, out_c, side, signed = spec
    lo, hi = quant.code_limits(args.act_bits, signed)
    codes = torch.randint(lo, hi + 1, (args.images, in_c, side, side), generator=gen)
    if args.channels_last:
        codes = codes.contiguous(memory_format=torch.channels_last)
    pool = torch.randn(args.k, 8, generator=gen)
    indices = torch.randint(0, args.k, (out_c * k * k * in_c // 8,), generator=gen)
    table = lut.build_table(pool.double())
    tcodes, _ = lut.table_codes(table, args.lut_bits, lut.table_range(table, indices), "strict")
    return codes, indices, tcodes, (out_c, in_c, k, k)


def chosen_method(spec, args, indices) -> str:
    """The lookup ``method="auto"`` takes for this layer (``wp.lut._pool_is_cheaper``)."""
    _, _, k, _, padding, _, out_c, _, _ = spec
    pointwise = k == 1 and not padding
    return "pool" if pointwise and lut._pool_is_cheaper(out_c, args.act_bits, len(torch.unique(indices))) else "filters"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=32, help="images per call (quant_eval's batches are 128)")
    p.add_argument("--act-bits", type=int, default=8, help="activation bits (bit planes)")
    p.add_argument("--lut-bits", type=int, default=8, help="table entry bits")
    p.add_argument("--k", type=int, default=64, help="pool size")
    p.add_argument("--channels-last", action="store_true", help="channels-last codes (as after a channels-last conv)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per kernel; the best counts")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (the demo's jobs use 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}; {args.images} images, "
          f"{args.act_bits}-bit codes, {args.lut_bits}-bit table, K={args.k}, "
          f"{'channels-last' if args.channels_last else 'NCHW'} codes", flush=True)
    print(f"{'network':13s} {'layer':22s} {'conv':>16s} {'input':>6s} {'before img/s':>13s} {'after img/s':>12s} "
          f"{'speedup':>8s} {'lookup':>8s}  same")
    gen = torch.Generator().manual_seed(0)
    total_before = total_after = 0.0
    for spec in LAYERS:
        network, layer, k, stride, padding, in_c, out_c, side, signed = spec
        codes, indices, tcodes, shape = layer_inputs(spec, args, gen)
        call = (codes, indices, tcodes, shape, stride, padding, args.act_bits, signed)
        before = previous_lut_conv2d(*call)
        after = lut.lut_conv2d(*call)
        same = torch.equal(before, after)
        t_before = best_seconds(lambda: previous_lut_conv2d(*call), args.repeats)
        t_after = best_seconds(lambda: lut.lut_conv2d(*call), args.repeats)
        total_before, total_after = total_before + t_before, total_after + t_after
        conv = f"{k}x{k}/{stride} {in_c}->{out_c}"
        print(f"{network:13s} {layer:22s} {conv:>16s} {side:>3d}^2{'s' if signed else 'u'} {args.images / t_before:13.0f} "
              f"{args.images / t_after:12.0f} {t_before / t_after:7.1f}x {chosen_method(spec, args, indices):>8s}  "
              f"{'yes' if same else 'NO'}", flush=True)
    print(f"all layers: {total_before:.3f} s before, {total_after:.3f} s after ({total_before / total_after:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
