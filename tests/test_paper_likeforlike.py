"""Paper columns that compare the same thing: Table 3 priced the paper's way, per-row notes, Table 5's
No-LUT placement, Table 6's min_bits rule, Table 8, and act_train starting from the latent weights."""

import json

import pandas as pd
import pytest
import torch

from conftest import REPO, stage_kw

from wp import WPError, checkpoint, config as wpconfig, models, paper, pool, tables
from wp.stages import act_train, table3, table8
from wp.train import hparams

HP = hparams({"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "cosine"})
PAPER_CFG = wpconfig.load(REPO / "config" / "paper.yaml")


def paper_selected(net, in_channels=3, num_classes=10, image_size=32):
    model = models.create(net, in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    return model, pool.pooled_layers(model, selection=wpconfig.layer_selection(PAPER_CFG, net), network=net)


@pytest.mark.parametrize("net, ratio, params, printed_overhead", [("resnet_mlperf", 4.43, 170928, 29.7),
                                                                  ("resnet_10", 6.51, 665280, 13.8),
                                                                  ("resnet_14", 7.55, 2729664, 4.3)])
def test_paper_accounting_reproduces_table3_for_cifar_resnets(net, ratio, params, printed_overhead):
    model, layers = paper_selected(net)  # CIFAR-shaped: 3 channels, 32 px, 10 classes
    pm = paper.table3_accounting(model, layers, k=64, lut_bits=8)
    assert pm["ratio"] == pytest.approx(ratio, abs=0.01)
    assert pm["params"] == params == paper.TABLE3[("cifar10", net)]["params"]
    assert pm["lut_overhead_as_printed"] == pytest.approx(printed_overhead, abs=0.05)
    assert pm["lut_share"] > pm["lut_overhead_as_printed"]


def test_paper_accounting_by_hand_for_resnet_10():
    model, layers = paper_selected("resnet_10")
    pm = paper.table3_accounting(model, layers, k=64)
    # 3x3 convs: stem 3*64*9 = 1,728 + 8 block convs 663,552; fc 128*10 + 10 bias; shortcut 64*128 left out
    original = 1728 + 663552 + 1290
    compressed = 663552 // 8 + 1728 + 1290 + 256 * 64
    assert pm["bytes_uncompressed"] == original and pm["bytes_compressed"] == compressed
    assert pm["ratio"] == original / compressed
    # pooling the shortcut too (config.yaml's default) changes nothing: the paper does not count it
    assert paper.table3_accounting(model, pool.pooled_layers(model), 64)["ratio"] == pm["ratio"]


def test_paper_tinyconv_row_is_a_3_channel_10_class_tinyconv():
    model, layers = paper_selected("tinyconv", 3, 10, 28)
    pm = paper.table3_accounting(model, layers, k=64)
    assert round(pm["ratio"], 2) == paper.TABLE3[("quickdraw100", "tinyconv")]["ratio"]
    assert round(pm["lut_overhead_as_printed"], 1) == paper.TABLE3[("quickdraw100", "tinyconv")]["lut_overhead"]
    ours, layers = paper_selected("tinyconv", 1, 100, 28)  # what wp trains on QuickDraw-100
    assert round(paper.table3_accounting(ours, layers, 64)["ratio"], 2) != 2.32


def test_table3_carries_the_paper_accounting_and_notes(pooled_tinyconv, tmp_path):
    df = table3.run([pooled_tinyconv(16) / "wp16.pt"], tmp_path / "t3.csv", tmp_path / "t3.md", lut_bits=8)
    row = df.iloc[0]
    cols = list(df.columns)
    assert cols.index("pm_ratio") + 1 == cols.index("paper_ratio") and cols.index("pm_params") + 1 == cols.index("paper_params")
    assert cols.index("pm_lut_overhead") + 1 == cols.index("paper_lut_overhead") and cols[-1] == "notes"
    assert row["pm_params"] == 32 * 32 * 25 + 64 * 32 * 25 + 1 * 32 * 25  # every conv: none is a shortcut
    assert row["pm_ratio"] > 0 and row["pm_lut_overhead"] < row["pm_lut_share"]
    assert "dataset digits, the paper's quickdraw100" in row["notes"]
    assert "3-channel, 10-class TinyConv" in row["notes"]
    assert "|" in (tmp_path / "t3.md").read_text() and "notes" in (tmp_path / "t3.md").read_text()


def _eval(net, bits, lut, top1, retrained=False, dataset="cifar10", **kw):
    return {"stage": "quant_eval", "dataset": dataset, "network": net, "k": 64, "act_bits": bits, "lut_bits": lut,
            "retrained": retrained, "test_top1": top1, "test_images": 100, "selection": "final", **kw}


def test_min_bits_is_the_fewest_bits_with_a_drop_strictly_under_one_point():
    for (dataset, net), ref in paper.TABLE6.items():
        evals = [_eval(net, b, 8, acc, dataset=dataset) for b, acc in ref["plain"].items()]
        evals += [_eval(net, b, 8, acc, True, dataset=dataset) for b, acc in ref["retrained"].items()]
        assert tables.table6(evals).iloc[0]["min_bits"] == ref["min_bits"], net
    assert tables.min_bits({8: 89.9, 4: 88.9}, 89.9) == 8  # a drop of exactly 1 point is not under 1
    assert tables.min_bits({8: 89.9, 4: 88.91}, 89.9) == 4


def test_table5_puts_the_papers_no_lut_beside_the_float_pool_network_and_notes():
    evals = [_eval("resnet_mlperf", 8, lut, acc, pooled_conv_vectors=21312, pooled_fc=True)
             for lut, acc in [(None, 83.0), (16, 83.0), (8, 82.9), (4, 82.0)]]
    floats = [{"stage": "wp_train", "dataset": "cifar10", "network": "resnet_mlperf", "k": 64, "test_top1": 83.2}]
    df = tables.table5(evals, floats)
    assert list(df.columns[4:7]) == ["float", "paper_no_lut", "no_lut"] and df.iloc[0]["paper_no_lut"] == 83.0
    notes = df.iloc[0]["notes"]
    assert "kept: final epoch (paper: best epoch on the test set)" in notes
    assert "ran its pooled FC in float from latent weights" in notes and "z-vectors" not in notes
    assert "dataset" not in notes


def test_table4_and_6_notes_say_what_differs():
    metrics = [{"stage": "pretrain", "dataset": "fashion_mnist", "network": "mobilenet_v2", "test_top1": 80.0,
                "test_images": 100, "hparams": {"selection": "best_val"}},
               {"stage": "wp_train", "dataset": "fashion_mnist", "network": "mobilenet_v2", "k": 64, "test_top1": 79.0,
                "hparams": {"selection": "best_val"}, "pooled_conv_vectors": 272992, "pooled_fc": False},
               {"stage": "pretrain", "dataset": "cifar10", "network": "resnet_10", "test_top1": 91.0,
                "test_images": 100, "hparams": {"selection": "final"}},
               {"stage": "wp_train", "dataset": "cifar10", "network": "resnet_10", "k": 64, "test_top1": 90.0,
                "hparams": {"selection": "final"}, "pooled_conv_vectors": 83968, "pooled_fc": False}]
    df = tables.table4(metrics).set_index("network")
    mob, res = df.loc["mobilenet_v2", "notes"], df.loc["resnet_10", "notes"]
    assert "dataset fashion_mnist, the paper's quickdraw100" in mob and "pretraining architecture" in mob
    assert "best on a held-out split" in mob and "z-vectors" not in mob
    assert "83,968 conv z-vectors pooled (the reference: 82,944)" in res and "dataset" not in res
    evals = [_eval("tinyconv", b, 8, 80.0, dataset="quickdraw100", pooled_conv_vectors=9600, pooled_fc=False) for b in (8, 4)]
    notes = tables.table6(evals).iloc[0]["notes"]
    assert "FC not pooled (the reference pooled it)" in notes and "one range" in notes
    assert tables.notes("digits", "vgg_small") == "not a network of the paper"


def test_distinct_pool_vectors_per_input_vector_against_a_loop():
    g = torch.Generator().manual_seed(0)
    shape = (6, 16, 3, 3)  # 6 filters, 2 groups of 8 channels, 9 taps: 18 input vectors
    idx = torch.randint(0, 5, (6 * 3 * 3 * 2,), generator=g)
    w = idx.reshape(6, 3, 3, 2)  # order o, y, x, g
    naive = [len({int(w[o, y, x, c]) for o in range(6)}) for y in range(3) for x in range(3) for c in range(2)]
    assert tables.distinct_per_input(idx, shape) == pytest.approx(sum(naive) / len(naive))
    assert tables.distinct_per_input(torch.zeros(4 * 2, dtype=torch.long), (4, 16)) == 1.0  # linear: one group per 8 inputs


def test_table8_for_every_pooled_layer(pooled_tinyconv, tmp_path):
    wp16 = pooled_tinyconv(16)
    df = table8.run([wp16 / "wp16.pt"], tmp_path / "t8.csv", tmp_path / "t8.md")
    ck = checkpoint.load(wp16 / "wp16.pt")
    assert list(df["name"]) == ck["pooled_layers"] and list(df["filters"]) == [32, 64]
    assert list(df["input_vectors"]) == [25 * 4, 25 * 4]
    assert all(1 <= v <= 16 for v in df["avg_distinct"]) and df["paper_avg_distinct"].isna().all()
    assert pd.read_csv(tmp_path / "t8.csv").shape == df.shape
    ref = paper.TABLE8[("cifar10", "resnet_14", 64)]
    model = models.create("resnet_14", in_channels=3, num_classes=10, image_size=32)
    assert {n: dict(model.named_modules())[n].out_channels for n in ref} == {n: v[1] for n, v in ref.items()}


def test_wp_train_keeps_latent_weights_that_project_to_the_checkpoint(pooled_tinyconv):
    ck = checkpoint.load(pooled_tinyconv(16) / "wp16.pt")
    assert set(ck["latent"]) == set(ck["pooled_layers"])
    for name in ck["pooled_layers"]:
        latent, projected = ck["latent"][name], ck["state_dict"][f"{name}.weight"]
        assert not torch.equal(latent, projected)
        assert torch.equal(pool.project(latent, ck["pool"])[0], projected)
    metrics = json.loads((pooled_tinyconv(16) / "wp16.json").read_text())
    assert metrics["pooled_conv_vectors"] == 9600 and metrics["pooled_fc"] is False


def test_act_train_starts_from_the_latent_weights_by_default(digits_h5, pooled_tinyconv, tmp_path):
    src = pooled_tinyconv(16) / "wp16.pt"
    latent = act_train.run(digits_h5, src, "tinyconv", 4, HP, tmp_path / "l.pt", tmp_path / "l.json", **stage_kw("act_train", device="cpu"))
    projected = act_train.run(digits_h5, src, "tinyconv", 4, HP, tmp_path / "p.pt", tmp_path / "p.json",
                              **stage_kw("act_train", device="cpu", start="projected"))
    assert latent["start"] == "latent" and projected["start"] == "projected"
    assert latent["before_top1"] == projected["before_top1"]  # the same network before retraining
    a, b = checkpoint.load(tmp_path / "l.pt"), checkpoint.load(tmp_path / "p.pt")
    assert any(not torch.equal(a["indices"][n], b["indices"][n]) for n in a["pooled_layers"])
    old = checkpoint.load(src)
    del old["latent"]
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(WPError, match=r"holds no latent weights .*rerun wp_train \(snakemake --forcerun wp_train\)"):
        act_train.run(digits_h5, tmp_path / "old.pt", "tinyconv", 4, HP, tmp_path / "o.pt", tmp_path / "o.json", **stage_kw("act_train", device="cpu"))
    assert not (tmp_path / "o.pt").exists()
    with pytest.raises(WPError, match="unknown act_train start"):
        act_train.run(digits_h5, src, "tinyconv", 4, HP, tmp_path / "x.pt", tmp_path / "x.json", **stage_kw("act_train", device="cpu", start="pool"))
