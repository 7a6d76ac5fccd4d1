#!/usr/bin/env bash
# One GPU check, under 5 minutes on an H100/H200: correctness on CUDA against
# a float64 CPU reference (TF32 off for the verdict, TF32 error beside it;
# autocast, channels_last, torch.compile), speed against the floor,
# memory against Captum's LayerIntegratedGradients, compiled against eager,
# and explain-dataset over in-memory. Writes gpu_check.json (or $1).
#
# Run from anywhere on a machine with a CUDA GPU. The project is used from
# this checkout (no install needed). Where captum is not installed, the
# script installs a carried wheel from .whl/ into /tmp/igcam-site; fetch it
# beforehand on a machine with the registry, in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl captum==0.9.0
# (its other needs, matplotlib, numpy, packaging, torch and tqdm, and ours,
# torchvision, Pillow, scikit-image and scipy, are on most GPU machines with PyTorch).
# Pass --device cpu after the output file for a small smoke run on a CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-gpu_check.json}"
shift || true
if ! python3 -c "import captum" 2>/dev/null; then
    wheels=(.whl/captum-*.whl)
    if [[ ! -e "${wheels[0]}" ]]; then
        echo "gpu_check: captum is not installed and no .whl/captum-*.whl is here" >&2
        exit 2
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/igcam-site "${wheels[0]}"
    export PYTHONPATH="/tmp/igcam-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout 300 python3 benchmarks/gpu/gpu_check.py --json "$out" "$@"
