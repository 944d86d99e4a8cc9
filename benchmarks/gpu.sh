#!/usr/bin/env bash
# Every benchmark on a lent GPU (issue 8). On this project's machine:
#   ../shared/tools/gpu-wheels.sh .whl          # papermill, nbval, ipykernel wheels (~19 MB)
# then through the device tool, carrying .whl:
#   bash benchmarks/gpu.sh
# The GPU machine has torch, timm, transformers, scipy, tqdm, matplotlib, tensorboard; the
# wheels add what the course runner needs. Rows go to benchmarks/results/<GPU name>.json and
# are copied to $OUT when the device tool provides it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  $PY -m pip install --quiet --no-index --find-links .whl papermill nbval ipykernel 2>/dev/null || true
fi
$PY -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# FPS and the DepthG objective at the issue's sizes, fidelity released, both samplings
$PY benchmarks/fps.py --device cuda --batch 32 --grid 28 --samples 11 --reps 50
$PY benchmarks/fps.py --device cuda --batch 32 --grid 28 --samples 9 --reps 50
for sampling in fps random; do
  $PY benchmarks/train_step.py --device cuda --batch 32 --feat-dim 384 --grid 28 --code-dim 70 \
    --samples 11 --sampling $sampling --neg-samples 5 --reps 50 --json
done
# The full step (frozen backbone forward, head, loss, probes, three Adam steps), random weights
$PY benchmarks/train_step.py --device cuda --batch 32 --grid 28 --code-dim 70 --samples 11 \
  --sampling fps --neg-samples 5 --reps 30 --backbone vit_small_patch8_224.dino --json
$PY benchmarks/train_step.py --device cuda --batch 32 --grid 28 --code-dim 90 --samples 12 \
  --sampling fps --neg-samples 5 --reps 30 --backbone vit_base_patch8_224.dino --json
# kNN mining memory and time on the device path is exercised by the course; the course itself:
$PY benchmarks/course.py --profile test --device cuda
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*.json "$OUT"/; fi
