"""Result tables: rows from the metrics JSON files, written as CSV and as a markdown twin."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from wp import WPError, names, paper
from wp.io import atomic_path
from wp.selection import SCORED_ON


def read_metrics(paths: list[str | Path]) -> list[dict]:
    out = []
    for p in paths:
        try:
            out.append(json.loads(Path(p).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise WPError(f"metrics file {p} is missing or corrupt ({exc}): rerun the stage that writes it") from exc
    return out


def notes(dataset: str, network: str, *, selections=(), pooled_conv_vectors: int | None = None,
          pooled_fc: bool | None = None, original: bool = False, extra=()) -> str:
    """What differs between a row of ours and the paper's cell beside it, "; "-separated: the dataset,
    the paper's "original" network (``original``), how the kept epoch was chosen (``selections``: the
    rows' ``selection`` settings), FC pooling and the pooled conv z-vectors against the reference's,
    then ``extra``. Empty where nothing differs that wp can tell."""
    paper_dataset = paper.DATASET.get(network)
    if paper_dataset is None:
        return "; ".join(["not a network of the paper", *extra])
    out = []
    if dataset != paper_dataset:
        out.append(f"dataset {dataset}, the paper's {paper_dataset}")
    if original and network in paper.ORIGINAL_DIFFERS:
        out.append(paper.ORIGINAL_DIFFERS[network])
    kept = sorted({"final epoch" if s == "final" else "best on a held-out split" for s in selections if s})
    if kept:
        out.append(f"kept: {' / '.join(kept)} (paper: best epoch on the test set)")
    if pooled_fc is not None and pooled_fc != (network in paper.FC_POOLED):
        out.append("FC pooled (the reference: not)" if pooled_fc else "FC not pooled (the reference pooled it)")
    ref = paper.REFERENCE_CONV_Z_VECTORS[network]
    if pooled_conv_vectors is not None and pooled_conv_vectors != ref:
        out.append(f"{pooled_conv_vectors:,} conv z-vectors pooled (the reference: {ref:,})")
    return "; ".join([*out, *extra])


def same_images(a: dict, b: dict) -> bool | None:
    """Whether two metrics scored the same images (their ``scored_on`` digests, see
    :func:`wp.selection.digest`); None when either predates the record."""
    if a.get(SCORED_ON) is None or b.get(SCORED_ON) is None:
        return None
    return a[SCORED_ON] == b[SCORED_ON]


def table4(metrics: list[dict]) -> pd.DataFrame:
    """One row per (dataset, network): original, wp{K} for each K found, the paper's values beside, and
    notes on what differs from the paper's cells."""
    rows: dict[tuple[str, str], dict] = {}
    facts: dict[tuple[str, str], dict] = {}
    ks: set[int] = set()
    for m in metrics:
        key = (m["dataset"], m["network"])
        row = rows.setdefault(key, {"dataset": key[0], "network": key[1]})
        fact = facts.setdefault(key, {"selections": set()})
        fact["selections"].add((m.get("hparams") or {}).get("selection"))
        fact.setdefault("scored", set()).add(m.get(SCORED_ON))
        if m["stage"] == "pretrain":
            row["original"] = round(m["test_top1"], 2)
            row["test_images"] = m["test_images"]
        elif m["stage"] == "wp_train":
            ks.add(int(m["k"]))
            row[names.model(m["k"])] = round(m["test_top1"], 2)
            for f in ("pooled_conv_vectors", "pooled_fc"):
                if f in m:
                    fact[f] = m[f]
            row.update(_method_of(m))
        else:
            raise WPError(f"metrics of stage {m['stage']!r} do not belong in table 4: pass pretrain and wp_train metrics")
    columns = ["dataset", "network", "original"] + [names.model(k) for k in sorted(ks)]
    paper_cols = ["paper_original"] + [f"paper_wp{k}" for k in sorted(ks)]
    for (dataset, network), row in rows.items():
        ref = paper.TABLE4.get((dataset, network), {})
        row["paper_original"] = ref.get("original")
        for k in ks:
            row[f"paper_wp{k}"] = ref.get(k)
        fact = dict(facts[(dataset, network)])
        scored = fact.pop("scored") - {None}
        row["notes"] = notes(dataset, network, original=True, **fact,
                             extra=["columns scored on different test images"] if len(scored) > 1 else [])
    df = pd.DataFrame(list(rows.values()), columns=columns + paper_cols + ["test_images", *METHOD, "notes"])
    return df.sort_values(["dataset", "network"]).reset_index(drop=True)


def to_markdown(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.astype(object).itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write(df: pd.DataFrame, csv_path: str | Path, md_path: str | Path | None = None, title: str = "") -> None:
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    if md_path is not None:
        with atomic_path(md_path) as tmp:
            tmp.write_text((f"# {title}\n\n" if title else "") + to_markdown(df))


# the method settings tables 4, 5 and 6 record per row (wp.pool): metrics older than an option lack its
# key and had its default, the paper's method
METHOD = {"pool_scale": "none", "pool_assign": "hard"}


def _method_of(m: dict) -> dict:
    """The :data:`METHOD` columns of a row from its metrics ``m``."""
    return {key: m.get(key, paper_value) for key, paper_value in METHOD.items()}


def _by_network(metrics: list[dict], stage: str) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for m in metrics:
        if m["stage"] != stage:
            raise WPError(f"metrics of stage {m['stage']!r} passed where {stage} metrics belong: pass {stage} metrics")
        out.setdefault((m["dataset"], m["network"]), []).append(m)
    return out


def eval_notes(ms: list[dict], extra=()) -> str:
    """:func:`notes` for a row of ``quant_eval`` metrics (of one dataset and network)."""
    m = ms[0]
    facts = {f: m[f] for f in ("pooled_conv_vectors", "pooled_fc") if f in m}
    fc_note = ["the reference's sweeps ran its pooled FC in float from latent weights"] \
        if m["network"] in paper.FC_POOLED and m.get("pooled_fc") else []
    return notes(m["dataset"], m["network"], selections={x.get("selection") for x in ms}, extra=[*fc_note, *extra], **facts)


def table5(evals: list[dict], floats: list[dict]) -> pd.DataFrame:
    """Accuracy vs LUT bits: per (dataset, network) the float weight-pool network (``wp_train``
    metrics, no quantization; the evaluations' own float score where they scored fewer images) with the
    paper's "No-LUT" column beside it (``paper_no_lut``: the paper's pool network with float activations,
    what ``float`` is), ``no_lut`` (quantized activations, float weights) and ``lut{n}`` for every LUT bit
    width found among the ``quant_eval`` metrics; the paper's values beside, and notes."""
    float_of = {(m["dataset"], m["network"]): m for m in floats}
    groups = _by_network(evals, "quant_eval")
    rows, bits = [], sorted({m["lut_bits"] for m in evals if m["lut_bits"] is not None}, reverse=True)
    for (dataset, network), ms in sorted(groups.items()):
        ref = paper.TABLE5.get((dataset, network), {})
        fl = float_of.get((dataset, network))
        row = {"dataset": dataset, "network": network, "k": ms[0]["k"], "act_bits": ms[0]["act_bits"],
               "float": _r(fl["test_top1"]) if fl else None}
        same = same_images(fl, ms[0]) if fl else None
        if same is False or (same is None and fl and fl.get("test_images") not in (None, ms[0]["test_images"])):
            row["float"] = _r(ms[0]["float_top1"])  # the sweep scored other images (sweeps.test_images): its own float score
        extra = ["sweep points scored on different test images"] \
            if len({m.get(SCORED_ON) for m in ms} - {None}) > 1 else []
        for m in ms:
            row["no_lut" if m["lut_bits"] is None else f"lut{m['lut_bits']}"] = _r(m["test_top1"])
        row["paper_no_lut"] = ref.get("none")
        row.update({f"paper_lut{b}": ref.get(b) for b in bits})
        row["test_images"] = ms[0]["test_images"]
        row.update(_method_of(ms[0]))
        row["notes"] = eval_notes(ms, extra)
        rows.append(row)
    cols = ["dataset", "network", "k", "act_bits", "float", "paper_no_lut", "no_lut"] + [f"lut{b}" for b in bits] \
        + [f"paper_lut{b}" for b in bits] + ["test_images", *METHOD, "notes"]
    return pd.DataFrame(rows, columns=cols)


def min_bits(best: dict[int, float], reference: float, tolerance: float = 1.0) -> int | None:
    """The fewest bits whose accuracy drop (``best``: bits → top-1) below ``reference`` (the widest
    plain evaluation, 8 bits in the paper) is strictly under ``tolerance`` points, as the paper says;
    None when none is. Drops are compared rounded to 1e-6, so a drop of exactly 1 point never counts."""
    within = [b for b, acc in best.items() if round(reference - acc, 6) < tolerance]
    return min(within) if within else None


def table6(evals: list[dict]) -> pd.DataFrame:
    """Accuracy vs activation bits: ``a{B}`` without retraining, ``a{B}_retrained`` after retraining with
    quantized activations, and ``min_bits``: the fewest bits whose drop below the widest plain
    evaluation is strictly under 1 point, counting the better of plain and retrained at each width (as the paper does)."""
    extra = {"resnet_mlperf": ["the reference's activation sweep loaded ResNet-10's pool (a bug)"],
             "tinyconv": ["the reference's activation sweep gave conv2 and conv3 one range (a bug)"]}
    rows = []
    plain_bits = sorted({m["act_bits"] for m in evals if not m["retrained"]}, reverse=True)
    retrained_bits = sorted({m["act_bits"] for m in evals if m["retrained"]}, reverse=True)
    for (dataset, network), ms in sorted(_by_network(evals, "quant_eval").items()):
        ref = paper.TABLE6.get((dataset, network), {})
        plain = {m["act_bits"]: m["test_top1"] for m in ms if not m["retrained"]}
        retrained = {m["act_bits"]: m["test_top1"] for m in ms if m["retrained"]}
        best = {b: max(plain.get(b, -1.0), retrained.get(b, -1.0)) for b in set(plain) | set(retrained)}
        row = {"dataset": dataset, "network": network, "k": ms[0]["k"], "lut_bits": ms[0]["lut_bits"]}
        row.update({f"a{b}": _r(plain.get(b)) for b in plain_bits})
        row.update({f"a{b}_retrained": _r(retrained.get(b)) for b in retrained_bits})
        row["min_bits"] = min_bits(best, plain[max(plain)]) if plain else None
        row.update({f"paper_a{b}": ref.get("plain", {}).get(b) for b in plain_bits})
        row.update({f"paper_a{b}_retrained": ref.get("retrained", {}).get(b) for b in retrained_bits})
        row["paper_min_bits"] = ref.get("min_bits")
        row["test_images"] = ms[0]["test_images"]
        row.update(_method_of(ms[0]))
        mixed = ["columns scored on different test images"] if len({m.get(SCORED_ON) for m in ms} - {None}) > 1 else []
        row["notes"] = eval_notes(ms, [*extra.get(network, []), *mixed])
        rows.append(row)
    cols = ["dataset", "network", "k", "lut_bits"] + [f"a{b}" for b in plain_bits] + [f"a{b}_retrained" for b in retrained_bits] \
        + ["min_bits"] + [f"paper_a{b}" for b in plain_bits] + [f"paper_a{b}_retrained" for b in retrained_bits] \
        + ["paper_min_bits", "test_images", *METHOD, "notes"]
    return pd.DataFrame(rows, columns=cols)


def _r(v):
    return None if v is None else round(float(v), 2)


def distinct_per_input(indices, shape) -> float:
    """Paper Table 8: of a pooled layer with weight ``shape`` (``[out, in, kh, kw]`` or ``[out, in]``) and
    its pool ``indices`` (one per z-vector, order o, y, x, g), the average over its input vectors (an
    8-channel group at one kernel tap) of the number of distinct pool vectors its ``out`` filters use
    there: the table entries one input vector's lookups touch."""
    idx = indices.long().reshape(shape[0], -1)  # [filters, taps x groups]
    ordered = idx.sort(dim=0).values
    distinct = 1 + (ordered[1:] != ordered[:-1]).sum(dim=0)
    return float(distinct.double().mean())


def table8(ckpts: list[dict]) -> pd.DataFrame:
    """One row per pooled layer of every pooled checkpoint: its position among the pooled layers, name,
    filters, input vectors (taps x 8-channel groups), the average number of distinct pool vectors its
    filters use per input vector (``avg_distinct``, and as a share of K), the paper's values beside
    (ResNet-14 on CIFAR-10, K = 64)."""
    rows = []
    for ck in ckpts:
        k = int(ck["k"])
        ref = paper.TABLE8.get((ck["dataset"], ck["network"], k), {})
        for i, name in enumerate(ck["pooled_layers"], 1):
            shape = tuple(ck["state_dict"][f"{name}.weight"].shape)
            avg = distinct_per_input(ck["indices"][name], shape)
            paper_layer, paper_filters, paper_avg = ref.get(name, (None, None, None))
            rows.append({"dataset": ck["dataset"], "network": ck["network"], "k": k, "layer": i, "name": name,
                         "filters": shape[0], "input_vectors": ck["indices"][name].numel() // shape[0],
                         "avg_distinct": round(avg, 2), "avg_distinct_of_k": round(avg / k, 3),
                         "paper_layer": paper_layer, "paper_filters": paper_filters, "paper_avg_distinct": paper_avg})
    cols = ["dataset", "network", "k", "layer", "name", "filters", "input_vectors", "avg_distinct", "avg_distinct_of_k",
            "paper_layer", "paper_filters", "paper_avg_distinct"]
    return pd.DataFrame(rows, columns=cols).astype({"paper_layer": "Int64", "paper_filters": "Int64"})


# --- Table 3: storage of the deployed weight-pool networks ---
def table3(ckpt_paths: list[str | Path], lut_bits: int) -> pd.DataFrame:
    """Storage of the deployed weight-pool networks (paper Table 3), from their checkpoints (``python -m wp table3``).

    Per network: counted parameters (conv and linear weights and biases), the pooled share, index storage
    byte-aligned (one byte per z-vector, what the runtime stores) and bit-packed (``ceil(log2 K)`` bits), the
    LUT (``256·K`` entries of ``lut_bits``), and the compression ratio against int8 and fp32 weights with
    :mod:`wp.compression`: uncompressed bits over (indices + LUT + every unpooled weight and bias at the
    base precision). ``lut_share`` is the LUT's part of the compressed int8 storage.

    Beside it, the paper's accounting (``pm_*``, :func:`wp.paper.table3_accounting`, the columns compared with
    ``paper_*``): ``pm_params`` counts the conv weights but the shortcut convs (the paper's "total param"),
    ``pm_ratio`` prices them and the FC at 8 bits against one byte per pooled z-vector, every other counted
    weight at 8 bits and one ``256·K`` table; ``pm_lut_share`` is the table's share of that storage and
    ``pm_lut_overhead`` the table over (storage + table), the definition that reproduces the paper's printed
    overheads. ``notes`` says where the paper's row describes another network or set-up.

    The paper prices one table. :mod:`wp.lutnet` quantizes it per layer (range = max |T| over the pool
    vectors the layer uses), so a device stores one table per distinct range: ``lut_tables`` counts them
    and ``ratio_int8_deployed`` prices them (what ``python -m wp export`` writes).

    ``pool_scale`` records the checkpoint's pool scale (:mod:`wp.pool`; "none" is the paper's method); with
    one, every footprint also stores each pooled layer's scales (``scale_bytes``, 32-bit floats).
    """
    return pd.DataFrame([table3_row(p, lut_bits) for p in ckpt_paths]).sort_values(["dataset", "network"]).reset_index(drop=True)


def lut_tables(ckpt: dict) -> int:
    """How many different tables the pooled layers read once each quantizes the shared table with
    its own range (layers with the same range read the same codes)."""
    from wp import lut

    table = lut.build_table(ckpt["pool"].double())
    return len({lut.table_range(table, ckpt["indices"][name]) for name in ckpt["pooled_layers"]})


def scale_counts(ckpt: dict) -> dict[str, int] | None:
    """Per pooled layer, how many pool scales the checkpoint stores (None without a pool scale)."""
    from wp import checkpoint

    _, scales = checkpoint.pool_scale(ckpt)
    return None if scales is None else {name: int(scales[name].numel()) for name in ckpt["pooled_layers"]}


def table3_row(ckpt_path: str | Path, lut_bits: int) -> dict:
    """One row of Table 3 (see :func:`table3`) from a pooled checkpoint."""
    from wp import checkpoint, compression, models

    ckpt = checkpoint.load(ckpt_path, kind="pooled")
    model = models.create(ckpt["network"], **ckpt["model_args"])
    k, layers = int(ckpt["k"]), ckpt["pooled_layers"]
    scales = scale_counts(ckpt)
    packed = compression.weight_pool(model, layers, k, lut_bits, packed=True, scales=scales)
    byte = compression.weight_pool(model, layers, k, lut_bits, packed=False, scales=scales)
    n_tables = lut_tables(ckpt)
    deployed = compression.weight_pool(model, layers, k, lut_bits, packed=True, tables=n_tables, scales=scales)
    mods = compression.weight_layers(model)
    pooled = sum(mods[n].weight.numel() for n in layers)
    ref = paper.TABLE3.get((ckpt["dataset"], ckpt["network"]), {})
    pm = paper.table3_accounting(model, layers, k, lut_bits)
    facts = checkpoint.pooled_summary(ckpt["state_dict"], layers)
    extra = [paper.TABLE3_NETWORK_DIFFERS[ckpt["network"]]] if ckpt["network"] in paper.TABLE3_NETWORK_DIFFERS else []
    if facts["pooled_fc"]:
        extra.append("pm_ columns price the FC at 8 bits, as the paper's Table 3")
    return {
        "dataset": ckpt["dataset"], "network": ckpt["network"], "k": k, "lut_bits": lut_bits,
        "pool_scale": checkpoint.pool_scale(ckpt)[0],
        "params": packed.params, "pooled_params": pooled, "pooled_fraction": round(pooled / packed.params, 4),
        "index_bytes": byte.bits_of("index") // 8, "index_bytes_packed": packed.bits_of("index") / 8,
        "lut_bytes": packed.bits_of("lut") / 8, "scale_bytes": packed.bits_of("scale") / 8, "unpooled_bytes_int8": packed.bits_of("weights") / 8 + packed.bits_of("bias") / 8,
        "total_bytes_int8": packed.bytes("int8"),
        "ratio_int8": round(packed.ratio("int8"), 2), "ratio_fp32": round(packed.ratio("fp32"), 2),
        "ratio_int8_byte_indices": round(byte.ratio("int8"), 2),
        "lut_tables": n_tables, "ratio_int8_deployed": round(deployed.ratio("int8"), 2),
        "pm_params": pm["params"], "paper_params": ref.get("params"),
        "pm_ratio": round(pm["ratio"], 2), "paper_ratio": ref.get("ratio"),
        "lut_share": round(100 * packed.bits_of("lut") / packed.bits("int8"), 1), "pm_lut_share": round(pm["lut_share"], 1),
        "pm_lut_overhead": round(pm["lut_overhead_as_printed"], 1), "paper_lut_overhead": ref.get("lut_overhead"),
        # FC pooling is no difference here: the paper's Table 3 priced the FC uncompressed in every network
        "notes": notes(ckpt["dataset"], ckpt["network"], pooled_conv_vectors=facts["pooled_conv_vectors"], extra=extra),
    }
