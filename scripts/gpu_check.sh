#!/usr/bin/env bash
# GPU check: Table 6 at Qwen2-VL-7B's full width on one CUDA device, then the whole-model prediction.
#
#   bash scripts/gpu_check.sh                         # shape:qwen2vl-7b, 2 blocks, full width, 128 samples
#   ROUNDS=5 FORMAT=W4A8 bash scripts/gpu_check.sh
#   DRY_RUN=1 bash scripts/gpu_check.sh               # print the commands, run nothing
#   DEVICE=cpu WIDTH=4 SAMPLES=2 IMAGE_SIZE=112 ROUNDS=1 BLOCKS=1 VISION_LAYERS=1 PREDICT=0 \
#     bash scripts/gpu_check.sh                       # the same path on a CPU, tiny (checks the script)
#
# Step 1 is `qigbench table6`, the same benchmark as the CPU numbers in the README (Table 6 at real
# width): MBQ, QIG at m = 32, the fast variant, leave-one-out, GPTQ, QIG+GPTQ, each calibration in a
# fresh process, ROUNDS interleaved rounds; time ratios to MBQ (median and range over rounds) and
# peak-memory ratios (CUDA peak allocation, and the working memory above the loaded model). Raw numbers
# are appended to $OUT/table6.jsonl as each run finishes: rerunning the script resumes.
# Step 2 (PREDICT=1) is `qigbench cost`: the same methods on the same shape with 3 blocks, prepare
# timed at 3 depths, predicting the whole model's (28 blocks, 32 vision layers) hours and peak.
#
# Nothing is downloaded: the model is built offline from the checkpoint's shape with random weights
# (`qigbench models`, shape:*). Needs the project installed with a CUDA build of torch.
# Not run by the project yet: no GPU was lent to the sessions that wrote it (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
WIDTH=${WIDTH:-1}                 # 1 = the real widths
BLOCKS=${BLOCKS:-2}
VISION_LAYERS=${VISION_LAYERS:-2}
SAMPLES=${SAMPLES:-128}
IMAGE_SIZE=${IMAGE_SIZE:-448}
ROUNDS=${ROUNDS:-3}
FORMAT=${FORMAT:-W3A16}
DTYPE=${DTYPE:-auto}              # bfloat16 on CUDA
PREDICT=${PREDICT:-1}
OUT=${OUT:-gpu_check_out}
PYTHON=${PYTHON:-python}
DRY_RUN=${DRY_RUN:-0}

MODEL="shape:qwen2vl-7b@${BLOCKS}+vision=${VISION_LAYERS}"
[[ $WIDTH != 1 ]] && MODEL="$MODEL+width=$WIDTH"

run() {
  echo "+ $*" >&2
  [[ $DRY_RUN == 1 ]] || "$@"
}

if [[ $DEVICE == cuda* && $DRY_RUN != 1 ]]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
[[ $DRY_RUN == 1 ]] || mkdir -p "$OUT"
export QIGBENCH_CACHE=${QIGBENCH_CACHE:-$OUT/cache} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

# 1. Table 6: interleaved rounds, ratios to MBQ (exit status 2 if a goal that is not a known gap is missed)
status=0
run "$PYTHON" -m qigbench.cli table6 --model "$MODEL" --format "$FORMAT" --samples "$SAMPLES" \
  --image-size "$IMAGE_SIZE" --rounds "$ROUNDS" --device "$DEVICE" --dtype "$DTYPE" \
  --out "$OUT/table6.jsonl" --summary "$OUT/table6.md" || status=$?

# 2. the whole-model prediction from 3 blocks (prepare pass fitted over 3 depths)
if [[ $PREDICT == 1 ]]; then
  PMODEL="shape:qwen2vl-7b@3+vision=${VISION_LAYERS}"
  [[ $WIDTH != 1 ]] && PMODEL="$PMODEL+width=$WIDTH"
  run "$PYTHON" -m qigbench.cli cost --model "$PMODEL" --format "$FORMAT" --samples "$SAMPLES" \
    --image-size "$IMAGE_SIZE" --device "$DEVICE" --dtype "$DTYPE" --no-progress \
    --method mbq --method qig:qig.steps=32 --method qig:qig.preset=fast --method gptq --method qig-gptq:qig.steps=32 \
    --json "$OUT/cost.json" | { [[ $DRY_RUN == 1 ]] && cat || tee "$OUT/cost.md"; } || status=$?
fi
[[ $DRY_RUN == 1 ]] || echo "results: $OUT/table6.md, $OUT/table6.jsonl$([[ $PREDICT == 1 ]] && echo ", $OUT/cost.md")" >&2
exit $status
