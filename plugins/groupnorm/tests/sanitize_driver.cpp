// A short list of gn_forward_path launches for compute-sanitizer (memcheck, racecheck): every
// launch path x dtype x layout on a few shapes, plus an unaligned and an empty tensor. Exit 0
// when every launch that the planner accepts succeeds; refused paths are reported, not failed.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "groupnorm/groupnorm.h"

namespace {

struct Shape {
  int64_t n, c, spatial;
  int32_t groups;
};

}  // namespace

int main() {
  const Shape shapes[] = {{2, 64, 16 * 16, 8}, {1, 320, 24 * 24, 32}, {2, 40, 7 * 7, 4},
                          {1, 64, 64 * 64, 4}, {1, 128, 32 * 32, 32}};
  const int32_t paths[] = {GN_PATH_AUTO,  GN_PATH_ONCHIP, GN_PATH_CLUSTER,
                           GN_PATH_STREAM, GN_PATH_TILED,  GN_PATH_REGISTERS};
  size_t most = 0;
  for (const Shape& s : shapes) most = std::max<size_t>(most, s.n * s.c * s.spatial * 4 + 64);
  unsigned char *x = nullptr, *y = nullptr, *workspace = nullptr;
  float *gamma = nullptr, *beta = nullptr;
  const size_t workspace_bytes = 64 << 20;
  if (cudaMalloc(&x, most) != cudaSuccess || cudaMalloc(&y, most) != cudaSuccess ||
      cudaMalloc(&gamma, 4096 * 4) != cudaSuccess || cudaMalloc(&beta, 4096 * 4) != cudaSuccess ||
      cudaMalloc(&workspace, workspace_bytes) != cudaSuccess ||
      cudaMemset(x, 0x3c, most) != cudaSuccess || cudaMemset(gamma, 0, 4096 * 4) != cudaSuccess ||
      cudaMemset(beta, 0, 4096 * 4) != cudaSuccess) {
    std::printf("cannot allocate device memory\n");
    return 2;
  }
  int launched = 0, refused = 0, failed = 0;
  for (const Shape& s : shapes) {
    for (int32_t dtype : {GN_FLOAT32, GN_FLOAT16, GN_BFLOAT16}) {
      for (int32_t layout : {GN_NCHW, GN_NHWC}) {
        for (int32_t path : paths) {
          for (int32_t misaligned : {0, 1}) {  // aligned, then x and y one element off
            const int32_t offset = misaligned * (dtype == GN_FLOAT32 ? 4 : 2);
            const gn_params p{s.n, s.c, s.spatial, s.groups, 1e-5f, GN_ACT_SILU, layout, dtype};
            const gn_status status = gn_forward_path(&p, path, x + offset, gamma, beta, y + offset,
                                                     workspace, workspace_bytes, nullptr);
            if (status == GN_ERROR_INVALID_PATH) {
              ++refused;
            } else if (status != GN_SUCCESS || cudaDeviceSynchronize() != cudaSuccess) {
              ++failed;
              std::printf("FAILED: shape %lldx%lldx%lld g%d dtype %d layout %d path %d: %s\n",
                          static_cast<long long>(s.n), static_cast<long long>(s.c),
                          static_cast<long long>(s.spatial), s.groups, dtype, layout, path,
                          gn_status_string(status));
            } else {
              ++launched;
            }
          }
        }
      }
    }
  }
  const gn_params empty{0, 64, 256, 8, 1e-5f, GN_ACT_NONE, GN_NCHW, GN_FLOAT16};
  if (gn_forward(&empty, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr) != GN_SUCCESS) {
    ++failed;
    std::printf("FAILED: empty tensor\n");
  }
  std::printf("%d launched, %d refused by the planner, %d failed\n", launched, refused, failed);
  return failed == 0 ? 0 : 1;
}
