#!/usr/bin/env bash
# The GPU half of benchmarks/quality.py (issue 5) and benchmarks/speed.py (issue 6), for one lent GPU (an H100
# or an H200: the device tool's first call gets an H100),
# in at most GPU_TOTAL_S seconds of wall time (default 420 = 7 minutes), so that the whole device call,
# the machine's start (about 2 minutes) and the transfers included, fits in 10 minutes and a rerun still
# fits a 15-minute device budget.
#
# Here, once:   bash benchmarks/gpu_prepare.sh        (wheels -> .whl/, PolypGen 256 px -> .gpudata/)
# Device tool:  run(command="bash benchmarks/gpu.sh", carry=[".whl", ".gpudata"], timeout_s=480)
#
# 1. quality: `seed` and `strong` on PolypGen at its full 256x256 size, GPU_TRAIN_MIN minutes each
#    (default 2; as many of the 150 epochs as fit, stated in the result's epochs_done), evaluated on
#    the validation split (threshold 0.5) -> $OUT/quality-<gpu>-*.json, <gpu> read from nvidia-smi (h100,
#    h200, ...; GPU_TAG overrides it)
# 2. speed: benchmarks/speed.py on CUDA (bf16, channels_last, torch.compile, CUDA graphs; batch GPU_BATCH
#    (default 32) and 1), the shipped polyp-unet16's shape (unet_b16_s2) among the models,
#    with the time that is left -> $OUT/speed-cuda-*.json (written after every row, so a cut run keeps
#    what it measured).
# Afterwards, here: copy the JSON files into benchmarks/results/ and run
# `python benchmarks/quality.py --table`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
TOTAL=${GPU_TOTAL_S:-420}
TRAIN_MIN=${GPU_TRAIN_MIN:-2}
BATCH=${GPU_BATCH:-32}
PY=${PYTHON:-python3}
start=$(date +%s)
# the GPU's short name for result files (h100, h200, a100, ...): the quality results must say which card ran them
gpu_tag() {
  if [ -n "${GPU_TAG:-}" ]; then echo "$GPU_TAG"; return; fi
  nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | grep -o -i -E '[a-z][0-9]{2,4}' \
    | head -n 1 | tr '[:upper:]' '[:lower:]' | grep . || echo gpu
}
TAG=$(gpu_tag)
mkdir -p "$OUT"
WHEELS=${GPU_WHEELS:-.whl}
if [ -d "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 POLYPSEG_CACHE=/tmp/polypseg-cache NO_ALBUMENTATIONS_UPDATE=1
DATA=${GPU_DATA:-.gpudata}
[ -d "$DATA/polypgen" ] || { echo "$DATA/polypgen is missing: run benchmarks/gpu_prepare.sh and carry .gpudata"; exit 1; }
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; "$PY" -c "import torch; print(torch.__version__)") \
  > "$OUT/env.txt" 2>&1
WORKERS=$(( $(nproc) > 12 ? 12 : $(nproc) - 1 ))
"$PY" benchmarks/quality.py --datasets polypgen --recipes seed strong --seeds 0 --minutes "$TRAIN_MIN" --size 256 \
  --data-root "$DATA" --results-dir "$OUT" --runs-dir /tmp/quality-runs --tag "$TAG" --workers "$WORKERS" \
  2>&1 | grep -v -i "warning\|litlogger\|treespec" | tee "$OUT/quality.log"
left=$(( TOTAL - ($(date +%s) - start) - 10 ))
echo "quality done after $(( $(date +%s) - start )) s; speed gets ${left} s"
if [ "$left" -gt 30 ]; then
  timeout --signal=INT "$left" "$PY" benchmarks/speed.py --device cuda --min-seconds 1 --gpu-batch "$BATCH" \
    --models unet_b16 unet_b16_s2 unet_b32 unet_b64 attention_unet_b32 monai_unet monai_attention_unet --results-dir "$OUT" \
    2>&1 | tee "$OUT/speed.log"
fi
echo "gpu.sh finished after $(( $(date +%s) - start )) s"
