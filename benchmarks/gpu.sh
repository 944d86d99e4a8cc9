#!/usr/bin/env bash
# The CUDA tests and every benchmark on a lent GPU, in about 9 minutes, with one table.
#
#   bash benchmarks/gpu.sh          # on the GPU machine (CUDA required)
#   bash benchmarks/gpu.sh --dry    # anywhere, on the CPU: tiny sizes, tests only collected;
#                                   # checks that the script and every step still run
#
# A GPU machine without a network needs the wheels of the course step's packages beside the
# repository: on a machine with one, `pip download papermill nbval ipykernel -d .whl` (the
# same Python version and platform as the GPU machine), then copy `.whl` over; the script
# installs from it when it is there. The GPU machine is expected to bring torch, timm,
# transformers, scipy and tqdm.
#
# Output: gpu_table.md (one row per step: status, seconds, result) and gpu_checks.json in
# $OUT when the device tool sets it, else benchmarks/results/ (dry run: a temporary folder);
# the benchmarks also append their rows to benchmarks/results/<machine>.json, copied to $OUT.
# Steps run in order of importance; once the time budget (BUDGET, default 540 s) would be
# exceeded, the remaining steps are listed as skipped rather than run.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry" ] && DRY=1
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ $DRY = 1 ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
BUDGET=${BUDGET:-540}
if [ -n "${OUT:-}" ]; then OUTDIR=$OUT
elif [ $DRY = 1 ]; then OUTDIR=$(mktemp -d)
else OUTDIR=benchmarks/results; fi
mkdir -p "$OUTDIR"
TABLE=$OUTDIR/gpu_table.md
LOGS=$(mktemp -d)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)

if [ $DRY = 1 ]; then
  DEV=cpu; export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
  export DEPTHG_MACHINE=${DEPTHG_MACHINE:-gpu-sh-dry-run}
else
  DEV=cuda
  if [ -d .whl ]; then
    $PY -m pip install --quiet --no-index --find-links .whl papermill nbval ipykernel \
      2>/dev/null || true
  fi
  $PY -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null || true
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "error: no CUDA device visible to torch; use --dry for the CPU run" >&2; exit 2; }
fi

{
  echo "# benchmarks/gpu.sh $( [ $DRY = 1 ] && echo '--dry (CPU, tiny sizes: numbers mean nothing)')"
  echo
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(hostname); python: $($PY -V 2>&1)"
  echo "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo cpu)"
  echo "torch: $($PY -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)"
  echo
  echo "| step | status | seconds | result (last line of its output) |"
  echo "|---|---|---|---|"
} > "$TABLE"

FAILED=0
# step NAME LIMIT_S COMMAND... — run with a time limit, log it, add a table row.
step() {
  local name=$1 limit=$2; shift 2
  local now=$(( $(date +%s) - START ))
  if [ $(( now + limit )) -gt "$BUDGET" ] && [ $DRY = 0 ]; then
    echo "| $name | skipped (budget: ${now}s used of ${BUDGET}s) | | |" >> "$TABLE"; return
  fi
  local log=$LOGS/$(echo "$name" | tr -c 'A-Za-z0-9\n' '_').log
  echo "== $name (limit ${limit}s)"
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$log" 2>&1
  local rc=$?
  local secs=$(( $(date +%s) - t0 ))
  local status=ok
  if [ $rc = 124 ]; then status="TIMEOUT"; FAILED=1
  elif [ $rc != 0 ]; then status="FAILED (rc $rc)"; FAILED=1; fi
  local last
  last=$(grep -v '^\s*$' "$log" | grep -v -E '^(USDT|ERROR:.*gpuGetDeviceCount)' | tail -1 \
         | tr '|' '/' | cut -c1-160)
  echo "| $name | $status | $secs | $last |" >> "$TABLE"
  tail -5 "$log"
}

if [ $DRY = 1 ]; then
  S=(--batch 2 --grid 8 --reps 1)
  step "checks: fused attention, full step + host syncs, kNN, released codes" 300 \
    $PY benchmarks/gpu_checks.py --device cpu --small --reps 1 --json-out "$OUTDIR/gpu_checks.json"
  step "CUDA tests (collected only)" 120 $PY -m pytest -q --collect-only tests/test_sampling.py \
    tests/test_released.py
  step "FPS sampling, S=5" 120 $PY benchmarks/fps.py --device cpu "${S[@]}" --samples 5 --no-record
  step "objective fwd+bwd, fps" 120 $PY benchmarks/train_step.py --device cpu "${S[@]}" \
    --feat-dim 32 --code-dim 8 --samples 5 --sampling fps --no-record --json
  step "full step ViT-S/8 (random weights)" 300 $PY benchmarks/train_step.py --device cpu \
    --batch 2 --grid 4 --reps 1 --code-dim 8 --samples 3 --sampling fps \
    --backbone vit_small_patch8_224.dino --no-baseline --no-record --json
  step "kNN peak memory" 120 $PY benchmarks/knn_memory.py --n 2000 --dim 32 --block 512 \
    --threads 1
  step "SynthScenes rendering" 60 $PY benchmarks/synthscenes.py --seconds 0.3 --sizes 64 --no-save
else
  step "checks: fused attention, full step + host syncs, kNN, released codes" 150 \
    $PY benchmarks/gpu_checks.py --device cuda --reps 30 --json-out "$OUTDIR/gpu_checks.json"
  step "CUDA tests" 120 $PY -m pytest -q -x -p no:cacheprovider tests/test_sampling.py \
    tests/test_released.py
  step "full step ViT-S/8, batch 32, 28x28, S=11, fps" 60 $PY benchmarks/train_step.py \
    --device cuda --batch 32 --grid 28 --code-dim 70 --samples 11 --sampling fps \
    --neg-samples 5 --reps 30 --backbone vit_small_patch8_224.dino --json
  step "full step ViT-B/8, batch 32, 28x28, S=12, fps" 60 $PY benchmarks/train_step.py \
    --device cuda --batch 32 --grid 28 --code-dim 90 --samples 12 --sampling fps \
    --neg-samples 5 --reps 30 --backbone vit_base_patch8_224.dino --json
  step "FPS sampling, batch 32, S=11" 45 $PY benchmarks/fps.py --device cuda --batch 32 \
    --grid 28 --samples 11 --reps 50
  step "FPS sampling, batch 32, S=9" 45 $PY benchmarks/fps.py --device cuda --batch 32 \
    --grid 28 --samples 9 --reps 50
  for sampling in fps random; do
    step "objective fwd+bwd, $sampling" 45 $PY benchmarks/train_step.py --device cuda \
      --batch 32 --feat-dim 384 --grid 28 --code-dim 70 --samples 11 --sampling $sampling \
      --neg-samples 5 --reps 50 --json
  done
  step "kNN peak memory (host)" 60 $PY benchmarks/knn_memory.py --n 25000 100000 --dim 384 \
    --block 2048 --threads 4
  step "course, profile test" 150 $PY benchmarks/course.py --profile test --device cuda
  step "SynthScenes rendering (CPU)" 20 $PY benchmarks/synthscenes.py --seconds 1
fi

[ $DRY = 1 ] && rm -f "benchmarks/results/$DEPTHG_MACHINE.json"  # the dry run's own rows
echo >> "$TABLE"
echo "total: $(( $(date +%s) - START )) s" >> "$TABLE"
if [ -n "${OUT:-}" ] && [ "$OUTDIR" = "$OUT" ] && [ $DRY = 0 ]; then
  cp benchmarks/results/*.json "$OUT"/ 2>/dev/null || true
fi
echo
cat "$TABLE"
echo "table: $TABLE"
exit $FAILED
