// The register-resident GN kernel, a candidate for small groups (the SD-UNet shapes: 64-640
// groups of 20-160 KB). Reached only through gn_forward_path(GN_PATH_REGISTERS) until a GPU run
// has measured it (docs/kernel-notes.md).
//
// One block per group, or on Hopper a cluster of two blocks sharing a group. Each thread loads
// up to VPT 16-byte vectors of x into registers, all in flight before the first use, and keeps
// them there: x is read once, nothing is staged in shared memory, and there is no workspace,
// memset, atomic or grid-wide barrier. Statistics: each thread's own values in two passes over
// its registers (exact mean, then squared deviations), merged over the block in a fixed tree
// (block_reduce) and over the cluster in rank order, so results are bitwise reproducible and
// both blocks of a cluster normalise with the same mean and rstd.
#ifndef GN_DEPLOY_REGISTER_KERNEL_CUH
#define GN_DEPLOY_REGISTER_KERNEL_CUH

#include <cooperative_groups.h>

#include "classic_kernels.cuh"

namespace gn {

// Threads per block at most; the planner (planner.cpp) keeps to the same bound.
constexpr int kRegisterMaxThreads = 1024;

// Where vector v (0 <= v < vectors of the group) lives: row_vectors is spatial / VEC (NCHW: a
// vector never leaves its channel) or C/G / VEC (NHWC: a vector never leaves its group's slice
// of one position). offset: elements from the group's base; channel: its first channel, counted
// from the group's first. A group has fewer than 2^31 elements here (planner.cpp).
template <int VEC, bool NHWC>
struct VectorPlace {
  int64_t offset;
  int32_t channel;

  __device__ __forceinline__ VectorPlace(int64_t channels, int32_t v, int32_t row_vectors) {
    const int32_t row = v / row_vectors;
    if constexpr (NHWC) {
      channel = (v - row * row_vectors) * VEC;
      offset = row * channels + channel;
    } else {
      channel = row;
      offset = v * VEC;
    }
  }
};

// add(v, acc) folded over the first `valid` of a thread's VPT register vectors, in order.
template <typename T, int VEC, int VPT, class Add>
__device__ __forceinline__ float register_sum(const uint4 (&raw)[VPT], int valid, Add add) {
  float acc = 0.0f;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    if (k < valid) {
      float f[VEC];
      unpack<T, VEC>(raw[k], f);
#pragma unroll
      for (int j = 0; j < VEC; ++j) acc = add(f[j], acc);
    }
  }
  return acc;
}

template <typename T, int VPT, bool NHWC>
__global__ void __launch_bounds__(kRegisterMaxThreads)
    register_kernel(const T* __restrict__ x, const float* __restrict__ gamma,
                    const float* __restrict__ beta, T* __restrict__ y, Geometry geo,
                    int32_t row_vectors, int32_t cluster_size, float eps, bool act) {
  constexpr int VEC = 16 / sizeof(T);
  __shared__ Stats scratch[32];
  const int64_t ng = blockIdx.x / cluster_size;
  int64_t v0, v1;
  chunk_range(geo.elems / VEC, cluster_size, static_cast<int>(blockIdx.x % cluster_size), &v0,
              &v1);
  // This thread's vectors are v0 + threadIdx.x + k * blockDim.x for k < valid. Counting them
  // up front (rather than testing each index) lets every load issue before the first use on
  // every variant (the SASS test checks it; with a test per index, ptxas sank two of the fp32
  // 8-vector loads to their first use).
  const int32_t first = static_cast<int32_t>(v0) + static_cast<int32_t>(threadIdx.x);
  const int32_t stride = static_cast<int32_t>(blockDim.x);
  const int32_t end = static_cast<int32_t>(v1);
  const T* xg = x + geo.base(ng);
  T* yg = y + geo.base(ng);
  const int64_t first_channel = (ng % geo.groups) * geo.per_group;
  const float* gamma_g = gamma + first_channel;
  const float* beta_g = beta + first_channel;

  const int valid = first < end ? min(VPT, (end - first + stride - 1) / stride) : 0;
  uint4 raw[VPT];
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    if (k < valid) {
      const VectorPlace<VEC, NHWC> place(geo.channels, first + k * stride, row_vectors);
      raw[k] = __ldg(reinterpret_cast<const uint4*>(xg + place.offset));
    }
  }

  // This thread's statistics, exact two passes over its registers.
  const float sum =
      register_sum<T, VEC, VPT>(raw, valid, [](float v, float acc) { return acc + v; });
  const float count = static_cast<float>(valid * VEC);
  const float mean = valid > 0 ? sum / count : 0.0f;
  const float m2 = register_sum<T, VEC, VPT>(
      raw, valid, [mean](float v, float acc) { return fmaf(v - mean, v - mean, acc); });
  Stats s = block_reduce(Stats{mean, m2, count}, scratch);

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  __shared__ Stats partial;
  if (cluster_size > 1) {
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) partial = s;
    cluster.sync();  // every block's partial is written
    Stats total{0.0f, 0.0f, 0.0f};
    for (int r = 0; r < cluster_size; ++r) {
      total = merge(total, *cluster.map_shared_rank(&partial, r));
    }
    s = total;
  }
#endif

  const float rstd = rsqrtf(s.m2 / static_cast<float>(geo.elems) + eps);
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    if (k < valid) {
      const VectorPlace<VEC, NHWC> place(geo.channels, first + k * stride, row_vectors);
      float f[VEC];
      unpack<T, VEC>(raw[k], f);
      normalize_vector<VEC>(f, place.channel, NHWC, s.mean, rstd, gamma_g, beta_g, act);
      store_global<T, VEC>(yg + place.offset, f);
    }
  }

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (cluster_size > 1) cg::this_cluster().sync();  // no block exits while its partial is read
#endif
}

}  // namespace gn

#endif  // GN_DEPLOY_REGISTER_KERNEL_CUH
