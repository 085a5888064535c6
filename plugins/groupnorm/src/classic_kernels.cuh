// The per-group GN kernels: a group (or a slice of one) per block, vectors that never cross a
// channel (NCHW) or a position's group slice (NHWC). They serve every shape and alignment; the
// tiled kernel (tiled_kernel.cuh) is faster where its conditions hold.
//  - on-chip: one block per (n, g); the group is copied once into shared memory, its statistics
//    taken there, then normalised from shared memory. x is read once.
//  - cluster (Hopper+): a cluster of K blocks per group, each holding a slice in shared memory;
//    each block's partial statistics are read by every block of the cluster over distributed
//    shared memory and merged in rank order. x is read once.
//  - stream: the group is split into chunks; each block writes its chunk's (mean, M2) to the
//    workspace, then a second kernel merges the partials of its group in a fixed order and
//    normalises. x is read twice.
#ifndef GN_DEPLOY_CLASSIC_KERNELS_CUH
#define GN_DEPLOY_CLASSIC_KERNELS_CUH

#include <cooperative_groups.h>

#include "device_common.cuh"

namespace gn {

// Where the elements of one group live. Element i of a group (0 <= i < elems) is at
// base(ng) + offset(i); its channel is channel(ng, i).
struct Geometry {
  int64_t channels;
  int64_t spatial;
  int64_t per_group;  // channels per group
  int64_t elems;      // per_group * spatial
  int64_t groups;
  bool nhwc;

  __device__ __forceinline__ int64_t base(int64_t ng) const {
    const int64_t n = ng / groups;
    const int64_t g = ng % groups;
    return nhwc ? n * spatial * channels + g * per_group : (n * channels + g * per_group) * spatial;
  }
  __device__ __forceinline__ int64_t offset(int64_t i) const {
    return nhwc ? (i / per_group) * channels + i % per_group : i;
  }
  __device__ __forceinline__ int64_t channel(int64_t ng, int64_t i) const {
    return (ng % groups) * per_group + (nhwc ? i % per_group : i / spatial);
  }
};

template <int VEC>
__device__ __forceinline__ Stats vector_stats(const float (&v)[VEC]) {
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < VEC; ++k) sum += v[k];
  const float mean = sum * (1.0f / VEC);
  float m2 = 0.0f;
#pragma unroll
  for (int k = 0; k < VEC; ++k) m2 += (v[k] - mean) * (v[k] - mean);
  return Stats{mean, m2, static_cast<float>(VEC)};
}

// Normalise one vector in place. Its channels are channel, channel+1, ... (NHWC) or all
// channel (NCHW).
template <int VEC>
__device__ __forceinline__ void normalize_vector(float (&v)[VEC], int64_t channel, bool nhwc,
                                                 float mean, float rstd,
                                                 const float* __restrict__ gamma,
                                                 const float* __restrict__ beta, bool act) {
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    const int64_t c = nhwc ? channel + k : channel;
    v[k] = affine_act(v[k], mean, rstd * __ldg(gamma + c), __ldg(beta + c), act);
  }
}

// Copy vectors [v0, v1) of group ng into buffer (16-byte asynchronous copies when vectorised,
// all in flight at once) and wait for them.
template <typename T, int VEC>
__device__ __forceinline__ void stage_slice(T* buffer, const T* xg, const Geometry& geo,
                                            int64_t v0, int64_t v1) {
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    T* dst = buffer + (v - v0) * VEC;
    const T* src = xg + geo.offset(v * VEC);
    if constexpr (VEC * sizeof(T) == 16) {
      copy_async16(dst, src);
    } else {
      *dst = *src;
    }
  }
  if constexpr (VEC * sizeof(T) == 16) {
    copy_async_commit();
    copy_async_wait<0>();
  }
  __syncthreads();
}

// Statistics of the staged vectors [v0, v1), merged over the block.
template <typename T, int VEC>
__device__ __forceinline__ Stats staged_stats(const T* buffer, int64_t v0, int64_t v1,
                                              Stats* scratch) {
  Stats s{0.0f, 0.0f, 0.0f};
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    float f[VEC];
    load_shared<T, VEC>(buffer + (v - v0) * VEC, f);
    s = merge(s, vector_stats(f));
  }
  return block_reduce(s, scratch);
}

template <typename T, int VEC>
__device__ __forceinline__ void normalize_slice(const T* buffer, int64_t v0, int64_t v1, T* yg,
                                                const Geometry& geo, int64_t ng, float mean,
                                                float rstd, const float* gamma, const float* beta,
                                                bool act) {
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    float f[VEC];
    load_shared<T, VEC>(buffer + (v - v0) * VEC, f);
    const int64_t i = v * VEC;
    normalize_vector<VEC>(f, geo.channel(ng, i), geo.nhwc, mean, rstd, gamma, beta, act);
    store_global<T, VEC>(yg + geo.offset(i), f);
  }
}

__device__ __forceinline__ void chunk_range(int64_t vectors, int chunks, int chunk, int64_t* v0,
                                            int64_t* v1) {
  const int64_t per = (vectors + chunks - 1) / chunks;
  *v0 = min(vectors, chunk * per);
  *v1 = min(vectors, *v0 + per);
}

template <typename T, int VEC>
__global__ void __launch_bounds__(1024)
    onchip_kernel(const T* __restrict__ x, const float* __restrict__ gamma,
                  const float* __restrict__ beta, T* __restrict__ y, Geometry geo, float eps,
                  bool act) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ Stats scratch[32];
  T* buffer = reinterpret_cast<T*>(smem_raw);
  const int64_t ng = blockIdx.x;
  const int64_t vectors = geo.elems / VEC;
  stage_slice<T, VEC>(buffer, x + geo.base(ng), geo, 0, vectors);
  const Stats s = staged_stats<T, VEC>(buffer, 0, vectors, scratch);
  const float rstd = rsqrtf(s.m2 / static_cast<float>(geo.elems) + eps);
  normalize_slice<T, VEC>(buffer, 0, vectors, y + geo.base(ng), geo, ng, s.mean, rstd, gamma,
                          beta, act);
}

template <typename T, int VEC>
__global__ void __launch_bounds__(1024)
    cluster_kernel(const T* __restrict__ x, const float* __restrict__ gamma,
                   const float* __restrict__ beta, T* __restrict__ y, Geometry geo, float eps,
                   bool act) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ Stats scratch[32];
  __shared__ Stats partial;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int size = static_cast<int>(cluster.num_blocks());
  const int64_t ng = blockIdx.x / size;
  int64_t v0, v1;
  chunk_range(geo.elems / VEC, size, rank, &v0, &v1);
  T* buffer = reinterpret_cast<T*>(smem_raw);
  stage_slice<T, VEC>(buffer, x + geo.base(ng), geo, v0, v1);
  const Stats s = staged_stats<T, VEC>(buffer, v0, v1, scratch);
  if (threadIdx.x == 0) partial = s;
  cluster.sync();  // every block's partial is written
  if (threadIdx.x == 0) {
    Stats total{0.0f, 0.0f, 0.0f};
    for (int r = 0; r < size; ++r) total = merge(total, *cluster.map_shared_rank(&partial, r));
    scratch[0] = total;
  }
  cluster.sync();  // all remote reads done before any block may exit; scratch[0] visible
  const float mean = scratch[0].mean;
  const float rstd = rsqrtf(scratch[0].m2 / static_cast<float>(geo.elems) + eps);
  normalize_slice<T, VEC>(buffer, v0, v1, y + geo.base(ng), geo, ng, mean, rstd, gamma, beta,
                          act);
#endif
}

// Four independent vector loads in flight per thread before their first use.
constexpr int kStreamUnroll = 4;

// The stream kernels run kStreamThreads (planner.cpp) threads per block.
constexpr int kStreamThreads = 256;

// The vectors v, v + stride, ... (kStreamUnroll of them, those before v1) of a group, all
// loads issued before any is used.
template <typename T, int VEC>
__device__ __forceinline__ void load_unrolled(const T* xg, const Geometry& geo, int64_t v,
                                              int64_t v1, int64_t stride,
                                              float (&f)[kStreamUnroll][VEC]) {
#pragma unroll
  for (int u = 0; u < kStreamUnroll; ++u) {
    if (v + u * stride < v1) load_global<T, VEC>(xg + geo.offset((v + u * stride) * VEC), f[u]);
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kStreamThreads)
    stats_kernel(const T* __restrict__ x, Geometry geo, int chunks, float2* __restrict__ partial) {
  __shared__ Stats scratch[32];
  const int64_t ng = blockIdx.x / chunks;
  const int chunk = static_cast<int>(blockIdx.x % chunks);
  int64_t v0, v1;
  chunk_range(geo.elems / VEC, chunks, chunk, &v0, &v1);
  const T* xg = x + geo.base(ng);
  Stats s{0.0f, 0.0f, 0.0f};
  const int64_t stride = blockDim.x;
  for (int64_t v = v0 + threadIdx.x; v < v1; v += kStreamUnroll * stride) {
    float f[kStreamUnroll][VEC];
    load_unrolled<T, VEC>(xg, geo, v, v1, stride, f);
#pragma unroll
    for (int u = 0; u < kStreamUnroll; ++u) {
      if (v + u * stride < v1) s = merge(s, vector_stats(f[u]));
    }
  }
  s = block_reduce(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = make_float2(s.mean, s.m2);
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kStreamThreads)
    normalize_kernel(const T* __restrict__ x, const float* __restrict__ gamma,
                     const float* __restrict__ beta, T* __restrict__ y, Geometry geo, int chunks,
                     const float2* __restrict__ partial, float eps, bool act) {
  __shared__ float2 moments;
  const int64_t ng = blockIdx.x / chunks;
  const int chunk = static_cast<int>(blockIdx.x % chunks);
  const int64_t vectors = geo.elems / VEC;
  if (threadIdx.x < 32) {  // warp 0 merges the group's partials in a fixed order
    Stats s{0.0f, 0.0f, 0.0f};
    for (int k = threadIdx.x; k < chunks; k += 32) {
      int64_t k0, k1;
      chunk_range(vectors, chunks, k, &k0, &k1);
      const float2 p = partial[ng * chunks + k];
      s = merge(s, Stats{p.x, p.y, static_cast<float>((k1 - k0) * VEC)});
    }
    s = warp_reduce(s);
    if (threadIdx.x == 0) {
      moments = make_float2(s.mean, rsqrtf(s.m2 / static_cast<float>(geo.elems) + eps));
    }
  }
  __syncthreads();
  const float mean = moments.x;
  const float rstd = moments.y;
  int64_t v0, v1;
  chunk_range(vectors, chunks, chunk, &v0, &v1);
  const T* xg = x + geo.base(ng);
  T* yg = y + geo.base(ng);
  const int64_t stride = blockDim.x;
  for (int64_t v = v0 + threadIdx.x; v < v1; v += kStreamUnroll * stride) {
    float f[kStreamUnroll][VEC];
    load_unrolled<T, VEC>(xg, geo, v, v1, stride, f);
#pragma unroll
    for (int u = 0; u < kStreamUnroll; ++u) {
      const int64_t i = (v + u * stride) * VEC;
      if (v + u * stride < v1) {
        normalize_vector<VEC>(f[u], geo.channel(ng, i), geo.nhwc, mean, rstd, gamma, beta, act);
        store_global<T, VEC>(yg + geo.offset(i), f[u]);
      }
    }
  }
}

}  // namespace gn

#endif  // GN_DEPLOY_CLASSIC_KERNELS_CUH
