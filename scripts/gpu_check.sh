#!/usr/bin/env bash
# One call on a GPU machine: build the kernels for sm_90, run the GPU tests, benchmark, keep logs.
#   bash scripts/gpu_check.sh [OUTDIR]      (default: $OUT when set, else build/gpu-check)
# Then commit OUTDIR/kernels.md as docs/benchmarks/kernels.md with this command and the date.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-build/gpu-check}}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
  | tee "$out/gpu.txt"
cmake -S plugins/groupnorm -B build/groupnorm-sm90 -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90 >"$out/build.log"
cmake --build build/groupnorm-sm90 -j"$(nproc)" >>"$out/build.log" 2>&1
export GN_DEPLOY_KERNELS_LIB=$PWD/build/groupnorm-sm90/libgn_kernels.so
status=0
python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_kernels_gpu.py tests/test_kernels_cpu.py \
  2>&1 | tee "$out/pytest-gpu.log" || status=$?
python3 -m gn_deploy.cli bench kernels -o "$out/kernels.md" 2>&1 | tee "$out/bench.log" || status=$?
exit "$status"
