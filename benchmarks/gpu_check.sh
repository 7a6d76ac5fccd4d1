#!/usr/bin/env bash
# One GPU check, under 5 minutes: correctness on CUDA against a float64 CPU
# reference, then ResNet-50 throughput at n_steps=50 (batch 16, fp32 and bf16).
# Run from the repository root on a machine with a CUDA GPU and the project
# installed (pip install -e ".[demo]"); writes gpu_check.json beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check.json}"
timeout 300 python benchmarks/gpu_check.py --json "$out"
