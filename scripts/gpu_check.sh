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

# --- 2 GPUs: data-parallel calibration and multi-device placement (issue 21) --------------------
# Runs only when torch sees at least two CUDA devices; self-contained (its own variables, DP_*).
# 1. the same answer: `torchrun --nproc-per-node 2 -m qigbench quantize` (NCCL for device tensors,
#    gloo for the rest) against one process, per method and format: the saved weights must be
#    bitwise equal (tests/parallel does this on CPU with gloo; this is the NCCL and CUDA-kernel run);
# 2. the cost: peak device memory per rank and calibration time, 2 ranks vs 1 process
#    (python -m qigbench.cost.data_parallel, the README's benchmark table on GPUs);
# 3. placement: `quantize --devices cuda:0,cuda:1` against `--device cuda:0`: bitwise equal weights,
#    and the record's peak memory per device (each device holding its stage only).
# Not run by this project (no GPU was available to it); written for whoever has two.
DP_GPUS=$([[ $DRY_RUN == 1 ]] && echo 0 || "$PYTHON" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [[ $DP_GPUS -ge 2 && $DRY_RUN != 1 ]]; then
  DP_MODEL=${DP_MODEL:-shape:qwen2vl-7b@2+vision=2}
  DP_SAMPLES=${DP_SAMPLES:-32}
  DP_METHODS=${DP_METHODS:-"gptq awq mbq qig qig-gptq tlq qvlm"}
  DP_FORMATS=${DP_FORMATS:-"W3A16 W4A8"}
  DP_OUT="$OUT/two-gpus"
  mkdir -p "$DP_OUT"
  echo "== 2 GPUs: data-parallel equality on $DP_MODEL, $DP_SAMPLES samples" >&2
  for fmt in $DP_FORMATS; do
    for method in $DP_METHODS; do
      common=(quantize --model "$DP_MODEL" --method "$method" --format "$fmt" --samples "$DP_SAMPLES" --batch-size 4
              --dtype "$DTYPE" --no-progress --export fake-quant)
      "$PYTHON" -m qigbench "${common[@]}" --device cuda:0 --save "$DP_OUT/$method-$fmt-1" > /dev/null
      "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2 -m qigbench "${common[@]}" --device cuda \
        --save "$DP_OUT/$method-$fmt-2" > /dev/null
      "$PYTHON" -m qigbench "${common[@]}" --devices cuda:0,cuda:1 --save "$DP_OUT/$method-$fmt-placed" > /dev/null
    done
  done
  "$PYTHON" - "$DP_OUT" <<'PYEOF'
import glob, json, sys
from pathlib import Path

from safetensors.torch import load_file

out = Path(sys.argv[1])
print("\n| method | format | 2 ranks vs 1: tensors differing | max abs diff | --devices vs 1: differing | "
      "peak GiB per rank (2 ranks) | peak GiB per device (--devices) |")
print("|---|---|---|---|---|---|---|")
for one in sorted(out.glob("*-1")):
    stem = one.name[:-2]
    method, fmt = stem.rsplit("-", 1)

    def weights(folder):
        found = {}
        for f in sorted(glob.glob(str(folder / "*.safetensors"))):
            found.update(load_file(f))
        return found

    a, b, c = weights(one), weights(out / f"{stem}-2"), weights(out / f"{stem}-placed")
    dp = [k for k in a if not a[k].equal(b[k])]
    pl = [k for k in a if not a[k].equal(c[k])]
    worst = max(((a[k].float() - b[k].float()).abs().max().item() for k in dp), default=0.0)
    rec2 = json.loads((out / f"{stem}-2" / "qigbench_quantization.json").read_text())
    recp = json.loads((out / f"{stem}-placed" / "qigbench_quantization.json").read_text())
    ranks = ", ".join(f"{p / 2**30:.1f}" for p in rec2["parallel"].get("peak_memory_bytes_per_rank", []))
    devs = ", ".join(f"{e['device']} {e['peak_memory_bytes'] / 2**30:.1f}" for e in recp["placement"])
    print(f"| {method} | {fmt} | {len(dp)} of {len(a)} | {worst:.3g} | {len(pl)} of {len(a)} | {ranks} | {devs} |")
PYEOF
  echo "== 2 GPUs: memory and time, 2 ranks x 1 GPU vs 1 process x 1 GPU ($DP_MODEL, 128 samples)" >&2
  "$PYTHON" -m qigbench.cost.data_parallel --device cuda --model "$DP_MODEL" --samples 128 --ranks 2 \
    --method gptq --method awq --method mbq --method qig --work-dir "$DP_OUT/bench" --json "$DP_OUT/bench.json"
else
  echo "(the 2-GPU section needs two visible CUDA devices; torch sees $DP_GPUS: skipped)" >&2
fi

[[ $DRY_RUN == 1 ]] || echo "results: $OUT/table6.md, $OUT/table6.jsonl$([[ $PREDICT == 1 ]] && echo ", $OUT/cost.md")" >&2
exit $status
