"""A training job killed with SIGKILL and rerun resumes from its last epoch and ends with exactly
the weights of an uninterrupted run (CPU, same seed)."""

import json
import signal
import subprocess
import sys

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
