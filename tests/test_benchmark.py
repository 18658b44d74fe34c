"""The speed benchmark runs on the CPU at tiny sizes and writes its CSV (no assertion about time)."""

import csv
import subprocess
import sys

from conftest import REPO


def test_speed_benchmark_writes_csv(tmp_path):
    out = tmp_path / "speed.csv"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "speed.py"), "--networks", "tinyconv", "--device", "cpu",
                        "--steps", "1", "--batch-size", "8", "--kmeans-vectors", "2000", "--k", "16", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pretrain_img_s=" in r.stdout and "kmeans_pytorch_s=" in r.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["network"] == "tinyconv"
    for key in ("pretrain_img_s", "wp_train_img_s", "eval_float_img_s", "kmeans_s", "kmeans_pytorch_s",
                "projection_ms_per_step", "pretrain_epoch_s", "wp_train_epoch_s"):
        assert float(rows[0][key]) > 0
    assert rows[0]["amp"] == "off" and rows[0]["peak_gpu_mib"] == "n/a"  # CPU: plain fp32, no GPU memory
    assert rows[0]["eval_lut_img_s"] == "n/a" or float(rows[0]["eval_lut_img_s"]) > 0
    assert int(rows[0]["pooled_vectors"]) == 9_600
    assert float(rows[0]["kmeans_inertia"]) <= float(rows[0]["kmeans_pytorch_inertia"]) * 1.05


def test_speed_benchmark_runs_a_network_of_ones_own(tmp_path):
    out = tmp_path / "speed.csv"
    common = [sys.executable, str(REPO / "benchmarks" / "speed.py"), "--device", "cpu", "--steps", "1", "--batch-size", "8",
              "--kmeans-vectors", "500", "--k", "8", "--no-reference-kmeans", "--out", str(out)]
    r = subprocess.run([*common, "--networks", "vgg_small"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown network 'vgg_small'" in r.stderr and not out.exists()
    r = subprocess.run([*common, "--networks-from", str(REPO / "examples" / "my_network.py"), "--networks", "vgg_small",
                        "--shape", "1", "16", "10"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    row = next(csv.DictReader(out.open()))
    assert row["network"] == "vgg_small" and float(row["wp_train_img_s"]) > 0
    # 16x16 input, max pool after the first block: 8x8 maps; block2 (16 -> 32) and block3 (32 -> 64) are pooled
    assert int(row["pooled_vectors"]) == (32 * 2 + 64 * 4) * 9
