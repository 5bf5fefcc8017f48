#!/usr/bin/env bash
# GPU readiness of the paper profile, in one short run (about 8 minutes or less on one H100 is the budget):
#   1. experiments.paper_smoke: every stage and variant at the paper's geometry, on CUDA with bf16 AMP
#      (train.amp, eval.amp), only counts shrunk; wall time and peak RSS per stage;
#   2. benchmarks/gpu_throughput.py: ViT-B/16 `full` evaluation images/s at C=150 and C=847, training
#      steps/s (batch 4, crop 384), and the peak GPU memory of each.
# Everything lands in OUT_DIR (default gpu_check/): smoke.json, throughput.json, gpu.txt, and the logs.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        (PYTHON=... to use another interpreter than .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-gpu_check}")
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device visible')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
start=$SECONDS
"$python" -m experiments.paper_smoke --workdir "$out/smoke" --summary "$out/smoke.json"
"$python" benchmarks/gpu_throughput.py --workdir "$out/smoke" --out "$out/throughput.json"
echo "gpu_check: done in $((SECONDS - start)) s; results in $out/smoke.json and $out/throughput.json"
