"""The deployable artifact (wp.export, `python -m wp export`): complete and exact.

1. The network rebuilt from the .npz + .json alone (and the registry's architecture) gives the same
   outputs as the network lutnet builds from the checkpoint, on real images.
2. A C program that includes the generated header computes a pooled layer bit-serially from the table
   codes and indices, and its integer result equals wp.lut.lut_conv2d's.
3. Bad input gives one-line errors and leaves existing outputs as they were.
"""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import REPO, copy_workflow, planned, pooled_model, snakemake, stage_kw

from wp import WPError, c_header, checkpoint, data, export, export_load, lut, lutnet, pool, selection, tables
from wp.selection import splits
from wp.settings import default
from wp.stages import act_train, quant_eval
from wp.stages import export as export_stage
from wp.train import as_float, hparams

HP = hparams({"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "cosine"})


@pytest.fixture(scope="module")
def tiny_wp(pooled_tinyconv):
    """tinyconv really trained on digits, pooled with K=32 (5-bit packed indices) and retrained."""
    return pooled_tinyconv(32) / "wp32.pt"


def pooled_checkpoint(network, digits_h5, out, k=64, seed=0):
    """A cheap pooled checkpoint of ``network`` for digits: random weights projected onto a random pool
    (conftest's pooled_model), BatchNorm statistics taken from digits training images."""
    ds = data.read(digits_h5)
    args = {"in_channels": ds.channels, "num_classes": ds.num_classes, "image_size": ds.image_size}
    model, centers, indices = pooled_model(network, seed, k, torch.float32, ds.image_size, ds.channels)
    model.train()
    with torch.no_grad():
        for start in range(0, 512, 128):
            model(as_float(torch.from_numpy(ds.train.images[start:start + 128])))
    checkpoint.save(out, model.eval(), network=network, dataset=ds.name, model_args=args, kind="pooled",
                    pool=centers, pooled_layers=list(indices), indices=indices, k=k, selection=recorded_images(ds))
    return out


def recorded_images(ds):
    """The selection entry of a hand-made pooled checkpoint: the images wp_train with ``HP`` would record."""
    return selection.record(selection.select(ds, HP, 0, "wp_train"))


def run_export(digits_h5, ckpt, network, out_dir, act_bits=8, lut_bits=8, **kw):
    stem = out_dir / f"{network}_a{act_bits}_lut{lut_bits}"
    m = export_stage.run(digits_h5, ckpt, network, act_bits, lut_bits, HP, f"{stem}.npz", f"{stem}.json", f"{stem}.h",
                         **stage_kw("export", seed=0, device="cpu", **kw))
    return m, stem


def lutnet_from_checkpoint(digits_h5, ckpt_path, network, act_bits, lut_bits, **kw):
    """The deployed network as quant_eval builds it, directly from the checkpoint."""
    ckpt, model = lutnet.load_pooled(ckpt_path, network, torch.device("cpu"))
    train, _, _ = splits(data.read(digits_h5), {**HP, "selection": "final"}, 0, torch.device("cpu"))
    ranges = lutnet.act_ranges(ckpt, model, train, kw.pop("calibration_images", 512), 0, bits=act_bits,
                                   method=kw.pop("act_range", "mse"))
    return lutnet.convert(model, ckpt["pool"], ckpt["indices"], ranges, act_bits, lut_bits,
                          scales=checkpoint.pool_scale(ckpt)[1],
                          **{"lut_mode": default("sweeps.lut_mode"), "signed_mode": default("sweeps.signed_mode"), **kw})


def digits_images(digits_h5, n=128):
    return as_float(torch.from_numpy(data.read(digits_h5).test.images[:n]))


# ---------------------------------------------------------------------------------------------------
# 1. the artifact alone rebuilds the deployed network
# ---------------------------------------------------------------------------------------------------

def test_tinyconv_artifact_rebuilds_the_lut_network(digits_h5, tiny_wp, tmp_path):
    m, stem = run_export(digits_h5, tiny_wp, "tinyconv", tmp_path)
    x = digits_images(digits_h5)
    with torch.no_grad():
        ref = lutnet_from_checkpoint(digits_h5, tiny_wp, "tinyconv", 8, 8)(x)
        got = export_load.load(f"{stem}.npz", f"{stem}.json")(x)
    assert torch.equal(got, ref)
    assert sum(isinstance(mod, lutnet.LUTLayer) for mod in export_load.load(f"{stem}.npz", f"{stem}.json").modules()) == 2
    # the ranges are quant_eval's (same seeded calibration sample) and the network is really accurate
    q = quant_eval.run(digits_h5, tiny_wp, "tinyconv", 8, 8, HP, tmp_path / "q.json", **stage_kw("quant_eval", seed=0, device="cpu"))
    layers = {e["name"]: e for e in m["layers"]}
    assert {n: [layers[n]["act_range"], layers[n]["act_signed"]] for n in layers} == q["act_ranges"]
    labels = torch.from_numpy(data.read(digits_h5).test.labels[:128]).long()
    assert (got.argmax(1) == labels).float().mean() > 0.6

    # what the files hold
    arrays = np.load(f"{stem}.npz")
    manifest = json.loads(stem.with_suffix(".json").read_text())
    assert manifest["k"] == 32 and manifest["index_bits"] == 5 and manifest["lut_dtype"] == "int8"
    for e in manifest["layers"]:
        idx = arrays[e["indices"]]
        assert idx.dtype == np.uint8 and idx.shape == (e["out_channels"], *e["kernel"], e["in_channels"] // 8)
        assert arrays[e["indices_packed"]].size == -(-idx.size * 5 // 8)
        table = arrays[e["lut"]]
        assert table.shape == (256, 32) and table.dtype == np.int8 and (table[0] == 0).all()
        assert e["act_signed"]  # tinyconv's pooled convs follow a BatchNorm
        assert 2.0 ** e["act_shift"] == e["act_step"] and e["scale"] == e["act_step"] * e["lut_step"]
    ckpt = checkpoint.load(tiny_wp)
    sd_names = {p["name"] for p in manifest["params"]}
    assert sd_names | set(manifest["omitted"]) == set(ckpt["state_dict"])
    assert {"conv2.weight", "conv3.weight"} <= set(manifest["omitted"]) and "conv1.weight" in sd_names
    assert all(arrays[p["array"]].dtype == np.float32 for p in manifest["params"])


def test_storage_is_table3s_calculator(digits_h5, tiny_wp, tmp_path):
    m, stem = run_export(digits_h5, tiny_wp, "tinyconv", tmp_path)
    st = m["storage"]
    row = tables.table3_row(tiny_wp, lut_bits=8)
    assert st["table3"]["bytes_int8"] == row["total_bytes_int8"]
    assert st["table3"]["index_bytes_packed"] == st["index_bytes_packed"] == row["index_bytes_packed"]
    assert st["table3"]["lut_bytes"] == row["lut_bytes"] == 256 * 32
    # lutnet quantizes the table per layer: each distinct table is stored, one 256*K table each
    assert st["tables"] == len(m["luts"]) and st["lut_bytes"] == st["tables"] * 256 * 32
    assert st["bytes_int8"] == st["table3"]["bytes_int8"] + (st["tables"] - 1) * 256 * 32
    assert st["unpooled_bytes_int8"] == row["unpooled_bytes_int8"]
    assert row["lut_tables"] == st["tables"] and row["ratio_int8_deployed"] == round(st["ratio_int8"], 2)
    assert st["file_bytes"]["indices"] == row["index_bytes"]
    assert m["files"]["npz_bytes"] == (tmp_path / f"{stem.name}.npz").stat().st_size


@pytest.mark.parametrize("network", ["resnet_mlperf", "mobilenet_v2"])
def test_resnet_and_mobilenet_artifacts_rebuild_the_lut_network(network, digits_h5, tmp_path):
    ckpt = pooled_checkpoint(network, digits_h5, tmp_path / f"{network}.pt")
    m, stem = run_export(digits_h5, ckpt, network, tmp_path, act_bits=6, lut_bits=8, calibration_images=64)
    x = digits_images(digits_h5, 64)
    with torch.no_grad():
        ref = lutnet_from_checkpoint(digits_h5, ckpt, network, 6, 8, calibration_images=64)(x)
        got = export_load.load(f"{stem}.npz", f"{stem}.json")(x)
    assert torch.equal(got, ref)
    row = tables.table3_row(ckpt, lut_bits=8)  # Table 3 counts the tables the artifact stores
    assert row["lut_tables"] == m["storage"]["tables"] == len(m["luts"])
    assert row["ratio_int8_deployed"] == round(m["storage"]["ratio_int8"], 2) <= row["ratio_int8"]
    signed = {e["act_signed"] for e in m["layers"]}
    assert signed == ({False} if network == "resnet_mlperf" else {True, False})  # after ReLU / after a BN
    if network == "resnet_mlperf":  # (mobilenet_v2's strided convs are depthwise: not pooled)
        assert any(e["stride"] == [2, 2] for e in m["layers"])


def test_retrained_checkpoint_exports_its_own_ranges(digits_h5, tiny_wp, tmp_path):
    r4 = act_train.run(digits_h5, tiny_wp, "tinyconv", 4, HP, tmp_path / "r4.pt", tmp_path / "r4.json", **stage_kw("act_train", seed=0, device="cpu"))
    m, stem = run_export(digits_h5, tmp_path / "r4.pt", "tinyconv", tmp_path, act_bits=4, lut_bits=6, act_range="max")
    sd = checkpoint.load(tmp_path / "r4.pt")["state_dict"]
    assert m["calibration"] == "checkpoint" and m["retrained"]
    assert {e["name"]: [e["act_range"], e["act_signed"]] for e in m["layers"]} == r4["act_ranges"]
    assert all(e["act_range"] == float(sd[f"{e['name']}.act_quant.act_range"]) for e in m["layers"])
    x = digits_images(digits_h5, 64)
    with torch.no_grad():
        assert torch.equal(export_load.load(f"{stem}.npz", f"{stem}.json")(x),
                           lutnet_from_checkpoint(digits_h5, tmp_path / "r4.pt", "tinyconv", 4, 6)(x))
    with pytest.raises(WPError, match="retrained for 4-bit activations, not 8"):
        run_export(digits_h5, tmp_path / "r4.pt", "tinyconv", tmp_path / "x", act_bits=8)


def test_signed_split_and_reference_table_modes(digits_h5, tiny_wp, tmp_path):
    """The other lutnet switches: signed codes as two lookups per bit, the reference's 2^n+1-level table
    (8-bit codes up to ±255: int16)."""
    kw = {"lut_mode": "reference", "signed_mode": "split"}
    m, stem = run_export(digits_h5, tiny_wp, "tinyconv", tmp_path, act_bits=5, **kw)
    assert m["lut_dtype"] == "int16" and m["signed_mode"] == "split"
    x = digits_images(digits_h5, 64)
    with torch.no_grad():
        assert torch.equal(export_load.load(f"{stem}.npz", f"{stem}.json")(x),
                           lutnet_from_checkpoint(digits_h5, tiny_wp, "tinyconv", 5, 8, **kw)(x))


def test_pooled_linear_layer_exports(digits_h5, tmp_path):
    """pool_fc: a pooled Linear runs from the table as a 1x1 convolution, and exports as one."""
    ck = checkpoint.load(pooled_checkpoint("tinyconv", digits_h5, tmp_path / "t.pt"))
    model = checkpoint.build(ck)
    fc = [n for n, mod in model.named_modules() if isinstance(mod, nn.Linear) and pool.is_poolable(mod, True)]
    assert fc
    for name in fc:
        mod = model.get_submodule(name)
        w, idx = pool.project(mod.weight.data, ck["pool"])
        mod.weight.data.copy_(w)
        ck["indices"][name] = idx
    checkpoint.save(tmp_path / "fc.pt", model, network="tinyconv", dataset="digits", model_args=ck["model_args"],
                    kind="pooled", pool=ck["pool"], pooled_layers=ck["pooled_layers"] + fc, indices=ck["indices"], k=ck["k"],
                    selection=ck["selection"])
    m, stem = run_export(digits_h5, tmp_path / "fc.pt", "tinyconv", tmp_path)
    assert [e["kind"] for e in m["layers"] if e["name"] in fc] == ["linear"] * len(fc)
    x = digits_images(digits_h5, 32)
    with torch.no_grad():
        assert torch.equal(export_load.load(f"{stem}.npz", f"{stem}.json")(x),
                           lutnet_from_checkpoint(digits_h5, tmp_path / "fc.pt", "tinyconv", 8, 8)(x))


def test_index_packing_round_trips():
    rng = np.random.default_rng(0)
    for bits in (1, 3, 5, 6, 7, 8, 9):
        idx = rng.integers(0, 1 << bits, size=1001)
        packed = export.pack_indices(idx, bits)
        assert packed.dtype == np.uint8 and packed.size == -(-1001 * bits // 8)
        assert np.array_equal(export.unpack_indices(packed, bits, 1001), idx)
    assert export.pack_indices(np.array([1, 2, 3]), 2).tolist() == [0b111001]  # 01, 10, 11: LSB first


def test_c_identifiers():
    assert c_header.c_identifier("layer1.0.conv1.weight") == "layer1_0_conv1_weight"
    assert c_header.c_identifier("0.weight") == "p_0_weight"
    assert c_header.c_identifier("int") == "p_int"
    assert c_header.c_identifier("_x") == "p__x"


# ---------------------------------------------------------------------------------------------------
# 2. the table arithmetic is exact in C
# ---------------------------------------------------------------------------------------------------

C_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "{header}"
#include "lut_layer.c"
#define L(x) {prefix}_##x

int main(int argc, char **argv)
{{
    int h = atoi(argv[2]), w = atoi(argv[3]);
    long n = (long)L(IN_CHANNELS) * h * w;
    int32_t *codes = malloc(n * sizeof *codes);
    FILE *f = fopen(argv[1], "r");
    for (long i = 0; i < n; i++)
        if (fscanf(f, "%d", &codes[i]) != 1)
            return 2;
    fclose(f);
    for (long i = 0; i < L(Z_VECTORS); i++) /* the bit-packed indices are the byte indices */
        if (wp_packed_index(L(INDICES_PACKED), i, WP_INDEX_BITS) != L(INDICES)[i])
            return 3;
    int oh = (h + 2 * L(PAD_H) - L(KERNEL_H)) / L(STRIDE_H) + 1, ow = (w + 2 * L(PAD_W) - L(KERNEL_W)) / L(STRIDE_W) + 1;
    int64_t *out = malloc((long)L(OUT_CHANNELS) * oh * ow * sizeof *out);
    wp_lut_conv2d(codes, h, w, L(IN_CHANNELS), L(OUT_CHANNELS), L(KERNEL_H), L(KERNEL_W), L(STRIDE_H), L(STRIDE_W),
                  L(PAD_H), L(PAD_W), L(INDICES), L(LUT), WP_K, L(ACT_BITS), L(ACT_SIGNED), WP_SIGNED_SPLIT, out);
    for (long i = 0; i < (long)L(OUT_CHANNELS) * oh * ow; i++)
        printf("%lld\n", (long long)out[i]);
    return 0;
}}
"""


def c_layer_result(stem, entry, codes, work):
    """Compile the C program for one layer of the header ``stem``.h and run it on ``codes [C, H, W]``."""
    prefix = "WP_" + entry["ident"].upper()
    (work / "main.c").write_text(C_MAIN.format(header=f"{stem}.h", prefix=prefix))
    np.savetxt(work / "codes.txt", codes.reshape(-1).numpy(), fmt="%d")
    exe = work / "layer"
    cc = subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wno-unused-const-variable", "-Wno-unused-function",
                         f"-I{stem.parent}", f"-I{c_header.C_SOURCE.parent}", str(work / "main.c"), "-o", str(exe)],
                        capture_output=True, text=True)
    assert cc.returncode == 0 and not cc.stderr, cc.stderr[-3000:]
    r = subprocess.run([str(exe), str(work / "codes.txt"), str(codes.shape[1]), str(codes.shape[2])],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.returncode
    return torch.tensor([int(v) for v in r.stdout.split()], dtype=torch.int64)


def python_layer_result(stem, entry, codes, signed_mode):
    arrays = np.load(f"{stem}.npz")
    return lut.lut_conv2d(codes[None], torch.from_numpy(arrays[entry["indices"]].astype(np.int64)),
                          torch.from_numpy(arrays[entry["lut"]].astype(np.int64)),
                          (entry["out_channels"], entry["in_channels"], *entry["kernel"]), entry["stride"],
                          entry["padding"], entry["act_bits"], entry["act_signed"], signed_mode)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (gcc)")
@pytest.mark.parametrize("network,signed_mode,act_bits", [("tinyconv", "twos", 8), ("tinyconv", "split", 5),
                                                          ("resnet_mlperf", "twos", 4)])
def test_c_layer_equals_lut_conv2d(network, signed_mode, act_bits, digits_h5, tiny_wp, tmp_path):
    ckpt = tiny_wp if network == "tinyconv" else pooled_checkpoint(network, digits_h5, tmp_path / "n.pt", k=16)
    m, stem = run_export(digits_h5, ckpt, network, tmp_path, act_bits=act_bits, signed_mode=signed_mode)
    header = stem.with_suffix(".h").read_text()
    assert re.search(r"static const uint8_t \w+_indices\[\d+\]", header) and "static const int8_t lut_0[" in header
    assert "static const float " in header and "#define WP_K " in header
    # tinyconv: a signed 5x5 conv with padding; resnet_mlperf: an unsigned 3x3 conv with stride 2
    entry = next(e for e in m["layers"] if network == "tinyconv" or e["stride"] == [2, 2])
    lo, hi = (-(1 << (act_bits - 1)), 1 << (act_bits - 1)) if entry["act_signed"] else (0, 1 << act_bits)
    codes = torch.randint(lo, hi, (entry["in_channels"], 7, 6), generator=torch.Generator().manual_seed(1))
    codes[:, 0, 0] = lo  # the extremes of the code range
    codes[:, 1, 1] = hi - 1
    expected = python_layer_result(stem, entry, codes, signed_mode)
    got = c_layer_result(stem, entry, codes, tmp_path)
    assert got.numel() == expected.numel() and torch.equal(got, expected.reshape(-1))
    assert expected.abs().max() > 0


# ---------------------------------------------------------------------------------------------------
# 3. bad input: one line, outputs untouched
# ---------------------------------------------------------------------------------------------------

def test_bad_input_is_refused_and_outputs_stay(digits_h5, trained_tinyconv, tiny_wp, tmp_path, monkeypatch):
    _, stem = run_export(digits_h5, tiny_wp, "tinyconv", tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cases = [
        ({"ckpt": trained_tinyconv}, "is a float model, this stage needs a pooled one"),
        ({"network": "resnet_10"}, "holds network 'tinyconv', not 'resnet_10'"),
        ({"act_bits": 1}, "activation bits 1 out of range"),
        ({"lut_bits": None}, "LUT bits none cannot be exported"),
        ({"lut_bits": 17}, "LUT bits 17 cannot be exported"),
    ]
    for kw, match in cases:
        args = {"ckpt": tiny_wp, "network": "tinyconv", "act_bits": 8, "lut_bits": 8, **kw}
        with pytest.raises(WPError, match=match):
            export_stage.run(digits_h5, args["ckpt"], args["network"], args["act_bits"], args["lut_bits"], HP,
                             f"{stem}.npz", f"{stem}.json", f"{stem}.h", **stage_kw("export", device="cpu"))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(export.np, "savez", boom)  # fails after the calibration, while writing
    with pytest.raises(OSError, match="disk full"):
        run_export(digits_h5, tiny_wp, "tinyconv", tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files, nothing changed

    # a checkpoint of another network under this network's name: its weights do not fit
    other = pooled_checkpoint("resnet_mlperf", digits_h5, tmp_path / "other" / "o.pt", k=16)
    ck = checkpoint.load(other)
    torch.save({**ck, "network": "tinyconv"}, tmp_path / "other" / "claims_tinyconv.pt")
    with pytest.raises(WPError, match="checkpoint weights do not fit network 'tinyconv'"):
        run_export(digits_h5, tmp_path / "other" / "claims_tinyconv.pt", "tinyconv", tmp_path / "other")
    # an artifact whose arrays do not match its manifest
    (tmp_path / "other" / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(WPError, match="is not a readable .npz"):
        export_load.load(tmp_path / "other" / "bad.npz", f"{stem}.json")
    np.savez(tmp_path / "other" / "short.npz", conv1_weight=np.zeros(3, np.float32))
    with pytest.raises(WPError, match="does not match"):
        export_load.load(tmp_path / "other" / "short.npz", f"{stem}.json")


def test_cli_export_and_bad_bits(digits_h5, tiny_wp, tmp_path):
    base = [sys.executable, "-m", "wp", "export", "--data", str(digits_h5), "--checkpoint", str(tiny_wp),
            "--network", "tinyconv", "--act-bits", "8", "--device", "cpu", "--calibration-images", "64",
            "--out-npz", str(tmp_path / "a.npz"), "--out-json", str(tmp_path / "a.json"), "--out-h", str(tmp_path / "a.h")]
    r = subprocess.run(base + ["--lut-bits", "none"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "wp: error: LUT bits none cannot be exported: the device runs from integer table codes, choose 2..16"]
    r = subprocess.run(base + ["--lut-bits", "eight"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
    r = subprocess.run(base + ["--lut-bits", "8", "--seed", "3"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "a.json").read_text())
    assert manifest["provenance"]["seed"] == 3 and manifest["files"]["h"] == "a.h"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h", "a.json", "a.npz"]


# ---------------------------------------------------------------------------------------------------
# the workflow: rule export, target all_exports (not in the default target)
# ---------------------------------------------------------------------------------------------------

WF_HP = {"epochs": 1, "batch_size": 32, "train_subset": 300, "test_subset": 100}
WF_CONFIG = {"recipe": "smoke", "device": "cpu", "threads": 1, "experiments": {"digits": ["tinyconv"]}, "pool_sizes": [8],
             "hparams": {"pretrain": WF_HP, "wp_train": WF_HP, "act_train": WF_HP}, "compare": {"methods": ["wp"]},
             "sweeps": {"pool_size": 8, "calibration_images": 64}, "export": {"act_bits": 6}}


@pytest.mark.slow
def test_snakemake_all_exports(tmp_path):
    work = copy_workflow(tmp_path)
    assert "export" not in planned(work, WF_CONFIG)  # the default target does not export
    r = snakemake(work, "all_exports", config=WF_CONFIG)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = work / "results" / "digits" / "tinyconv" / "export" / "wp8"
    assert sorted(p.name for p in out.iterdir()) == ["a6_lut8.h", "a6_lut8.json", "a6_lut8.npz"]
    manifest = json.loads((out / "a6_lut8.json").read_text())
    assert (manifest["k"], manifest["act_bits"], manifest["lut_bits"]) == (8, 6, 8)
    assert manifest["calibration"] == "mse over 64 training images"
    assert (work / "results" / "logs" / "export" / "digits" / "tinyconv" / "wp8" / "a6_lut8.log").exists()
    x = digits_images(work / "results" / "digits" / "data.h5", 16)
    with torch.no_grad():
        assert export_load.load(out / "a6_lut8.npz", out / "a6_lut8.json")(x).shape == (16, 10)
    assert "Nothing to be done" in snakemake(work, "-n", "all_exports", config=WF_CONFIG).stdout
    # another table width reruns only the export; retrained: the act_train job, then its export
    jobs = planned(work, {**WF_CONFIG, "export": {"act_bits": 6, "lut_bits": 4}}, "all_exports")
    assert jobs == {"export": ["wildcards: dataset=digits, network=tinyconv, model=wp8, abits=6, lbits=4"], "all_exports": []}
    jobs = planned(work, {**WF_CONFIG, "export": {"act_bits": 6, "retrained": True}}, "all_exports")
    assert sorted(jobs) == ["act_train", "all_exports", "export"] and "model=wp8_a6" in jobs["export"][0]
    r = snakemake(work, "-n", "all_exports", config={**WF_CONFIG, "export": {"networks": ["resnet_10"]}})
    assert r.returncode != 0 and "export.networks: 'resnet_10' is in no experiment" in r.stdout + r.stderr



# ---------------------------------------------------------------------------------------------------
# 4. a pool scale (pool_scale) on a network without BatchNorm: exact through lutnet, artifact and C
# ---------------------------------------------------------------------------------------------------

@pytest.fixture()
def bn_free(monkeypatch):
    """examples/bn_free.py registered for this test only."""
    from wp import models
    from wp.models import registry

    for name in ("_BUILDERS", "_ORIGIN", "_LOADED"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    models.load_file(REPO / "examples" / "bn_free.py")


def scaled_checkpoint(digits_h5, out, mode, k=16):
    """cnn_nobn (conv biases, no BatchNorm) with random weights made scaled pool vectors of a random
    pool: a pooled checkpoint of pool_scale ``mode``."""
    ds = data.read(digits_h5)
    args = {"in_channels": ds.channels, "num_classes": ds.num_classes, "image_size": ds.image_size}
    torch.manual_seed(3)
    model = models_create("cnn_nobn", args)
    layers = pool.pooled_layers(model)
    centers = torch.randn(k, 8) * 0.3
    indices, scales = {}, {}
    for name in layers:
        layer = model.get_submodule(name)
        _, indices[name] = pool.project(layer.weight.data, centers)
        scales[name] = torch.rand(1 if mode == "layer" else layer.out_channels) + 0.5
        layer.weight.data.copy_(pool.deployed_weight(centers, indices[name], layer.weight.shape, scales[name]))
    checkpoint.save(out, model, network="cnn_nobn", dataset=ds.name, model_args=args, kind="pooled", pool=centers,
                    pooled_layers=layers, indices=indices, k=k, selection=recorded_images(ds),
                    **checkpoint.scale_entries(mode, scales))
    return out


def models_create(name, args):
    from wp import models

    return models.create(name, **args)


@pytest.mark.parametrize("mode", ["layer", "channel", "channel_learned"])
def test_pool_scales_travel_exactly_into_the_artifact_and_table3(mode, bn_free, digits_h5, tmp_path):
    ckpt = scaled_checkpoint(digits_h5, tmp_path / "s.pt", mode)
    m, stem = run_export(digits_h5, ckpt, "cnn_nobn", tmp_path, calibration_images=64)
    x = digits_images(digits_h5, 64)
    with torch.no_grad():
        ref = lutnet_from_checkpoint(digits_h5, ckpt, "cnn_nobn", 8, 8, calibration_images=64)(x)
        got = export_load.load(f"{stem}.npz", f"{stem}.json")(x)
    assert torch.equal(got, ref)
    arrays, ck = np.load(f"{stem}.npz"), checkpoint.load(ckpt)
    assert m["pool_scale"] == mode
    for e in m["layers"]:
        assert np.array_equal(arrays[e["pool_scale"]], ck["scales"][e["name"]].numpy()) and e["bias"] is not None
        assert e["pool_scales"] == (1 if mode == "layer" else e["out_channels"])
    row = tables.table3_row(ckpt, lut_bits=8)
    n_scales = sum(e["pool_scales"] for e in m["layers"])
    assert row["pool_scale"] == mode and row["scale_bytes"] == 4 * n_scales == m["storage"]["scale_bytes"]
    assert m["storage"]["table3"]["bytes_int8"] == row["total_bytes_int8"]
    assert m["storage"]["file_bytes"]["scale"] == 4 * n_scales
    assert row["ratio_int8_deployed"] == round(m["storage"]["ratio_int8"], 2)


C_REQUANT = r"""
#include <stdio.h>
#include <stdlib.h>
#include "{header}"
#include "lut_layer.c"
#define L(x) {prefix}_##x

int main(int argc, char **argv)
{{
    int h = atoi(argv[2]), w = atoi(argv[3]);
    long n = (long)L(IN_CHANNELS) * h * w;
    int32_t *codes = malloc(n * sizeof *codes);
    FILE *f = fopen(argv[1], "r");
    for (long i = 0; i < n; i++)
        if (fscanf(f, "%d", &codes[i]) != 1)
            return 2;
    fclose(f);
    int oh = (h + 2 * L(PAD_H) - L(KERNEL_H)) / L(STRIDE_H) + 1, ow = (w + 2 * L(PAD_W) - L(KERNEL_W)) / L(STRIDE_W) + 1;
    int64_t *acc = malloc((long)L(OUT_CHANNELS) * oh * ow * sizeof *acc);
    float *out = malloc((long)L(OUT_CHANNELS) * oh * ow * sizeof *out);
    wp_lut_conv2d(codes, h, w, L(IN_CHANNELS), L(OUT_CHANNELS), L(KERNEL_H), L(KERNEL_W), L(STRIDE_H), L(STRIDE_W),
                  L(PAD_H), L(PAD_W), L(INDICES), L(LUT), WP_K, L(ACT_BITS), L(ACT_SIGNED), WP_SIGNED_SPLIT, acc);
    wp_requantize(acc, L(OUT_CHANNELS), (long)oh * ow, L(SCALE), L(POOL_SCALE), L(POOL_SCALES), L(BIAS), out);
    for (long i = 0; i < (long)L(OUT_CHANNELS) * oh * ow; i++)
        printf("%.9g\n", out[i]);
    return 0;
}}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (gcc)")
@pytest.mark.parametrize("mode", ["layer", "channel"])
def test_c_requantization_with_pool_scales_equals_the_lut_layer(mode, bn_free, digits_h5, tmp_path):
    """acc · scale · pool_scale[o] + bias[o] in C, bit for bit the float32 output of the LUT layer the
    artifact rebuilds (input: the codes times the activation step, which the layer quantizes back)."""
    ckpt = scaled_checkpoint(digits_h5, tmp_path / "s.pt", mode)
    m, stem = run_export(digits_h5, ckpt, "cnn_nobn", tmp_path, calibration_images=64)
    entry = m["layers"][-1]
    assert not entry["act_signed"]  # after a ReLU
    codes = torch.randint(0, 1 << 8, (entry["in_channels"], 5, 6), generator=torch.Generator().manual_seed(2))
    prefix = "WP_" + entry["ident"].upper()
    (tmp_path / "main.c").write_text(C_REQUANT.format(header=f"{stem}.h", prefix=prefix))
    np.savetxt(tmp_path / "codes.txt", codes.reshape(-1).numpy(), fmt="%d")
    exe = tmp_path / "requant"
    cc = subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wno-unused-const-variable", "-Wno-unused-function",
                         f"-I{stem.parent}", f"-I{c_header.C_SOURCE.parent}", str(tmp_path / "main.c"), "-o", str(exe)],
                        capture_output=True, text=True)
    assert cc.returncode == 0 and not cc.stderr, cc.stderr[-3000:]
    r = subprocess.run([str(exe), str(tmp_path / "codes.txt"), "5", "6"], capture_output=True, text=True)
    assert r.returncode == 0, r.returncode
    got = torch.tensor(np.array([np.float32(v) for v in r.stdout.split()]))
    layer = export_load.load(f"{stem}.npz", f"{stem}.json").get_submodule(entry["name"])
    x = (codes.double() * entry["act_step"]).float()[None]
    with torch.no_grad():
        expected = layer(x).reshape(-1)
    assert torch.equal(got, expected) and expected.abs().max() > 0
    # a requantization scale that is no float32 goes into the header with all its double digits
    assert float(np.float32(entry["scale"])) != entry["scale"] and f"{entry['scale']:.17g}" in stem.with_suffix(".h").read_text()
