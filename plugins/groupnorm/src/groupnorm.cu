// gn_forward and the device query: launch the kernels the planner chose. No TensorRT types;
// errors are returned; no host synchronisation; every launch can be captured in a CUDA graph.
// Statistics are fp32 whatever the I/O type; results are bitwise reproducible for a shape.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "classic_kernels.cuh"
#include "groupnorm/groupnorm.h"
#include "register_kernel.cuh"
#include "tiled_kernel.cuh"

namespace {

using gn::Geometry;
using gn::TiledArgs;

constexpr int64_t kDefaultSmemLimit = 48 * 1024;
constexpr int kMaxDevices = 64;
constexpr int kClusterComputeCapability = 90;

gn_status cuda_status(cudaError_t error) {
  return error == cudaSuccess ? GN_SUCCESS : GN_ERROR_CUDA;
}

gn_status last_launch_status() { return cuda_status(cudaGetLastError()); }

int64_t round_up16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

// Raise KERNEL's dynamic shared-memory limit to what the device allows beside its static
// shared memory, once per device and thread-safely, instead of on every launch (concurrent
// execution contexts share kernels); prefer the largest shared-memory carveout.
template <auto KERNEL>
cudaError_t allow_smem(int64_t bytes) {
  if (bytes <= kDefaultSmemLimit) return cudaSuccess;
  static std::once_flag once[kMaxDevices];
  static cudaError_t result[kMaxDevices];
  int device = 0;
  const cudaError_t error = cudaGetDevice(&device);
  if (error != cudaSuccess) return error;
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  std::call_once(once[device], [device] {
    int optin = 0;
    cudaFuncAttributes attributes{};
    cudaError_t e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (e == cudaSuccess) e = cudaFuncGetAttributes(&attributes, KERNEL);
    if (e == cudaSuccess) {
      e = cudaFuncSetAttribute(KERNEL, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               optin - static_cast<int>(attributes.sharedSizeBytes));
    }
    if (e == cudaSuccess) {
      e = cudaFuncSetAttribute(KERNEL, cudaFuncAttributePreferredSharedMemoryCarveout,
                               cudaSharedmemCarveoutMaxShared);
    }
    result[device] = e;
  });
  return result[device];
}

// The plan's grid, block and shared memory on stream, with one launch attribute (which must
// outlive the launch).
cudaLaunchConfig_t launch_config(const gn_plan& plan, cudaStream_t stream,
                                 cudaLaunchAttribute* attribute) {
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(plan.blocks));
  config.blockDim = dim3(static_cast<unsigned>(plan.threads));
  config.dynamicSmemBytes = static_cast<size_t>(plan.smem_bytes);
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = 1;
  return config;
}

// Clusters of `blocks` blocks along x.
cudaLaunchAttribute cluster_attribute(int32_t blocks) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = static_cast<unsigned>(blocks);
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = 1;
  return attribute;
}

template <typename T, int VEC>
gn_status launch_cluster(const gn_plan& plan, const T* x, const float* gamma, const float* beta,
                         T* y, const Geometry& geo, float eps, bool act, cudaStream_t stream) {
  if (allow_smem<gn::cluster_kernel<T, VEC>>(plan.smem_bytes) != cudaSuccess) {
    return GN_ERROR_CUDA;
  }
  cudaLaunchAttribute attribute = cluster_attribute(plan.chunks);
  const cudaLaunchConfig_t config = launch_config(plan, stream, &attribute);
  return cuda_status(
      cudaLaunchKernelEx(&config, gn::cluster_kernel<T, VEC>, x, gamma, beta, y, geo, eps, act));
}

Geometry geometry_of(const gn_params& p) {
  return Geometry{p.c, p.spatial, p.c / p.groups, (p.c / p.groups) * p.spatial, p.groups,
                  p.layout == GN_NHWC};
}

template <typename T, int VEC>
gn_status launch_classic(const gn_params& p, const gn_plan& plan, const T* x, const float* gamma,
                         const float* beta, T* y, void* workspace, cudaStream_t stream) {
  const Geometry geo = geometry_of(p);
  const bool act = p.activation == GN_ACT_SILU;
  const dim3 grid(static_cast<unsigned>(plan.blocks));
  if (plan.path == GN_PATH_ONCHIP) {
    if (allow_smem<gn::onchip_kernel<T, VEC>>(plan.smem_bytes) != cudaSuccess) {
      return GN_ERROR_CUDA;
    }
    gn::onchip_kernel<T, VEC><<<grid, plan.threads, plan.smem_bytes, stream>>>(
        x, gamma, beta, y, geo, p.epsilon, act);
    return last_launch_status();
  }
  if (plan.path == GN_PATH_CLUSTER) {
    return launch_cluster<T, VEC>(plan, x, gamma, beta, y, geo, p.epsilon, act, stream);
  }
  auto* partial = static_cast<float2*>(workspace);
  gn::stats_kernel<T, VEC><<<grid, plan.threads, 0, stream>>>(x, geo, plan.chunks, partial);
  if (last_launch_status() != GN_SUCCESS) return GN_ERROR_CUDA;
  gn::normalize_kernel<T, VEC><<<grid, plan.threads, 0, stream>>>(
      x, gamma, beta, y, geo, plan.chunks, partial, p.epsilon, act);
  return last_launch_status();
}

// The register kernel holding plan.tiles vectors per thread.
template <typename T, bool NHWC>
auto register_kernel_for(int32_t vectors_per_thread) {
  switch (vectors_per_thread) {
    case 1: return gn::register_kernel<T, 1, NHWC>;
    case 2: return gn::register_kernel<T, 2, NHWC>;
    case 4: return gn::register_kernel<T, 4, NHWC>;
    default: return gn::register_kernel<T, 8, NHWC>;
  }
}

// One block per group, or a cluster of plan.chunks blocks (Hopper); no workspace.
template <typename T>
cudaError_t launch_registers(const gn_params& p, const gn_plan& plan, const T* x,
                             const float* gamma, const float* beta, T* y, cudaStream_t stream) {
  const bool nhwc = p.layout == GN_NHWC;
  const int64_t row = nhwc ? p.c / p.groups : p.spatial;
  const auto row_vectors = static_cast<int32_t>(row / plan.vec);
  auto* kernel = nhwc ? register_kernel_for<T, true>(plan.tiles)
                      : register_kernel_for<T, false>(plan.tiles);
  cudaLaunchAttribute attribute{};  // no cluster for one block per group (any GPU)
  attribute.id = cudaLaunchAttributeCooperative;
  attribute.val.cooperative = 0;
  if (plan.chunks > 1) attribute = cluster_attribute(plan.chunks);
  const cudaLaunchConfig_t config = launch_config(plan, stream, &attribute);
  return cudaLaunchKernelEx(&config, kernel, x, gamma, beta, y, geometry_of(p), row_vectors,
                            plan.chunks, p.epsilon, p.activation == GN_ACT_SILU);
}

// The tiled kernel's arguments and workspace layout (planner.cpp's tiled_workspace):
// unit counters, then (mean, rstd) per unit and group, then partials per block and group.
template <typename T>
cudaError_t launch_tiled(const gn_params& p, const gn_plan& plan, const T* x, const float* gamma,
                         const float* beta, T* y, void* workspace, cudaStream_t stream) {
  const bool nhwc = p.layout == GN_NHWC;
  const int64_t per_group = p.c / p.groups;
  const int64_t units = nhwc ? p.n : p.n * p.groups;
  const int64_t unit_groups = nhwc ? p.groups : 1;
  TiledArgs a{};
  a.channels = p.c;
  a.spatial = p.spatial;
  a.per_group = per_group;
  a.units = units;
  a.unit_len = nhwc ? p.spatial : per_group * p.spatial;
  a.tile = plan.tile;
  a.waves = (units + plan.units_per_wave - 1) / plan.units_per_wave;
  a.step_channels = gn::kTiledThreads * plan.vec / p.spatial;
  a.step_rest = gn::kTiledThreads * plan.vec % p.spatial;
  a.groups = p.groups;
  a.unit_groups = static_cast<int32_t>(unit_groups);
  a.per_unit = plan.chunks;
  a.units_per_wave = plan.units_per_wave;
  a.tiles = plan.tiles;
  a.slot_elems = static_cast<int32_t>(plan.slot_elems);
  a.act = p.activation == GN_ACT_SILU;
  a.eps = p.epsilon;
  auto* base = static_cast<unsigned char*>(workspace);
  auto* counters = reinterpret_cast<unsigned*>(base);
  auto* final_stats = reinterpret_cast<float2*>(base + round_up16(units * 4));
  auto* partials = reinterpret_cast<float4*>(base + round_up16(units * 4) +
                                             round_up16(units * unit_groups * 8));
  auto* kernel = nhwc ? gn::tiled_kernel<T, true> : gn::tiled_kernel<T, false>;
  cudaError_t error = nhwc ? allow_smem<gn::tiled_kernel<T, true>>(plan.smem_bytes)
                           : allow_smem<gn::tiled_kernel<T, false>>(plan.smem_bytes);
  if (error == cudaSuccess && plan.chunks > 1) {  // unit counters start at zero
    error = cudaMemsetAsync(counters, 0, static_cast<size_t>(units) * 4, stream);
  }
  if (error != cudaSuccess) return error;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeCooperative;
  attribute.val.cooperative = plan.chunks > 1 ? 1 : 0;
  const cudaLaunchConfig_t config = launch_config(plan, stream, &attribute);
  return cudaLaunchKernelEx(&config, kernel, x, gamma, beta, y, a, counters, final_stats,
                            partials);
}

template <typename T>
gn_status launch_dtype(const gn_params& p, const gn_plan& plan, const void* xv,
                       const float* gamma, const float* beta, void* yv, void* workspace,
                       cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  if (plan.path == GN_PATH_TILED) {
    return cuda_status(launch_tiled<T>(p, plan, x, gamma, beta, y, workspace, stream));
  }
  if (plan.path == GN_PATH_REGISTERS) {
    return cuda_status(launch_registers<T>(p, plan, x, gamma, beta, y, stream));
  }
  return plan.vec > 1 ? launch_classic<T, kVec>(p, plan, x, gamma, beta, y, workspace, stream)
                      : launch_classic<T, 1>(p, plan, x, gamma, beta, y, workspace, stream);
}

gn_status launch(const gn_params& p, const gn_plan& plan, const void* x, const float* gamma,
                 const float* beta, void* y, void* workspace, cudaStream_t stream) {
  switch (p.dtype) {
    case GN_FLOAT32:
      return launch_dtype<float>(p, plan, x, gamma, beta, y, workspace, stream);
    case GN_FLOAT16:
      return launch_dtype<__half>(p, plan, x, gamma, beta, y, workspace, stream);
    default:
      return launch_dtype<__nv_bfloat16>(p, plan, x, gamma, beta, y, workspace, stream);
  }
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// Whether this library holds cluster code (sm_90+) that runs on device (asked once per device).
bool has_cluster_code(int device) {
  if (device < 0 || device >= kMaxDevices) return false;
  static std::once_flag once[kMaxDevices];
  static bool result[kMaxDevices];
  std::call_once(once[device], [device] {
    cudaFuncAttributes attributes{};
    result[device] = cudaFuncGetAttributes(&attributes, gn::cluster_kernel<float, 1>) ==
                         cudaSuccess &&
                     attributes.binaryVersion >= kClusterComputeCapability;
  });
  return result[device];
}

}  // namespace

extern "C" gn_status gn_query_device(gn_device* device) {
  if (device == nullptr) return GN_ERROR_NULL_POINTER;
  int id = 0;
  if (cudaGetDevice(&id) != cudaSuccess) return GN_ERROR_CUDA;
  int sms = 0, smem = 0, major = 0, minor = 0, smem_sm = 0, cooperative = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, id) != cudaSuccess ||
      cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, id) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, id) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, id) != cudaSuccess ||
      cudaDeviceGetAttribute(&smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, id) !=
          cudaSuccess ||
      cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, id) != cudaSuccess) {
    return GN_ERROR_CUDA;
  }
  int32_t features = cooperative != 0 ? GN_FEATURE_COOPERATIVE : 0;
  if (major * 10 + minor >= kClusterComputeCapability && has_cluster_code(id)) {
    features |= GN_FEATURE_CLUSTER;
  }
  *device = gn_device{sms, smem, major, minor, smem_sm, features};
  return GN_SUCCESS;
}

extern "C" gn_status gn_forward_path(const gn_params* params, int32_t path, const void* x,
                                     const float* gamma, const float* beta, void* y,
                                     void* workspace, size_t workspace_bytes, void* stream) {
  gn_status status = gn_validate(params);
  if (status != GN_SUCCESS) return status;
  if (params->n == 0 || params->spatial == 0) return GN_SUCCESS;  // an empty tensor
  if (x == nullptr || gamma == nullptr || beta == nullptr || y == nullptr) {
    return GN_ERROR_NULL_POINTER;
  }
  gn_device device;
  if ((status = gn_query_device(&device)) != GN_SUCCESS) return status;
  const int32_t aligned = aligned16(x) && aligned16(y);
  gn_plan plan;
  status = gn_plan_launch_path(params, &device, path, aligned, &plan);
  if (status != GN_SUCCESS) return status;
  if (plan.workspace_bytes > 0 &&
      (workspace == nullptr || workspace_bytes < static_cast<size_t>(plan.workspace_bytes))) {
    return GN_ERROR_WORKSPACE;
  }
  auto* s = static_cast<cudaStream_t>(stream);
  status = launch(*params, plan, x, gamma, beta, y, workspace, s);
  if (status != GN_SUCCESS && path == GN_PATH_AUTO && plan.path == GN_PATH_TILED &&
      cudaGetLastError() == cudaErrorCooperativeLaunchTooLarge) {
    // Fewer SMs are ours than the device has (MPS, green contexts): stream instead.
    return gn_forward_path(params, GN_PATH_STREAM, x, gamma, beta, y, workspace,
                           workspace_bytes, stream);
  }
  return status;
}

extern "C" gn_status gn_forward(const gn_params* params, const void* x, const float* gamma,
                                const float* beta, void* y, void* workspace,
                                size_t workspace_bytes, void* stream) {
  return gn_forward_path(params, GN_PATH_AUTO, x, gamma, beta, y, workspace, workspace_bytes,
                         stream);
}
