"""The stages called as Python functions and through the CLI, on the digits data."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from wp import WPError, checkpoint, pool, poolfile
from wp.stages import cluster, table4, wp_train
from wp.train import hparams

from conftest import REPO, stage_kw


def test_pool_file_records_the_clustering(pool8):
    p = poolfile.read(pool8, network="tinyconv")
    assert p["centers"].shape == (8, 8) and p["layers"] == ["conv2", "conv3"]
    assert len(p["assignments"]) == 9_600 and p["k"] == 8 and p["seed"] == 0
    assert p["inertia"] > 0 and p["iterations"] >= 1


def test_wp_train_yields_pool_weights_and_sane_accuracy(digits_h5, trained_tinyconv, pool8, tmp_path):
    hp = hparams({"epochs": 2, "batch_size": 32, "lr": 0.01, "schedule": "cosine"})
    m = wp_train.run(digits_h5, trained_tinyconv, pool8, "tinyconv", hp, tmp_path / "wp8.pt", tmp_path / "wp8.json", **stage_kw("wp_train", seed=0, device="cpu"))
    pre = json.loads((trained_tinyconv.parent / "pretrained.json").read_text())
    assert pre["test_top1"] > 60  # digits is easy: a real, trained network
    assert m["test_top1"] > 40 and 0 <= m["direct_top1"] <= 100
    ck = checkpoint.load(tmp_path / "wp8.pt", network="tinyconv", kind="pooled")
    centers = poolfile.read(pool8)["centers"]
    for name in ck["pooled_layers"]:
        w = ck["state_dict"][f"{name}.weight"]
        assert torch.equal(pool.to_vectors(w), centers[ck["indices"][name].long()])
    assert json.loads((tmp_path / "wp8.json").read_text())["k"] == 8
    # each training stage records the images it used in its checkpoint and the digest of those it scored
    from wp import data, selection

    ds = data.read(digits_h5)
    for path, metrics, stage in ((trained_tinyconv, pre, "pretrain"), (tmp_path / "wp8.pt", m, "wp_train")):
        rec = selection.recorded(checkpoint.load(path), path)
        assert rec.stage == stage and rec.val is None and len(rec.train) == metrics["train_images"]
        assert np.array_equal(rec.test, selection.select(ds, hp, 0, stage).test)  # all test images: no test_subset
        assert metrics["scored_on"] == selection.digest(selection.images(ds.test, rec.test, torch.device("cpu")))


def test_same_seed_same_numbers(digits_h5, trained_tinyconv, pool8, tmp_path):
    hp = hparams({"epochs": 1, "batch_size": 64, "train_subset": 300})
    a = wp_train.run(digits_h5, trained_tinyconv, pool8, "tinyconv", hp, tmp_path / "a.pt", tmp_path / "a.json", **stage_kw("wp_train", seed=5, device="cpu"))
    b = wp_train.run(digits_h5, trained_tinyconv, pool8, "tinyconv", hp, tmp_path / "b.pt", tmp_path / "b.json", **stage_kw("wp_train", seed=5, device="cpu"))
    assert a["test_top1"] == b["test_top1"] and a["history"][0]["loss"] == b["history"][0]["loss"]
    sa, sb = checkpoint.load(tmp_path / "a.pt")["state_dict"], checkpoint.load(tmp_path / "b.pt")["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_of_another_network_is_refused(trained_tinyconv, tmp_path):
    with pytest.raises(WPError, match="holds network 'tinyconv', not 'resnet_10'"):
        cluster.run(trained_tinyconv, "resnet_10", 8, tmp_path / "p.h5", **stage_kw("cluster"))
    assert not (tmp_path / "p.h5").exists()


def test_tampered_checkpoint_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    import pickle

    p.write_bytes(pickle.dumps({"format": "wp-checkpoint/1", "x": object}))
    with pytest.raises(WPError, match="is a file of an unknown kind .*, not a wp checkpoint"):
        checkpoint.load(p)


def test_table4_from_metrics(tmp_path):
    rows = [
        {"stage": "pretrain", "dataset": "cifar10", "network": "resnet_10", "test_top1": 90.123, "test_images": 10000},
        {"stage": "wp_train", "dataset": "cifar10", "network": "resnet_10", "k": 64, "test_top1": 89.5},
        {"stage": "wp_train", "dataset": "cifar10", "network": "resnet_10", "k": 32, "test_top1": 88.0},
        {"stage": "pretrain", "dataset": "digits", "network": "tinyconv", "test_top1": 95.0, "test_images": 360},
        {"stage": "wp_train", "dataset": "digits", "network": "tinyconv", "k": 32, "test_top1": 93.0, "pool_scale": "channel",
         "pool_assign": "soft"},
    ]
    paths = []
    for i, r in enumerate(rows):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    table4.run(paths, tmp_path / "t4.csv", tmp_path / "t4.md")
    import pandas as pd

    df = pd.read_csv(tmp_path / "t4.csv")
    assert list(df.columns) == ["dataset", "network", "original", "wp32", "wp64", "paper_original", "paper_wp32", "paper_wp64", "test_images", "pool_scale",
                                  "pool_assign", "notes"]
    r10 = df[df.network == "resnet_10"].iloc[0]
    assert (r10.original, r10.wp32, r10.wp64, r10.paper_original, r10.paper_wp64) == (90.12, 88.0, 89.5, 91.0, 89.8)
    assert pd.isna(df[df.network == "tinyconv"].iloc[0].paper_original)
    assert df.set_index("network").pool_scale.to_dict() == {"resnet_10": "none", "tinyconv": "channel"}
    assert df.set_index("network").pool_assign.to_dict() == {"resnet_10": "hard", "tinyconv": "soft"}  # older metrics: hard
    assert "| resnet_10 |" in (tmp_path / "t4.md").read_text()
    assert "different test images" not in str(r10.notes)
    rows[2]["scored_on"], rows[0]["scored_on"] = "sha256:a", "sha256:b"  # wp32 scored other images than the float network
    for i, r in enumerate(rows):
        paths[i].write_text(json.dumps(r))
    table4.run(paths, tmp_path / "t4.csv", tmp_path / "t4.md")
    notes = pd.read_csv(tmp_path / "t4.csv").set_index("network").notes.fillna("")
    assert "columns scored on different test images" in notes["resnet_10"] and "different" not in notes["tinyconv"]


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "wp", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_cli_errors_are_one_line_and_leave_no_output(trained_tinyconv, tmp_path):
    out = tmp_path / "pool.h5"
    r = run_cli("cluster", "--checkpoint", trained_tinyconv, "--network", "tinyconv", "--k", "300", "--out", out)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "pool size 300" in r.stderr
    r = run_cli("pretrain", "--data", tmp_path / "none.h5", "--network", "resnet_99", "--out", out, "--metrics", tmp_path / "m.json")
    assert r.returncode == 2 and "unknown network 'resnet_99'" in r.stderr
    r = run_cli("prepare", "--dataset", "fashion_mnist", "--data-dir", tmp_path / "nodata", "--out", out)
    # either found via Debian's package or a clear message naming the fix
    assert r.returncode == 0 or "apt-get install dataset-fashion-mnist" in r.stderr
    assert not list(tmp_path.glob(".*.tmp"))


def test_metrics_carry_provenance(trained_tinyconv):
    prov = json.loads((trained_tinyconv.parent / "pretrained.json").read_text())["provenance"]
    assert len(prov["config_hash"]) == 16 and prov["seed"] == 0 and prov["device"].startswith("cpu")
    assert prov["versions"]["torch"] and "git_commit" in prov
