"""The precision-sweep stages (quant_eval, act_train) and tables 3, 5, 6 on a really trained tinyconv."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from wp import WPError, checkpoint, compression, lutnet, models, sweeps, tables
from wp.stages import act_train, quant_eval, table3, wp_train
from wp.train import evaluate as top1_of, hparams

from conftest import REPO, stage_kw

HP = hparams({"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "cosine"})


@pytest.fixture(scope="module")
def wp16(pooled_tinyconv):
    return pooled_tinyconv(16)


def evaluate(digits_h5, ckpt, out, act_bits=8, lut_bits=None, **kw):
    return quant_eval.run(digits_h5, ckpt, "tinyconv", act_bits, lut_bits, HP, out, **stage_kw("quant_eval", seed=0, device="cpu", **kw))


def test_lut16_equals_no_lut_and_lut4_costs_accuracy(digits_h5, wp16, tmp_path):
    no_lut = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "none.json")
    lut16 = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "l16.json", lut_bits=16)
    lut8 = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "l8.json", lut_bits=8, lut_mode="reference", signed_mode="split")
    wp = json.loads((wp16 / "wp16.json").read_text())
    assert no_lut["float_top1"] == pytest.approx(wp["test_top1"])  # the same test images as wp_train
    assert abs(lut16["test_top1"] - no_lut["test_top1"]) <= 0.1
    assert abs(lut8["test_top1"] - no_lut["test_top1"]) <= 2.0
    assert no_lut["test_top1"] > 60
    # tinyconv's pooled convs follow a BatchNorm: signed ranges, calibrated as powers of two on training images
    assert any(signed for _, signed in lut16["act_ranges"].values())
    assert all(math.log2(a).is_integer() for a, _ in lut16["act_ranges"].values())
    assert lut16["calibration"].endswith("training images")
    saved = json.loads((tmp_path / "l16.json").read_text())
    assert saved["lut_bits"] == 16 and saved["provenance"]["seed"] == 0


def test_mse_ranges_clip_where_max_ranges_lose_low_bit_accuracy(digits_h5, wp16, tmp_path):
    by_max = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "max.json", act_bits=3, lut_bits=8, act_range="max")
    by_mse = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "mse.json", act_bits=3, lut_bits=8)
    print(f"3-bit activations, LUT-8: max ranges {by_max['test_top1']:.1f}%, mse ranges {by_mse['test_top1']:.1f}%")
    assert by_mse["calibration"].startswith("mse over") and by_max["calibration"].startswith("max over")
    assert by_mse["provenance"]["config_hash"] != by_max["provenance"]["config_hash"]
    assert all(by_mse["act_ranges"][n][0] <= a and by_mse["act_ranges"][n][1] == s for n, (a, s) in by_max["act_ranges"].items())
    assert any(by_mse["act_ranges"][n][0] < a for n, (a, _) in by_max["act_ranges"].items())
    assert by_mse["test_top1"] > by_max["test_top1"]
    with pytest.raises(WPError, match="unknown activation range method 'p99'"):
        evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "bad.json", act_bits=3, act_range="p99")


def test_retraining_with_3_bit_activations_helps_and_carries_its_ranges(digits_h5, wp16, tmp_path):
    hp = hparams({**HP, "epochs": 2})
    plain = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "p.json", act_bits=3, lut_bits=8)
    m = act_train.run(digits_h5, wp16 / "wp16.pt", "tinyconv", 3, hp, tmp_path / "r3.pt", tmp_path / "r3.json", **stage_kw("act_train", seed=0, device="cpu"))
    ck = checkpoint.load(tmp_path / "r3.pt", network="tinyconv", kind="pooled")
    assert ck["act_bits"] == 3 and "act_ranges" not in ck  # the ranges live in the state_dict, nowhere else
    sd = ck["state_dict"]
    assert {n: [float(sd[f"{n}.act_quant.act_range"]), bool(sd[f"{n}.act_quant.act_signed"])] for n in ck["pooled_layers"]} == m["act_ranges"]
    assert all(int(sd[f"{n}.act_quant.act_bits"]) == 3 for n in ck["pooled_layers"])
    retrained = evaluate(digits_h5, tmp_path / "r3.pt", tmp_path / "r.json", act_bits=3, lut_bits=8)
    assert retrained["retrained"] and retrained["calibration"] == "checkpoint" and retrained["act_ranges"] == m["act_ranges"]
    assert retrained["test_top1"] > plain["test_top1"]
    assert abs(retrained["test_top1"] - m["test_top1"]) <= 3.0  # LUT-8 vs float weights on the same codes
    assert m["scored_on"] == plain["scored_on"] == retrained["scored_on"]  # table 6: wp_train's test images throughout
    with pytest.raises(WPError, match="retrained for 3-bit activations, not 4"):
        evaluate(digits_h5, tmp_path / "r3.pt", tmp_path / "x.json", act_bits=4)
    with pytest.raises(WPError, match="already retrained"):
        act_train.run(digits_h5, tmp_path / "r3.pt", "tinyconv", 3, hp, tmp_path / "y.pt", tmp_path / "y.json", **stage_kw("act_train", device="cpu"))
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.pt").exists()


def test_quant_eval_scores_the_images_wp_train_recorded(digits_h5, wp16, tmp_path):
    from wp import data, selection

    ds = data.read(digits_h5)
    ckpt = checkpoint.load(wp16 / "wp16.pt")
    rec = ckpt["selection"]
    # what wp_train recorded is what its settings select (conftest's POOLED_HP, seed 0) ...
    mine = selection.select(ds, hparams({"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "cosine"}), 0, "wp_train")
    assert rec["stage"] == "wp_train" and torch.equal(rec["test"], torch.from_numpy(mine.test))
    # ... and quant_eval scores those images, whatever selection settings it is handed (it reads, never re-derives)
    q = quant_eval.run(digits_h5, wp16 / "wp16.pt", "tinyconv", 8, None, hparams({**HP, "test_subset": 40, "train_subset": 100}),
                       tmp_path / "q.json", **stage_kw("quant_eval", seed=0, device="cpu"))
    wp = json.loads((wp16 / "wp16.json").read_text())
    test = selection.images(ds.test, rec["test"].numpy(), torch.device("cpu"))
    assert q["scored_on"] == wp["scored_on"] == selection.digest(test) and q["test_images"] == len(rec["test"])
    assert q["calibration"] == f"mse over {min(512, len(rec['train']))} training images"
    # an older checkpoint, without the record: one line naming the stage to rerun, no output
    del ckpt["selection"]
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(WPError, match=r"records no data selection .*rerun wp_train \(snakemake --forcerun wp_train\)"):
        evaluate(digits_h5, tmp_path / "old.pt", tmp_path / "old.json")
    assert not (tmp_path / "old.json").exists()


def test_float_or_foreign_checkpoints_are_refused(digits_h5, trained_tinyconv, wp16, tmp_path):
    with pytest.raises(WPError, match="needs a pooled one"):
        evaluate(digits_h5, trained_tinyconv, tmp_path / "a.json")
    with pytest.raises(WPError, match="holds network 'tinyconv', not 'resnet_10'"):
        quant_eval.run(digits_h5, wp16 / "wp16.pt", "resnet_10", 8, 8, HP, tmp_path / "b.json", **stage_kw("quant_eval", device="cpu"))
    with pytest.raises(WPError, match="activation bits 1 out of range"):
        evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "c.json", act_bits=1)
    assert not list(tmp_path.iterdir())


def relabeled(ckpt_path, dataset, out):
    """A copy of a checkpoint that claims another dataset (as one trained on it would)."""
    ck = checkpoint.load(ckpt_path)
    torch.save({**ck, "dataset": dataset}, out)
    return out


def test_checkpoints_of_another_dataset_are_refused(digits_h5, trained_tinyconv, wp16, tmp_path):
    match = "was trained on 'fashion_mnist', not 'digits': pass the matching data file"
    pooled = relabeled(wp16 / "wp16.pt", "fashion_mnist", tmp_path / "pooled.pt")
    with pytest.raises(WPError, match=match):
        evaluate(digits_h5, pooled, tmp_path / "a.json")
    with pytest.raises(WPError, match=match):
        act_train.run(digits_h5, pooled, "tinyconv", 4, HP, tmp_path / "b.pt", tmp_path / "b.json", **stage_kw("act_train", device="cpu"))
    float_ck = relabeled(trained_tinyconv, "fashion_mnist", tmp_path / "float.pt")
    with pytest.raises(WPError, match=match):
        wp_train.run(digits_h5, float_ck, wp16 / "pool16.h5", "tinyconv", HP, tmp_path / "c.pt", tmp_path / "c.json", **stage_kw("wp_train", seed=0, device="cpu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.pt", "pooled.pt"]


def test_cli_quant_eval_and_bad_lut_bits(digits_h5, wp16, tmp_path):
    base = [sys.executable, "-m", "wp", "quant_eval", "--data", str(digits_h5), "--checkpoint", str(wp16 / "wp16.pt"),
            "--network", "tinyconv", "--act-bits", "6", "--device", "cpu", "--metrics", str(tmp_path / "m.json")]
    r = subprocess.run(base + ["--lut-bits", "eight"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("wp: error: LUT bits 'eight' are not a number")
    r = subprocess.run(base + ["--lut-bits", "8"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text())["act_bits"] == 6


def test_table3_row_from_a_pooled_checkpoint(wp16, tmp_path):
    df = table3.run([wp16 / "wp16.pt"], tmp_path / "t3.csv", tmp_path / "t3.md", lut_bits=8)
    row = df.iloc[0]
    m = models.create("tinyconv", in_channels=1, num_classes=10, image_size=8)
    assert row["params"] == compression.count_params(m)
    assert row["index_bytes"] == (32 * 32 * 25 + 64 * 32 * 25) // 8  # one byte per z-vector of conv2 and conv3
    assert row["index_bytes_packed"] == row["index_bytes"] * 4 / 8  # K=16: 4 bits
    assert row["lut_bytes"] == 256 * 16
    unpooled = (row["params"] - row["pooled_params"])
    assert row["ratio_int8"] == round(row["params"] * 8 / (unpooled * 8 + row["index_bytes"] * 4 + 256 * 16 * 8), 2)
    assert row["ratio_fp32"] == round(row["params"] * 32 / (unpooled * 32 + row["index_bytes"] * 4 + 256 * 16 * 8), 2)
    assert (tmp_path / "t3.md").read_text().startswith("# Table 3")


def _eval(net, bits, lut, top1, retrained=False):
    return {"stage": "quant_eval", "dataset": "d", "network": net, "k": 64, "act_bits": bits, "lut_bits": lut,
            "retrained": retrained, "test_top1": top1, "test_images": 100}


def test_table6_min_bits_counts_retrained_accuracy():
    evals = [_eval("a", b, 8, acc) for b, acc in [(8, 90.0), (6, 89.5), (5, 88.0), (4, 80.0), (3, 50.0)]]
    evals += [_eval("a", 4, 8, 89.2, True), _eval("a", 3, 8, 88.0, True)]
    evals += [_eval("b", b, 8, acc) for b, acc in [(8, 70.0), (6, 60.0), (5, 40.0), (4, 30.0), (3, 20.0)]]
    df = tables.table6(evals)
    a, b = df.iloc[0], df.iloc[1]
    assert list(df.columns[4:9]) == ["a8", "a6", "a5", "a4", "a3"] and "a4_retrained" in df.columns
    assert a["min_bits"] == 4 and b["min_bits"] == 8
    assert pd.isna(b["a4_retrained"])
    assert tables.min_bits({8: 90.0, 3: 89.1}, 90.0) == 3 and tables.min_bits({3: 10.0}, 90.0) is None
    assert tables.min_bits({8: 90.0, 3: 89.0}, 90.0) == 8  # a drop of exactly 1 point is not under 1


def test_table5_columns_and_paper_values():
    evals = [{**_eval("resnet_10", 8, lut, acc), "dataset": "cifar10"} for lut, acc in [(None, 89.0), (16, 89.0), (8, 88.9), (4, 88.0)]]
    floats = [{"stage": "wp_train", "dataset": "cifar10", "network": "resnet_10", "k": 64, "test_top1": 89.5}]
    df = tables.table5(evals, floats)
    assert list(df.columns[:10]) == ["dataset", "network", "k", "act_bits", "float", "paper_no_lut", "no_lut", "lut16", "lut8", "lut4"]
    assert df.iloc[0]["paper_lut4"] == 89.4 and df.iloc[0]["float"] == 89.5
    with pytest.raises(WPError, match="pass quant_eval metrics"):
        tables.table5(floats, floats)
    # the float column and the sweep scored on other images (same count): the sweep's own float score, and
    # a note where the sweep's points themselves disagree
    same = [{**m, "scored_on": "sha256:a", "float_top1": 80.0} for m in evals]
    assert tables.table5(same, [{**floats[0], "scored_on": "sha256:a", "test_images": 100}]).iloc[0]["float"] == 89.5
    row = tables.table5(same, [{**floats[0], "scored_on": "sha256:b", "test_images": 100}]).iloc[0]
    assert row["float"] == 80.0 and "different test images" not in row["notes"]
    mixed = [*same[:-1], {**same[-1], "scored_on": "sha256:c"}]
    assert "sweep points scored on different test images" in tables.table5(mixed, floats).iloc[0]["notes"]
    assert "columns scored on different test images" in tables.table6(mixed).iloc[0]["notes"]


def test_retrain_bits_defaults_to_the_papers_choice():
    cfg = {"sweeps": {"table6": {"retrain_bits": None}}}
    assert sweeps.retrain_bits(cfg, "tinyconv") == [5, 4, 3] and sweeps.retrain_bits(cfg, "resnet_14") == [4, 3]
    cfg["sweeps"]["table6"]["retrain_bits"] = {"tinyconv": [6]}
    assert sweeps.retrain_bits(cfg, "tinyconv") == [6] and sweeps.retrain_bits(cfg, "resnet_mlperf") == [3]
    cfg["sweeps"]["table6"]["retrain_bits"] = [2]
    assert sweeps.retrain_bits(cfg, "mobilenet_v2") == [2]
    assert sweeps.parse_lut(sweeps.lut_label(None)) is None and sweeps.parse_lut(sweeps.lut_label(4)) == 4


def test_tensors_are_untouched_by_evaluation(digits_h5, wp16, tmp_path):
    before = (wp16 / "wp16.pt").read_bytes()
    evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "e.json", act_bits=4, lut_bits=4)
    assert (wp16 / "wp16.pt").read_bytes() == before
    assert torch.load(wp16 / "wp16.pt", weights_only=True)["kind"] == "pooled"


def test_sweep_test_images_score_a_class_balanced_subset_and_table5_compares_like_with_like(digits_h5, wp16, tmp_path):
    full = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "full.json", lut_bits=8)
    part = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "part.json", lut_bits=8, test_images=50)
    again = evaluate(digits_h5, wp16 / "wp16.pt", tmp_path / "again.json", lut_bits=None, test_images=50)
    assert full["test_images"] > 50 and part["test_images"] == again["test_images"] == 50
    assert part["provenance"]["config_hash"] != full["provenance"]["config_hash"]  # the setting is part of the record
    # the subset: 5 of each of the 10 digits, the same images for every point (the float score agrees)
    from wp import data
    from wp.selection import splits, sweep_test_set
    ds = data.read(digits_h5)
    _, _, test = splits(ds, {**HP, "selection": "final"}, 0, torch.device("cpu"))
    sub = sweep_test_set(test, 50, 0)
    assert torch.bincount(sub.labels, minlength=10).tolist() == [5] * 10
    assert part["float_top1"] == again["float_top1"] == pytest.approx(top1_of(
        lutnet.load_pooled(wp16 / "wp16.pt", "tinyconv", torch.device("cpu"))[1], sub, 64))
    assert sweep_test_set(test, None, 0) is test and sweep_test_set(test, 10 ** 6, 0) is test
    # table 5: the float column is the float network on the images the sweep scored
    wp = json.loads((wp16 / "wp16.json").read_text())
    row = tables.table5([part, again], [wp]).iloc[0]
    assert row["float"] == round(part["float_top1"], 2) and row["test_images"] == 50
    assert tables.table5([full], [wp]).iloc[0]["float"] == round(wp["test_top1"], 2)
