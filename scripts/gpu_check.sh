#!/usr/bin/env bash
# GPU check: every compared method at the paper's setting on the exact 7B shape, on one CUDA device.
#
#   bash scripts/gpu_check.sh                      # Qwen2-VL-7B's exact shape, 2 blocks, 128 samples
#   MODEL=shape:internvl2-8b bash scripts/gpu_check.sh
#   BLOCKS=1 SAMPLES=32 METHODS="mbq qig" FORMATS=W3A16 bash scripts/gpu_check.sh   # a quicker look
#
# Needs the project installed (`pip install -e .` in an environment with a CUDA build of torch);
# nothing is downloaded: the model is built offline from the checkpoint's shape with random
# weights (see `qigbench models`, shape:*). For each format and method it runs `qigbench cost`
# (real decoder widths, vision tower of VISION_LAYERS layers, 448x448 images = 256 image tokens per
# sample for Qwen2-VL) and prints one table: measured seconds per block, block error, and the
# predicted whole-model calibration hours and peak device memory. A method that runs out of
# device memory is reported as such and the others still run. Results land in $OUT.
set -euo pipefail

MODEL=${MODEL:-shape:qwen2vl-7b}
BLOCKS=${BLOCKS:-2}
VISION_LAYERS=${VISION_LAYERS:-2}
SAMPLES=${SAMPLES:-128}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
FORMATS=${FORMATS:-"W3A16 W4A8"}
METHODS=${METHODS:-"mbq qig gptq qig-gptq"}
OUT=${OUT:-gpu_check_out}
WIDTH=${WIDTH:-1}            # 1 = the real widths; >1 narrows the language model (smoke tests only)
PYTHON=${PYTHON:-python}

if [[ $DEVICE == cuda* ]]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
fi
mkdir -p "$OUT"
export QIGBENCH_CACHE=${QIGBENCH_CACHE:-$OUT/cache} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

for fmt in $FORMATS; do
  for method in $METHODS; do
    echo "== $MODEL $fmt $method (blocks $BLOCKS, $SAMPLES samples, $DEVICE $DTYPE)" >&2
    "$PYTHON" -m qigbench.cli cost --model "$MODEL" --blocks "$BLOCKS" --vision-layers "$VISION_LAYERS" \
      --samples "$SAMPLES" --device "$DEVICE" --dtype "$DTYPE" --format "$fmt" --method "$method" --width-divisor "$WIDTH" \
      --no-progress --json "$OUT/cost-$fmt-$method.json" > "$OUT/cost-$fmt-$method.md" \
      || echo "   ($method $fmt did not finish: see $OUT/cost-$fmt-$method.md)" >&2
  done
done

"$PYTHON" - "$OUT" "$DEVICE" <<'EOF'
import glob, json, sys

from qigbench.cost.table import machine_label

rows = []
for path in sorted(glob.glob(f"{sys.argv[1]}/cost-*.json")):
    data = json.load(open(path))
    for r in data["rows"]:
        m, p = r["measurement"], r["prediction"]
        if p is None:
            rows.append((data["format"], r["method"], r["error"], "", "", "", "", ""))
            continue
        per_block = sum(m["block_seconds"]) / len(m["block_seconds"])
        rows.append((
            data["format"], r["method"], f"{per_block:.1f}", f"{m['block_phase_peak_bytes'] / 2**30:.1f}",
            f"{r['mean_block_error']:.4g}", f"{m['total_seconds']:.1f}", f"{p['seconds'] / 3600:.3f}",
            f"{p['peak_bytes'] / 2**30:.1f}",
        ))
if not rows:
    sys.exit(f"no results under {sys.argv[1]}: every run failed before writing its JSON (see the .md files)")
import torch

print(f"\nGPU check on {machine_label(sys.argv[2])}, torch {torch.__version__}: measured on {data['model']}, "
      f"{data['samples']} samples")
head = ("format", "method", "s/block", "block-phase peak GiB", "mean block error", "measured calib s",
        "predicted whole-model h", "predicted peak GiB")
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for row in rows:
    print("| " + " | ".join(row) + " |")
EOF
