#!/usr/bin/env bash
# The scale benchmark (tests/benchmarks/test_bench_scale.py) on a CUDA GPU at Qwen2-VL-7B's real
# block widths (shape:qwen2vl-7b, qigbench.models.shapes): 2 decoder blocks, vision depth 2, 128 calibration samples, 448 x 448 images
# (256 image tokens), W3A16 and W4A8, bf16. Prints time ratios (qig/mbq, qig-gptq/gptq), CUDA peak
# memory ratios, token-weight agreement and block error vs the paper's m = 32.
#   scripts/gpu_scale_bench.sh      # writes reports/gpu_scale_bench.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
export QIGBENCH_BENCH_DEVICE=${QIGBENCH_BENCH_DEVICE:-cuda} QIGBENCH_SCALE=real QIGBENCH_SCALE_BUILDER=shapes
# shape:qwen2vl-7b takes width divisors 1, 2 or 4
export QIGBENCH_SCALE_DIVISOR=${QIGBENCH_SCALE_DIVISOR:-1} QIGBENCH_SCALE_LAYERS=${QIGBENCH_SCALE_LAYERS:-2}
export QIGBENCH_SCALE_PIXELS=${QIGBENCH_SCALE_PIXELS:-448} QIGBENCH_SCALE_SAMPLES=${QIGBENCH_SCALE_SAMPLES:-128}
export QIGBENCH_SCALE_ROUNDS=${QIGBENCH_SCALE_ROUNDS:-2} QIGBENCH_SCALE_OUT=${QIGBENCH_SCALE_OUT:-reports/gpu_scale_bench.jsonl}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m pytest tests/benchmarks/test_bench_scale.py --benchmark-only -p no:cacheprovider -s "$@"
