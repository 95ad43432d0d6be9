#!/usr/bin/env bash
# The GPU checks of headscope.kernels in one go, for a lent CUDA machine that has torch + triton but no
# TransformerLens: the GPU tests (without tests/conftest.py, which imports the model layer), then the GPU part
# of bench/entropy_kernel.py. Logs and the JSON go to $OUT (default /tmp/headscope-gpu).
# Usage, from the repository root: bash bench/gpu_run.sh
set -uo pipefail
OUT=${OUT:-/tmp/headscope-gpu}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1 WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee "$OUT/versions.txt"
timeout 150 python3 -m pytest -q tests/gpu/test_kernels_gpu.py --noconftest -p no:cacheprovider -rfE 2>&1 | tee "$OUT/pytest.log"
echo "pytest rc=${PIPESTATUS[0]}"
timeout 230 python3 bench/entropy_kernel.py --device cuda --out "$OUT/entropy_kernel_gpu.json" \
  2> >(tee "$OUT/bench.stderr" >&2) | tee "$OUT/bench.stdout"
echo "bench rc=${PIPESTATUS[0]}"
