#!/usr/bin/env bash
# Issue 5's targets on a machine with a CUDA GPU. From the repository root:
#   bash benchmarks/gpu_check.sh            # or: DEVICE=cuda:1 PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
# Reference (the paper's code on an H100, batch 128): resnet_10 pretraining 4.3-4.9 s/epoch, wp
# retraining 6.0-6.9 s/epoch (50,000 32x32 images); tinyconv 2.2-2.7 s/epoch (60,000 28x28 images).
# Compare pretrain_epoch_s / wp_train_epoch_s in the CSVs; k-means: kmeans_s vs kmeans_pytorch_s.
set -euo pipefail
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-results/benchmarks}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 1. the CUDA code paths against their CPU twins (seconds)
$PY -m pytest -q tests/test_gpu.py tests/test_engine.py tests/test_pool.py

# 2. one full epoch (390 steps x 128 = 49,920 images) per network at the paper's batch size, bf16 and fp32
for AMP in auto off; do
  $PY benchmarks/speed.py --device "$DEVICE" --amp $AMP --batch-size 128 --steps 390 --eval-batch-size 2048 \
      --networks resnet_10 tinyconv resnet_14 --k 128 --kmeans-vectors 20000 --no-reference-kmeans --out "$OUT/gpu_epoch_$AMP.csv"
done

# 3. k-means on all resnet_14 z-vectors, K = 128: ours vs kmeans-pytorch 0.3 (same vectors)
$PY benchmarks/speed.py --device "$DEVICE" --networks resnet_14 --batch-size 128 --steps 20 --k 128 --kmeans-vectors 0 \
    --out "$OUT/gpu_kmeans.csv"

# 4. every network at batch 128 (the README table)
$PY benchmarks/speed.py --device "$DEVICE" --batch-size 128 --steps 100 --eval-batch-size 2048 --k 128 --kmeans-vectors 0 \
    --out "$OUT/gpu_speed.csv"
