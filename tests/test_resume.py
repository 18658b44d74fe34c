"""A training job killed with SIGKILL and rerun resumes from its last epoch and ends with exactly
the weights of an uninterrupted run (CPU, same seed)."""

import json
import signal
import subprocess
import sys

import pytest
import torch

from wp import checkpoint

from conftest import REPO

HP = json.dumps({"epochs": 4, "batch_size": 32, "train_subset": 256, "test_subset": 100, "lr": 0.05, "schedule": "cosine"})


def pretrain(digits_h5, out, *extra):
    cmd = [sys.executable, "-m", "wp", "pretrain", "--data", str(digits_h5), "--network", "tinyconv", "--hparams", HP,
           "--device", "cpu", "--threads", "1", "--seed", "3", "--out", str(out), "--metrics", str(out.with_suffix(".json")), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def test_killed_training_resumes_to_identical_weights(digits_h5, tmp_path):
    straight = tmp_path / "straight.pt"
    assert pretrain(digits_h5, straight).returncode == 0

    resumed = tmp_path / "resumed.pt"
    killed = pretrain(digits_h5, resumed, "--stop-after-epoch", "2")
    assert killed.returncode == -signal.SIGKILL
    assert not resumed.exists() and not resumed.with_suffix(".json").exists()  # nothing that looks finished
    assert (tmp_path / "resumed.pt.resume").exists()

    again = pretrain(digits_h5, resumed)
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stdout and "after epoch 2" in again.stdout
    assert not (tmp_path / "resumed.pt.resume").exists()
    a = checkpoint.load(straight)["state_dict"]
    b = checkpoint.load(resumed)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads(straight.with_suffix(".json").read_text())["history"]
    hb = json.loads(resumed.with_suffix(".json").read_text())["history"]
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
    # the reported time covers the whole training, the killed run's epochs included
    metrics = json.loads(resumed.with_suffix(".json").read_text())
    assert metrics["seconds"] >= sum(r["seconds"] for r in hb)


def test_resume_file_with_other_settings_is_ignored(digits_h5, tmp_path):
    out = tmp_path / "m.pt"
    assert pretrain(digits_h5, out, "--stop-after-epoch", "1").returncode == -signal.SIGKILL
    cmd = [sys.executable, "-m", "wp", "pretrain", "--data", str(digits_h5), "--network", "tinyconv",
           "--hparams", HP.replace('"epochs": 4', '"epochs": 2'), "--device", "cpu", "--seed", "3",
           "--out", str(out), "--metrics", str(tmp_path / "m.json")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "other settings" in r.stdout


def test_resume_file_from_other_input_data_is_ignored(digits_h5, tmp_path):
    out = tmp_path / "m.pt"
    assert pretrain(digits_h5, out, "--stop-after-epoch", "1").returncode == -signal.SIGKILL
    other = tmp_path / "other.h5"
    from wp import data

    data.prepare("digits", tmp_path, other, seed=1)  # another split: other training images
    r = pretrain(other, out)
    assert r.returncode == 0 and "other settings" in r.stdout and "resuming" not in r.stdout


def compare(digits_h5, ckpt, method, setting, out, *extra, options="{}"):
    hp = json.dumps({"epochs": 2, "batch_size": 32, "train_subset": 256, "test_subset": 100, "lr": 0.01, "schedule": "cosine"})
    cmd = [sys.executable, "-m", "wp", "compare", "--method", method, "--setting", setting, "--data", str(digits_h5),
           "--checkpoint", str(ckpt), "--network", "tinyconv", "--hparams", hp, "--options", options, "--device", "cpu",
           "--threads", "1", "--seed", "2", "--out", str(out), "--metrics", str(out.with_suffix(".json")), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def same_weights(a, b):
    sa, sb = checkpoint.load(a)["state_dict"], checkpoint.load(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("method, setting, options, kill_at", [
    ("ternary", "weights_acts", "{}", 1),
    ("valueset", "pm1", "{}", 1),  # the temperature schedule is model state: it must resume too
    ("prune", "0.8", '{"rounds": 3}', 3),  # killed in round 2 (2 epochs a round): round 1 is not redone
])
def test_killed_comparison_job_resumes_to_identical_weights(digits_h5, trained_tinyconv, tmp_path, method, setting,
                                                            options, kill_at):
    straight, resumed = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    r = compare(digits_h5, trained_tinyconv, method, setting, straight, options=options)
    assert r.returncode == 0, r.stderr
    killed = compare(digits_h5, trained_tinyconv, method, setting, resumed, "--stop-after-epoch", str(kill_at), options=options)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not resumed.exists() and not resumed.with_suffix(".json").exists()
    again = compare(digits_h5, trained_tinyconv, method, setting, resumed, options=options)
    assert again.returncode == 0, again.stderr
    if method == "prune":
        assert "resuming after prune round 1 of 3" in again.stdout and "round 1:" not in again.stdout
    assert "resuming from" in again.stdout
    assert same_weights(straight, resumed)
    assert [p.name for p in tmp_path.iterdir() if ".resume" in p.name or ".round" in p.name] == []
    a = json.loads(straight.with_suffix(".json").read_text())
    b = json.loads(resumed.with_suffix(".json").read_text())
    assert a["test_top1"] == b["test_top1"]
    epochs = b["round_history"] if method == "prune" else [b]  # every round's epochs, the killed run's included
    assert b["seconds"] >= sum(e["seconds"] for part in epochs for e in part["history"])
