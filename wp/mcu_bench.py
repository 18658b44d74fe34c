"""Table 7 and Figures 7 and 8 of the paper, measured on an emulated Cortex-M3 (:mod:`wp.mcu`).

What is measured: instructions executed by the C runtime (``wp/runtime_c``) built with
``arm-none-eabi-gcc -mcpu=cortex-m3 -mthumb -O2``, counted exactly by the emulator, for the conv layers
(every int8 and bit-serial conv with its fused requantization; the first conv runs as int8 in every
column, as in the paper), plus the data loads from flash. Timing does not depend on the values (the
kernels have no data-dependent branches apart from the requantization's clamps), so, like the paper's
benches, the networks have random weights projected onto a random pool; their shapes are the
runtime's (``wp.paper.RUNTIME_INPUT``: 3-channel inputs). ``est_cycles`` is an estimate (see
:func:`wp.mcu.cycle_estimate`), never a measurement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from wp import WPError, intnet, lutnet, mcu, models, paper, pool, quant

CONV_OPS = (intnet.CONV8, intnet.LUTCONV)
STACK_RESERVE = 2048  # bytes of stack counted against SRAM beside the image's static data


def synthetic(network: str, k: int | None, act_bits: int, lut_bits: int = 8, seed: int = 0,
              input_shape: tuple[int, int] | None = None) -> tuple[nn.Module, torch.Tensor]:
    """``network`` at the runtime's input shape with random weights: ``k=None`` the float network (its convs
    run as int8), else its pooled layers projected onto a random pool of ``k`` vectors and converted by
    :func:`wp.lutnet.convert` (``act_bits`` activations, ``lut_bits`` table). Returns (model, 16 images)."""
    if network not in paper.RUNTIME_INPUT and input_shape is None:
        raise WPError(f"no runtime input shape for {network!r}: choose one of {sorted(paper.RUNTIME_INPUT)}")
    c, size = input_shape or paper.RUNTIME_INPUT[network]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = models.create(network, in_channels=c, num_classes=10, image_size=size)
    images = torch.rand(16, c, size, size, generator=g)
    layers = pool.pooled_layers(model)
    centers = torch.randn(k or 16, 8, generator=g) * 0.2
    indices = {}
    for name in layers:
        mod = model.get_submodule(name)
        w, idx = pool.project(mod.weight.data, centers)
        mod.weight.data.copy_(w)
        indices[name] = idx
    for m in model.modules():  # BatchNorm statistics of these images: activations in a sane range
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()
    if k is not None:
        ranges = quant.calibrated_ranges(model, layers, [images], method="max")
        lutnet.convert(model, centers, indices, ranges, act_bits, lut_bits, lut_mode="strict", signed_mode="twos")  # what wp/runtime_c implements
    return model, images


def measure(program: intnet.Program, build: str | Path, image: torch.Tensor) -> dict:
    """Emulate ``program`` on one image: conv-layer and total instructions, flash data reads, memory."""
    elf = mcu.build_m3(program, build)
    res = mcu.run_m3(program, elf, image)
    conv = [i for i, op in enumerate(program.ops) if op["type"] in CONV_OPS]
    sizes = mcu.section_sizes(elf)
    return {"instructions_conv": int(sum(res["per_op"][i] for i in conv)),
            "flash_reads_conv": int(sum(res["per_op_flash_reads"][i] for i in conv)),
            "instructions_total": int(res["instructions"]),
            "per_layer": [(program.names[i], int(res["per_op"][i])) for i in conv],
            "flash_bytes": sizes["text"] + sizes["data"],
            "sram_bytes": sizes["data"] + sizes["bss"] - int(np.prod(program.tensors[program.input].shape)) * 4
            + STACK_RESERVE}


def table7(networks: list[str], min_bits: dict[str, int], build: str | Path, *, pools=(64, 32), lut_bits: int = 8,
           variant: str = "auto", cpi: float = 1.6, wait_states: int = 3, seed: int = 0,
           input_shape: tuple[int, int] | None = None, log=print) -> pd.DataFrame:
    """One row per (network, column): ``int8`` (every conv int8, CMSIS-NN order) and ``{K}-8`` /
    ``{K}-m`` for each pool K (8-bit and ``min_bits[network]``-bit activations). ``sram_bytes`` leaves out
    the float input image (a sensor's buffer)."""
    rows = []
    build = Path(build)
    for net in networks:
        if net not in min_bits:
            raise WPError(f"no minimum activation bit width for {net!r}: add it to Table 6 (min_bits)")
        configs = [("int8", None, 8)] + [(f"{k}-8", k, 8) for k in pools] + [(f"{k}-m", k, min_bits[net]) for k in pools]
        base = None
        for col, k, bits in configs:
            model, images = synthetic(net, k, bits, lut_bits, seed, input_shape)
            prog = intnet.compile(model, images, variant=variant)
            m = measure(prog, build / net / col, images[0])
            est = mcu.cycle_estimate(m["instructions_conv"], m["flash_reads_conv"], cpi, wait_states)
            if base is None:
                base = (m["instructions_conv"], est)
            row = {"network": net, "column": col, "k": k, "act_bits": bits, "instructions_conv": m["instructions_conv"],
                   "instructions_total": m["instructions_total"], "flash_reads_conv": m["flash_reads_conv"],
                   "speedup": base[0] / m["instructions_conv"], "est_cycles_conv": est, "est_speedup": base[1] / est}
            for board, spec in paper.BOARDS.items():
                ref = paper.TABLE7.get((board, net), {})
                row[f"est_seconds_{board}"] = est / (spec["mhz"] * 1e6)
                row[f"paper_seconds_{board}"] = ref.get(col)
                base_ref = ref.get("int8")
                row[f"paper_speedup_{board}"] = base_ref / ref[col] if base_ref and ref.get(col) else None
                row[f"fits_{board}"] = bool(m["flash_bytes"] <= spec["flash"] and m["sram_bytes"] <= spec["sram"])
            row.update(flash_bytes=m["flash_bytes"], sram_bytes=m["sram_bytes"])
            rows.append(row)
            log(f"table7 {net} {col}: {m['instructions_conv'] / 1e6:.2f} M instructions in conv layers "
                f"(speedup {row['speedup']:.2f}x, est. {row['est_speedup']:.2f}x), flash {m['flash_bytes']} B, "
                f"SRAM {m['sram_bytes']} B")
    return pd.DataFrame(rows)


def _layer_measure(c_in: int, filters: int, size: int, k: int | None, bits: int, variant: str, build: Path,
                   seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, filters, 3, 1, 1, bias=False)
    images = torch.rand(4, c_in, size, size, generator=g)
    if k is not None:
        centers = torch.randn(k, 8, generator=g) * 0.2
        w, idx = pool.project(conv.weight.data, centers)
        conv.weight.data.copy_(w)
        holder = nn.Sequential(conv)
        lutnet.convert(holder, centers, {"0": idx}, {"0": (1.0, False)}, bits, 8, lut_mode="strict", signed_mode="twos")  # what wp/runtime_c implements
        conv = holder[0]
    prog = intnet.compile_layer(conv, images, variant=variant)
    m = measure(prog, build, images[0])
    return m


def figure7(filters: list[int], build: str | Path, *, size: int = 16, k: int = 64, bits: int = 8, cpi: float = 1.6,
            wait_states: int = 3, seed: int = 0, log=print) -> pd.DataFrame:
    """Single 3x3 layers, channels = filters: the plain, cached and precomputing LUT kernels; speedups over
    plain (instructions, and the cycle estimate)."""
    rows = []
    for f in filters:
        res = {v: _layer_measure(f, f, size, k, bits, v, Path(build) / f"f{f}_{v}", seed) for v in intnet.VARIANTS}
        est = {v: mcu.cycle_estimate(r["instructions_conv"], r["flash_reads_conv"], cpi, wait_states) for v, r in res.items()}
        for v in ("cache", "precompute"):
            rows.append({"filters": f, "variant": v, "instructions": res[v]["instructions_conv"],
                         "instructions_plain": res["plain"]["instructions_conv"],
                         "speedup": res["plain"]["instructions_conv"] / res[v]["instructions_conv"],
                         "est_speedup": est["plain"] / est[v], "paper_speedup": paper.FIGURE7.get(f, {}).get(v)})
            log(f"figure7 {f} filters {v}: {rows[-1]['speedup']:.2f}x over plain (est. {rows[-1]['est_speedup']:.2f}x)")
    return pd.DataFrame(rows)


def figure8(channels: int, bits: list[int], build: str | Path, *, size: int = 16, k: int = 64, cpi: float = 1.6,
            wait_states: int = 3, seed: int = 0, log=print) -> pd.DataFrame:
    """The ``channels``-channel, ``channels``-filter 3x3 layer at each activation bit width, cached and
    precomputing: speedup over the same kernel at 8 bits, and over the int8 (CMSIS-order) layer."""
    base8 = _layer_measure(channels, channels, size, None, 8, "plain", Path(build) / "int8", seed)
    est8 = mcu.cycle_estimate(base8["instructions_conv"], base8["flash_reads_conv"], cpi, wait_states)
    rows = []
    for v in ("cache", "precompute"):
        ref = None
        for b in sorted(bits, reverse=True):
            m = _layer_measure(channels, channels, size, k, b, v, Path(build) / f"{v}_a{b}", seed)
            est = mcu.cycle_estimate(m["instructions_conv"], m["flash_reads_conv"], cpi, wait_states)
            if ref is None:
                if b != 8:
                    raise WPError("figure 8 needs 8 bits among its bit widths (the reference point)")
                ref = (m["instructions_conv"], est)
            rows.append({"variant": v, "act_bits": b, "instructions": m["instructions_conv"],
                         "speedup_vs_8bit": ref[0] / m["instructions_conv"], "est_speedup_vs_8bit": ref[1] / est,
                         "speedup_vs_int8": base8["instructions_conv"] / m["instructions_conv"],
                         "est_speedup_vs_int8": est8 / est, "paper_speedup_vs_8bit": paper.FIGURE8[v].get(b)})
            log(f"figure8 {v} {b}-bit: {rows[-1]['speedup_vs_8bit']:.2f}x over 8-bit, {rows[-1]['speedup_vs_int8']:.2f}x over int8")
    return pd.DataFrame(rows)


def plot_figure7(df: pd.DataFrame, png: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    filters = sorted(df["filters"].unique())
    x = np.arange(len(filters))
    for j, v in enumerate(("cache", "precompute")):
        d = df[df["variant"] == v].set_index("filters").loc[filters]
        ax.bar(x + (j - 0.5) * 0.38, d["speedup"], 0.36, label=f"{v} (ours, instructions)")
        ax.plot(x + (j - 0.5) * 0.38, d["est_speedup"], "k^", ms=5, label="ours, cycle estimate" if j == 0 else None)
        ax.plot(x + (j - 0.5) * 0.38, d["paper_speedup"], "rx", ms=7, label="paper" if j == 0 else None)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(x, [str(f) for f in filters])
    ax.set_xlabel("channels = filters (3x3, 16x16 input, K = 64)")
    ax.set_ylabel("speedup over plain LUT kernel")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120, format="png")
    plt.close(fig)


def plot_figure8(df: pd.DataFrame, png: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), sharey=True)
    for ax, v, title in zip(axes, ("cache", "precompute"), ("(a) no precomputation", "(b) with precomputation")):
        d = df[df["variant"] == v].sort_values("act_bits", ascending=False)
        ax.plot(d["act_bits"], d["speedup_vs_8bit"], "o-", label="ours (instructions)")
        ax.plot(d["act_bits"], d["est_speedup_vs_8bit"], "^--", label="ours (cycle estimate)")
        ax.plot(d["act_bits"], d["paper_speedup_vs_8bit"], "rx:", label="paper")
        ax.invert_xaxis()
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("activation bits")
    axes[0].set_ylabel("speedup over 8-bit")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120, format="png")
    plt.close(fig)


def table7_markdown(df: pd.DataFrame) -> str:
    """Per network: speedup over int8 in instructions (ours), estimated, and the paper's (F207)."""
    cols = list(dict.fromkeys(df["column"]))
    lines = ["| network | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for net, d in df.groupby("network", sort=False):
        d = d.set_index("column")
        cells = []
        for c in cols:
            if c not in d.index:
                cells.append("")
                continue
            r = d.loc[c]
            paper_s = r["paper_speedup_f207"]
            cells.append(f"{r['instructions_conv'] / 1e6:.1f}M, {r['speedup']:.2f}x (est. {r['est_speedup']:.2f}x; paper "
                         + (f"{paper_s:.2f}x" if paper_s == paper_s and paper_s is not None else "-") + ")"
                         + ("" if r["fits_f207"] else " [no F207 fit]"))
        lines.append(f"| {net} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def min_bits(source: str, networks: list[str], table6_csv: str | Path | None = None) -> dict[str, int]:
    """Per network, Table 6's minimum activation bit width: the paper's (``source="paper"``) or ours
    (``"table6"``: the ``min_bits`` column of tables/table6.csv, the largest over its datasets)."""
    if source == "paper":
        out = {n: v["min_bits"] for (_, n), v in paper.TABLE6.items()}
    elif source == "table6":
        if table6_csv is None or not Path(table6_csv).is_file():
            raise WPError(f"mcu.min_bits is table6 but {table6_csv} is missing: build tables/table6.csv first")
        df = pd.read_csv(table6_csv)
        out = {n: int(d["min_bits"].max()) for n, d in df.groupby("network") if d["min_bits"].notna().any()}
    else:
        raise WPError(f"mcu.min_bits must be paper or table6, not {source!r}")
    missing = [n for n in networks if n not in out]
    if missing:
        raise WPError(f"no Table 6 minimum bit width for {missing} ({source}): add those networks to table 6 or use min_bits: paper")
    return {n: out[n] for n in networks}
