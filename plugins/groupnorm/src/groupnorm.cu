// Group-normalization forward kernels and gn_forward. No TensorRT types; errors are returned.
//
// Three paths (chosen by gn_plan_launch):
//  - on-chip: one block per (n, g); the group is loaded once into shared memory while its
//    Welford statistics accumulate, then normalised from shared memory. x is read once.
//  - cluster (Hopper+): a cluster of K blocks per group, each holding a slice in shared memory;
//    each block's partial statistics are read by every block of the cluster over distributed
//    shared memory and merged in rank order. x is read once, K times as many blocks.
//  - stream: the group is split into chunks (enough blocks to fill the GPU when N*G is small);
//    each block writes its chunk's (mean, M2) to the workspace, then a second kernel merges
//    the partials of its group in a fixed order (Chan's formula, no atomics) and normalises.
// Statistics are fp32 whatever the I/O type; results are bitwise reproducible.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "groupnorm/groupnorm.h"
#include "groupnorm/plugin_support.h"

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int64_t kDefaultSmemLimit = 48 * 1024;

struct Stats {
  float mean;
  float m2;
  float count;
};

__device__ __forceinline__ Stats merge(Stats a, Stats b) {
  const float n = a.count + b.count;
  if (b.count == 0.0f) return a;
  if (a.count == 0.0f) return b;
  const float delta = b.mean - a.mean;
  const float fb = b.count / n;
  return Stats{a.mean + delta * fb, a.m2 + b.m2 + delta * delta * a.count * fb, n};
}

__device__ __forceinline__ Stats warp_reduce(Stats s) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const Stats other{__shfl_down_sync(kFullMask, s.mean, offset),
                      __shfl_down_sync(kFullMask, s.m2, offset),
                      __shfl_down_sync(kFullMask, s.count, offset)};
    s = merge(s, other);
  }
  return s;
}

// Merge one Stats per thread in a fixed order; every thread gets the block's result.
__device__ Stats block_reduce(Stats s, Stats* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  s = warp_reduce(s);
  if (lane == 0) scratch[warp] = s;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    s = lane < warps ? scratch[lane] : Stats{0.0f, 0.0f, 0.0f};
    s = warp_reduce(s);
    if (lane == 0) scratch[0] = s;
  }
  __syncthreads();
  const Stats result = scratch[0];
  __syncthreads();
  return result;
}

template <typename T>
struct Convert;
template <>
struct Convert<float> {
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <>
struct Convert<__half> {
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Convert<__nv_bfloat16> {
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

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

template <typename T, int VEC>
__device__ __forceinline__ void unpack(const Pack<T, VEC>& p, float (&v)[VEC]) {
#pragma unroll
  for (int k = 0; k < VEC; ++k) v[k] = Convert<T>::load(p.v[k]);
}

// Normalise one vector (its channels are channel, channel+1, ... for NHWC, all channel for
// NCHW) and return it packed.
template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> normalize(const float (&v)[VEC], int64_t channel,
                                                  bool nhwc, float mean, float rstd,
                                                  const float* __restrict__ gamma,
                                                  const float* __restrict__ beta, bool silu) {
  Pack<T, VEC> out;
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    const int64_t c = nhwc ? channel + k : channel;
    float o = (v[k] - mean) * (rstd * __ldg(gamma + c)) + __ldg(beta + c);
    if (silu) o = o / (1.0f + expf(-o));
    out.v[k] = Convert<T>::store(o);
  }
  return out;
}

template <typename T, int VEC>
__device__ __forceinline__ void normalize_slice(const Pack<T, VEC>* buffer, int64_t v0, int64_t v1,
                                                T* yg, const Geometry& geo, int64_t ng,
                                                float mean, float rstd, const float* gamma,
                                                const float* beta, bool silu) {
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    float f[VEC];
    unpack(buffer[v - v0], f);
    const int64_t i = v * VEC;
    *reinterpret_cast<Pack<T, VEC>*>(yg + geo.offset(i)) =
        normalize<T, VEC>(f, geo.channel(ng, i), geo.nhwc, mean, rstd, gamma, beta, silu);
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
                  bool silu) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ Stats scratch[32];
  auto* buffer = reinterpret_cast<Pack<T, VEC>*>(smem_raw);
  const int64_t ng = blockIdx.x;
  const int64_t vectors = geo.elems / VEC;
  const T* xg = x + geo.base(ng);
  T* yg = y + geo.base(ng);

  Stats s{0.0f, 0.0f, 0.0f};
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    const Pack<T, VEC> p = *reinterpret_cast<const Pack<T, VEC>*>(xg + geo.offset(v * VEC));
    buffer[v] = p;
    float f[VEC];
    unpack(p, f);
    s = merge(s, vector_stats(f));
  }
  s = block_reduce(s, scratch);
  const float mean = s.mean;
  const float rstd = 1.0f / sqrtf(s.m2 / static_cast<float>(geo.elems) + eps);
  // Each thread reads back only the vectors it stored: no barrier needed for the buffer.
  normalize_slice<T, VEC>(buffer, 0, vectors, yg, geo, ng, mean, rstd, gamma, beta, silu);
}

template <typename T, int VEC>
__global__ void __launch_bounds__(1024)
    cluster_kernel(const T* __restrict__ x, const float* __restrict__ gamma,
                   const float* __restrict__ beta, T* __restrict__ y, Geometry geo, float eps,
                   bool silu) {
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
  auto* buffer = reinterpret_cast<Pack<T, VEC>*>(smem_raw);
  const T* xg = x + geo.base(ng);

  Stats s{0.0f, 0.0f, 0.0f};
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    const Pack<T, VEC> p = *reinterpret_cast<const Pack<T, VEC>*>(xg + geo.offset(v * VEC));
    buffer[v - v0] = p;
    float f[VEC];
    unpack(p, f);
    s = merge(s, vector_stats(f));
  }
  s = block_reduce(s, scratch);
  if (threadIdx.x == 0) partial = s;
  cluster.sync();  // every block's partial is written
  if (threadIdx.x == 0) {
    Stats total{0.0f, 0.0f, 0.0f};
    for (int r = 0; r < size; ++r) total = merge(total, *cluster.map_shared_rank(&partial, r));
    scratch[0] = total;
  }
  cluster.sync();  // all remote reads done before any block may exit; scratch[0] visible
  const float mean = scratch[0].mean;
  const float rstd = 1.0f / sqrtf(scratch[0].m2 / static_cast<float>(geo.elems) + eps);
  normalize_slice<T, VEC>(buffer, v0, v1, y + geo.base(ng), geo, ng, mean, rstd, gamma, beta,
                          silu);
#endif
}

template <typename T, int VEC>
__global__ void __launch_bounds__(1024)
    stats_kernel(const T* __restrict__ x, Geometry geo, int chunks, float2* __restrict__ partial) {
  __shared__ Stats scratch[32];
  const int64_t ng = blockIdx.x / chunks;
  const int chunk = static_cast<int>(blockIdx.x % chunks);
  int64_t v0, v1;
  chunk_range(geo.elems / VEC, chunks, chunk, &v0, &v1);
  const T* xg = x + geo.base(ng);
  Stats s{0.0f, 0.0f, 0.0f};
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    float f[VEC];
    unpack(*reinterpret_cast<const Pack<T, VEC>*>(xg + geo.offset(v * VEC)), f);
    s = merge(s, vector_stats(f));
  }
  s = block_reduce(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = make_float2(s.mean, s.m2);
}

template <typename T, int VEC>
__global__ void __launch_bounds__(1024)
    normalize_kernel(const T* __restrict__ x, const float* __restrict__ gamma,
                     const float* __restrict__ beta, T* __restrict__ y, Geometry geo, int chunks,
                     const float2* __restrict__ partial, float eps, bool silu) {
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
      moments = make_float2(s.mean, 1.0f / sqrtf(s.m2 / static_cast<float>(geo.elems) + eps));
    }
  }
  __syncthreads();
  const float mean = moments.x;
  const float rstd = moments.y;
  int64_t v0, v1;
  chunk_range(vectors, chunks, chunk, &v0, &v1);
  const T* xg = x + geo.base(ng);
  T* yg = y + geo.base(ng);
  for (int64_t v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    const int64_t i = v * VEC;
    float f[VEC];
    unpack(*reinterpret_cast<const Pack<T, VEC>*>(xg + geo.offset(i)), f);
    *reinterpret_cast<Pack<T, VEC>*>(yg + geo.offset(i)) =
        normalize<T, VEC>(f, geo.channel(ng, i), geo.nhwc, mean, rstd, gamma, beta, silu);
  }
}

gn_status last_launch_status() {
  return cudaGetLastError() == cudaSuccess ? GN_SUCCESS : GN_ERROR_CUDA;
}

template <typename T, int VEC>
gn_status launch_cluster(const gn_plan& plan, const T* x, const float* gamma, const float* beta,
                         T* y, const Geometry& geo, float eps, bool silu, cudaStream_t stream) {
  auto kernel = cluster_kernel<T, VEC>;
  if (plan.smem_bytes > kDefaultSmemLimit &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(plan.smem_bytes)) != cudaSuccess) {
    return GN_ERROR_CUDA;
  }
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = static_cast<unsigned>(plan.chunks);
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(plan.blocks));
  config.blockDim = dim3(static_cast<unsigned>(plan.threads));
  config.dynamicSmemBytes = static_cast<size_t>(plan.smem_bytes);
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  if (cudaLaunchKernelEx(&config, kernel, x, gamma, beta, y, geo, eps, silu) != cudaSuccess) {
    return GN_ERROR_CUDA;
  }
  return last_launch_status();
}

template <typename T, int VEC>
gn_status launch(const gn_params& p, const gn_plan& plan, const void* x, const float* gamma,
                 const float* beta, void* y, void* workspace, cudaStream_t stream) {
  const Geometry geo{p.c, p.spatial, p.c / p.groups, (p.c / p.groups) * p.spatial, p.groups,
                     p.layout == GN_NHWC};
  const bool silu = p.activation == GN_ACT_SILU;
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  const dim3 grid(static_cast<unsigned>(plan.blocks));
  if (plan.path == GN_PATH_ONCHIP) {
    if (plan.smem_bytes > kDefaultSmemLimit &&
        cudaFuncSetAttribute(onchip_kernel<T, VEC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(plan.smem_bytes)) != cudaSuccess) {
      return GN_ERROR_CUDA;
    }
    onchip_kernel<T, VEC><<<grid, plan.threads, plan.smem_bytes, stream>>>(
        xt, gamma, beta, yt, geo, p.epsilon, silu);
    return last_launch_status();
  }
  if (plan.path == GN_PATH_CLUSTER) {
    return launch_cluster<T, VEC>(plan, xt, gamma, beta, yt, geo, p.epsilon, silu, stream);
  }
  auto* partial = static_cast<float2*>(workspace);
  stats_kernel<T, VEC><<<grid, plan.threads, 0, stream>>>(xt, geo, plan.chunks, partial);
  if (last_launch_status() != GN_SUCCESS) return GN_ERROR_CUDA;
  normalize_kernel<T, VEC><<<grid, plan.threads, 0, stream>>>(xt, gamma, beta, yt, geo,
                                                               plan.chunks, partial, p.epsilon,
                                                               silu);
  return last_launch_status();
}

template <typename T>
gn_status launch_dtype(const gn_params& p, const gn_plan& plan, bool vectorized, const void* x,
                       const float* gamma, const float* beta, void* y, void* workspace,
                       cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  return vectorized ? launch<T, kVec>(p, plan, x, gamma, beta, y, workspace, stream)
                    : launch<T, 1>(p, plan, x, gamma, beta, y, workspace, stream);
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

}  // namespace

extern "C" gn_status gn_query_device(gn_device* device) {
  if (device == nullptr) return GN_ERROR_NULL_POINTER;
  int id = 0;
  if (cudaGetDevice(&id) != cudaSuccess) return GN_ERROR_CUDA;
  int sms = 0, smem = 0, major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, id) != cudaSuccess ||
      cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, id) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, id) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, id) != cudaSuccess) {
    return GN_ERROR_CUDA;
  }
  *device = gn_device{sms, smem, major, minor};
  return GN_SUCCESS;
}

extern "C" gn_status gn_workspace_size(const gn_params* params, size_t* bytes) {
  if (bytes == nullptr) return GN_ERROR_NULL_POINTER;
  gn_status status = gn_validate(params);
  if (status != GN_SUCCESS) return status;
  gn_device device;
  if ((status = gn_query_device(&device)) != GN_SUCCESS) return status;
  return gn_workspace_bound(params, &device, bytes);
}

extern "C" gn_status gn_forward(const gn_params* params, const void* x, const float* gamma,
                                const float* beta, void* y, void* workspace,
                                size_t workspace_bytes, void* stream) {
  gn_status status = gn_validate(params);
  if (status != GN_SUCCESS) return status;
  if (x == nullptr || gamma == nullptr || beta == nullptr || y == nullptr) {
    return GN_ERROR_NULL_POINTER;
  }
  gn_device device;
  if ((status = gn_query_device(&device)) != GN_SUCCESS) return status;
  gn_plan plan;
  if ((status = gn_plan_launch(params, &device, &plan)) != GN_SUCCESS) return status;
  if (plan.workspace_bytes > 0 &&
      (workspace == nullptr || workspace_bytes < static_cast<size_t>(plan.workspace_bytes))) {
    return GN_ERROR_WORKSPACE;
  }
  const bool vectorized = plan.vec > 1 && aligned16(x) && aligned16(y);
  auto* s = static_cast<cudaStream_t>(stream);
  switch (params->dtype) {
    case GN_FLOAT32:
      return launch_dtype<float>(*params, plan, vectorized, x, gamma, beta, y, workspace, s);
    case GN_FLOAT16:
      return launch_dtype<__half>(*params, plan, vectorized, x, gamma, beta, y, workspace, s);
    default:
      return launch_dtype<__nv_bfloat16>(*params, plan, vectorized, x, gamma, beta, y, workspace,
                                         s);
  }
}
