// Argument validation and launch planning: plain host C++, no CUDA call, CPU-testable.
#include <cmath>
#include <cstdint>
#include <limits>

#include "groupnorm/groupnorm.h"

namespace {

constexpr int64_t kVectorBytes = 16;
// Shared memory the kernels declare statically (reduction scratch), kept out of the budget.
constexpr int64_t kStaticSmemReserve = 1024;
// A group this small is not worth splitting across blocks even when few groups exist.
constexpr int64_t kSmallGroupElements = 16384;
// Streaming: aim for this many blocks per SM, each thread handling at least a few vectors.
constexpr int64_t kBlocksPerSm = 4;
constexpr int64_t kMinVectorsPerThread = 4;
constexpr int64_t kMaxChunks = 1024;
constexpr int32_t kStreamThreads = 256;
// Portable thread-block cluster sizes (Hopper and newer); 16 needs a non-portable opt-in.
constexpr int64_t kMaxClusterSize = 8;
constexpr int32_t kClusterComputeCapability = 9;

int64_t element_bytes(int32_t dtype) { return dtype == GN_FLOAT32 ? 4 : 2; }

int32_t onchip_threads(int64_t vectors) {
  if (vectors >= 16384) return 1024;
  if (vectors >= 4096) return 512;
  if (vectors >= 1024) return 256;
  return 128;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The smallest cluster size (a power of two up to kMaxClusterSize) whose blocks each hold
// their slice of a group in shared memory and which gives every SM at least one block;
// 0 when no cluster holds the group.
int64_t cluster_size(int64_t vectors, int64_t vector_bytes, int64_t groups_total,
                     int64_t sm_count, int64_t budget) {
  for (int64_t k = 2; k <= kMaxClusterSize; k *= 2) {
    const int64_t slice = round_up(ceil_div(vectors, k) * vector_bytes, kVectorBytes);
    if (slice <= budget && (groups_total * k >= sm_count || k == kMaxClusterSize)) return k;
  }
  return 0;
}

}  // namespace

extern "C" gn_status gn_validate(const gn_params* p) {
  if (p == nullptr) return GN_ERROR_NULL_POINTER;
  if (p->n < 1 || p->c < 1 || p->spatial < 1) return GN_ERROR_INVALID_SHAPE;
  const int64_t limit = std::numeric_limits<int64_t>::max() / 4;
  if (p->n > limit / p->c || p->n * p->c > limit / p->spatial) return GN_ERROR_INVALID_SHAPE;
  if (p->groups <= 0 || p->c % p->groups != 0) return GN_ERROR_INVALID_GROUPS;
  if (!(p->epsilon >= 0.0f) || std::isinf(p->epsilon)) return GN_ERROR_INVALID_EPSILON;
  if (p->dtype != GN_FLOAT32 && p->dtype != GN_FLOAT16 && p->dtype != GN_BFLOAT16) {
    return GN_ERROR_INVALID_DTYPE;
  }
  if (p->layout != GN_NCHW && p->layout != GN_NHWC) return GN_ERROR_INVALID_LAYOUT;
  if (p->activation != GN_ACT_NONE && p->activation != GN_ACT_SILU) {
    return GN_ERROR_INVALID_ACTIVATION;
  }
  return GN_SUCCESS;
}

extern "C" gn_status gn_plan_launch(const gn_params* p, const gn_device* d, gn_plan* plan) {
  const gn_status status = gn_validate(p);
  if (status != GN_SUCCESS) return status;
  if (d == nullptr || plan == nullptr) return GN_ERROR_NULL_POINTER;
  if (d->sm_count < 1 || d->max_smem_per_block < 0) return GN_ERROR_INVALID_DEVICE;

  const int64_t esize = element_bytes(p->dtype);
  const int64_t per_group_channels = p->c / p->groups;
  const int64_t group_elems = per_group_channels * p->spatial;
  const int64_t groups_total = p->n * p->groups;
  const int64_t vec_elems = kVectorBytes / esize;
  // A vector must stay inside one channel (NCHW) or one position's group slice (NHWC).
  const bool vectorizable = p->layout == GN_NCHW ? p->spatial % vec_elems == 0
                                                 : per_group_channels % vec_elems == 0;
  plan->vec = vectorizable ? static_cast<int32_t>(vec_elems) : 1;
  const int64_t vectors = group_elems / plan->vec;

  const int64_t group_bytes = round_up(group_elems * esize, kVectorBytes);
  const int64_t budget = d->max_smem_per_block - kStaticSmemReserve;
  const bool fits = group_bytes <= budget;
  // One block per group reads x once; it pays when every SM gets at least one group.
  const bool fills_gpu = groups_total >= static_cast<int64_t>(d->sm_count);
  const int64_t cluster = d->cc_major >= kClusterComputeCapability
                              ? cluster_size(vectors, plan->vec * esize, groups_total,
                                             d->sm_count, budget)
                              : 0;
  if (fits && (fills_gpu || group_elems <= kSmallGroupElements)) {
    plan->path = GN_PATH_ONCHIP;
    plan->threads = onchip_threads(vectors);
    plan->chunks = 1;
    plan->blocks = groups_total;
    plan->smem_bytes = group_bytes;
    plan->workspace_bytes = 0;
  } else if (cluster > 0) {
    plan->path = GN_PATH_CLUSTER;
    plan->threads = onchip_threads(ceil_div(vectors, cluster));
    plan->chunks = static_cast<int32_t>(cluster);
    plan->blocks = groups_total * cluster;
    plan->smem_bytes = round_up(ceil_div(vectors, cluster) * plan->vec * esize, kVectorBytes);
    plan->workspace_bytes = 0;
  } else {
    plan->path = GN_PATH_STREAM;
    plan->threads = kStreamThreads;
    const int64_t wanted = ceil_div(kBlocksPerSm * d->sm_count, groups_total);
    const int64_t useful = vectors / (kStreamThreads * kMinVectorsPerThread);
    int64_t chunks = wanted < useful ? wanted : useful;
    if (chunks > kMaxChunks) chunks = kMaxChunks;
    if (chunks < 1) chunks = 1;
    plan->chunks = static_cast<int32_t>(chunks);
    plan->blocks = groups_total * chunks;
    plan->smem_bytes = 0;
    plan->workspace_bytes = plan->blocks * 2 * static_cast<int64_t>(sizeof(float));
  }
  if (plan->blocks > std::numeric_limits<int32_t>::max()) return GN_ERROR_INVALID_SHAPE;
  return GN_SUCCESS;
}

extern "C" const char* gn_status_string(gn_status status) {
  switch (status) {
    case GN_SUCCESS: return "success";
    case GN_ERROR_NULL_POINTER: return "a required pointer is NULL";
    case GN_ERROR_INVALID_SHAPE: return "N, C and the spatial size must be >= 1 (and not huge)";
    case GN_ERROR_INVALID_GROUPS: return "groups must be > 0 and divide the channel count";
    case GN_ERROR_INVALID_EPSILON: return "epsilon must be finite and >= 0";
    case GN_ERROR_INVALID_DTYPE: return "dtype must be float32, float16 or bfloat16";
    case GN_ERROR_INVALID_LAYOUT: return "layout must be NCHW or NHWC";
    case GN_ERROR_INVALID_ACTIVATION: return "activation must be none or silu";
    case GN_ERROR_WORKSPACE: return "workspace missing or smaller than gn_workspace_size";
    case GN_ERROR_INVALID_DEVICE: return "device description is unusable";
    case GN_ERROR_CUDA: return "a CUDA runtime call failed";
    case GN_ERROR_INVALID_FIELD: return "a plugin field has the wrong type or length";
  }
  return "unknown status";
}
