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
DP_GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [[ $DP_GPUS -ge 2 ]]; then
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
