#!/usr/bin/env bash
# One call on a GPU machine (H100/H200): build for sm_90, then GN_CHECK selects the steps.
#   candidates (the candidate launch paths, none yet measured; meant to fit one call of <= 5
#     minutes, not yet timed on a GPU): the GPU tests forced on them, compute-sanitizer memcheck
#     and racecheck on a short case list (every path), scripts/bench_paths.py (every path
#     forced on every benchmark shape: paths.md), Nsight Compute on three shapes (ncu.log).
#   full (default; about 4 minutes before the candidates and the per-row torch.compile): the
#     above, plus every other GPU test, the TensorRT plugin driven through its interfaces on the
#     GPU (when TensorRT headers are given) and `gn-deploy bench kernels` (each torch.compile
#     peer proven compiled: kernels.md).
# GN_NCU=0 skips Nsight Compute.
#   [GN_CHECK=candidates] [TENSORRT_INCLUDE_DIR=/path/to/TensorRT/include] \
#     bash scripts/gpu_check.sh [OUTDIR]
# OUTDIR defaults to $OUT when set, else build/gpu-check; each step leaves OUTDIR/STEP.log.
# Then commit OUTDIR/kernels.md as docs/benchmarks/kernels.md with this command and the date.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-build/gpu-check}}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
build=build/groupnorm-sm90
status=0

# step NAME SECONDS COMMAND...: run with a time limit, log to OUTDIR/NAME.log, show the tail.
step() {
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "== $name"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "   exit $rc after $((SECONDS - start)) s"
  tail -n 6 "$out/$name.log" | sed 's/^/   /'
  [ "$rc" -eq 0 ] || status=1
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
  | tee "$out/gpu.txt"
trt=()
[ -n "${TENSORRT_INCLUDE_DIR:-}" ] && trt=(-DTensorRT_INCLUDE_DIR="$(realpath "$TENSORRT_INCLUDE_DIR")")
step build 300 bash -c "cmake -S plugins/groupnorm -B $build -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90 ${trt[*]} && cmake --build $build -j$(nproc)"
export GN_DEPLOY_KERNELS_LIB=$PWD/$build/libgn_kernels.so
full=0
case "${GN_CHECK:-full}" in
  full) full=1 ;;
  candidates) ;;
  *) echo "GN_CHECK must be full or candidates" >&2; exit 2 ;;
esac
# the candidate paths forced (every variant, dtype and layout; past 2^31 elements), no -x
step candidates 180 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py -k registers
if [ "$full" = 1 ]; then
  step pytest 240 python3 -m pytest -q -p no:cacheprovider -x tests/test_kernels_gpu.py \
    tests/test_kernels_cpu.py tests/test_plugin_support.py -k "not registers"
  if [ -x "$build/plugin_gpu_test" ]; then
    step plugin-gpu 120 "$build/plugin_gpu_test" "$build/libgn_trt_plugin.so"
  fi
fi
step memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 1 "$build/gn_sanitize_driver"
step racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 1 "$build/gn_sanitize_driver"
if [ "$full" = 1 ]; then
  # fails when a torch.compile peer did not run compiled (an `ERROR:` line in the table)
  step bench 300 bash -c "python3 -m gn_deploy.cli bench kernels -o $out/kernels.md \
    && ! grep '^ERROR' $out/kernels.md"
fi
step paths 120 python3 scripts/bench_paths.py -o "$out/paths.md"
if [ "${GN_NCU:-1}" != 0 ] && command -v ncu >/dev/null; then
  # every GN kernel of two calls per item (the first also pays for the lazy module load):
  # the planner's choice on sd-vae-512 and sd-unet-64, the registers path on two UNet shapes
  step ncu 150 ncu --clock-control none --set full \
    --kernel-name regex:'^(tiled|stats|normalize|onchip|cluster|register)_kernel' \
    --page details python3 scripts/profile_kernels.py --calls 2 sd-vae-512 sd-unet-64 \
    sd-unet-64@registers sd-unet-16:NHWC@registers
fi
exit "$status"
