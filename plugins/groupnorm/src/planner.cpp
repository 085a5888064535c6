// Argument validation, launch planning and workspace sizing: plain host C++, no CUDA call,
// CPU-testable.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "groupnorm/groupnorm.h"

namespace {

constexpr int64_t kVectorBytes = 16;
// Shared memory the kernels declare statically (reduction scratch), kept out of the budget.
constexpr int64_t kStaticSmemReserve = 1024;
// Shared memory the runtime reserves for each resident block (sm_80 and newer).
constexpr int64_t kRuntimeSmemPerBlock = 1024;
// A group this small is not worth splitting across blocks even when few groups exist.
constexpr int64_t kSmallGroupElements = 16384;
// Device descriptions are clamped to this many SMs, so that no workspace depends on the GPU.
constexpr int64_t kMaxSmCount = 1024;
// Streaming: aim for this many blocks per SM, each thread handling at least a few vectors.
constexpr int64_t kBlocksPerSm = 4;
constexpr int64_t kMinVectorsPerThread = 4;
constexpr int64_t kMaxChunks = 1024;
constexpr int32_t kStreamThreads = 256;
// Portable thread-block cluster sizes; 16 would need a non-portable opt-in.
constexpr int64_t kMaxClusterSize = 8;
// Tiled path (tiled_kernel.cuh): threads, resident blocks per SM, grid cap, slot and tile sizes.
constexpr int32_t kTiledThreads = 256;
constexpr int64_t kTiledBlocksPerSm = 2;
constexpr int64_t kTiledMaxBlocks = 1024;
constexpr int64_t kTiledMaxSlotBytes = 48 * 1024;
constexpr int64_t kTiledMinTileBytes = 4 * 1024;
constexpr int64_t kTiledMaxNhwcGroups = 256;
constexpr int64_t kTiledMaxNhwcChannels = 4096;
// Registers path (register_kernel.cuh): threads per block at most, and the number of threads
// past which each thread holds more vectors (1, 2, 4, then 8) instead of the block growing.
constexpr int64_t kRegisterMaxThreads = 1024;
constexpr int64_t kRegisterTargetThreads = 512;
constexpr int64_t kRegisterMaxVectorsPerThread = 8;

int64_t element_bytes(int32_t dtype) { return dtype == GN_FLOAT32 ? 4 : 2; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

int32_t onchip_threads(int64_t vectors) {
  if (vectors >= 16384) return 1024;
  if (vectors >= 4096) return 512;
  if (vectors >= 1024) return 256;
  return 128;
}

// The numbers every path derives from params.
struct Shape {
  int64_t esize;
  int64_t vec_elems;     // elements in 16 bytes
  int64_t per_group;     // C / G
  int64_t group_elems;   // C / G * spatial
  int64_t groups_total;  // N * G
  bool nhwc;
};

Shape shape_of(const gn_params& p) {
  const int64_t esize = element_bytes(p.dtype);
  const int64_t per_group = p.c / p.groups;
  return Shape{esize, kVectorBytes / esize, per_group, per_group * p.spatial, p.n * p.groups,
               p.layout == GN_NHWC};
}

int64_t sm_count(const gn_device& d) { return std::min<int64_t>(d.sm_count, kMaxSmCount); }

void clear(gn_plan* plan) { *plan = gn_plan{}; }

// ---- per-group (classic) paths -------------------------------------------------------------

// Vectors never cross a channel (NCHW) or a position's group slice (NHWC).
int32_t classic_vec(const gn_params& p, const Shape& s, bool aligned) {
  const bool fits = s.nhwc ? s.per_group % s.vec_elems == 0 : p.spatial % s.vec_elems == 0;
  return fits && aligned ? static_cast<int32_t>(s.vec_elems) : 1;
}

int64_t classic_budget(const gn_device& d) { return d.max_smem_per_block - kStaticSmemReserve; }

bool plan_onchip(const gn_params& p, const gn_device& d, bool aligned, gn_plan* plan) {
  const Shape s = shape_of(p);
  const int64_t group_bytes = round_up(s.group_elems * s.esize, kVectorBytes);
  if (group_bytes > classic_budget(d)) return false;
  clear(plan);
  plan->path = GN_PATH_ONCHIP;
  plan->vec = classic_vec(p, s, aligned);
  plan->threads = onchip_threads(s.group_elems / plan->vec);
  plan->chunks = 1;
  plan->blocks = s.groups_total;
  plan->smem_bytes = group_bytes;
  return true;
}

// The smallest cluster size (a power of two up to kMaxClusterSize) whose blocks each hold
// their slice of a group in shared memory and which gives every SM at least one block.
bool plan_cluster(const gn_params& p, const gn_device& d, bool aligned, gn_plan* plan) {
  if ((d.features & GN_FEATURE_CLUSTER) == 0) return false;
  const Shape s = shape_of(p);
  const int32_t vec = classic_vec(p, s, aligned);
  const int64_t vectors = s.group_elems / vec;
  for (int64_t k = 2; k <= kMaxClusterSize; k *= 2) {
    const int64_t slice = round_up(ceil_div(vectors, k) * vec * s.esize, kVectorBytes);
    if (slice > classic_budget(d)) continue;
    if (s.groups_total * k < sm_count(d) && k < kMaxClusterSize) continue;
    clear(plan);
    plan->path = GN_PATH_CLUSTER;
    plan->vec = vec;
    plan->threads = onchip_threads(ceil_div(vectors, k));
    plan->chunks = static_cast<int32_t>(k);
    plan->blocks = s.groups_total * k;
    plan->smem_bytes = slice;
    return true;
  }
  return false;
}

void plan_stream(const gn_params& p, const gn_device& d, bool aligned, gn_plan* plan) {
  const Shape s = shape_of(p);
  clear(plan);
  plan->path = GN_PATH_STREAM;
  plan->vec = classic_vec(p, s, aligned);
  plan->threads = kStreamThreads;
  const int64_t vectors = s.group_elems / plan->vec;
  const int64_t wanted = ceil_div(kBlocksPerSm * sm_count(d), s.groups_total);
  const int64_t useful = vectors / (kStreamThreads * kMinVectorsPerThread);
  const int64_t chunks = std::max<int64_t>(1, std::min({wanted, useful, kMaxChunks}));
  plan->chunks = static_cast<int32_t>(chunks);
  plan->blocks = s.groups_total * chunks;
  plan->workspace_bytes = plan->blocks * 2 * static_cast<int64_t>(sizeof(float));
}

// A streaming launch uses N*G*chunks blocks with chunks <= ceil(4*SMs / (N*G)): fewer than
// N*G + 4*SMs blocks, two floats each.
int64_t stream_workspace_bound(const gn_params& p) {
  return (p.n * p.groups + kBlocksPerSm * kMaxSmCount) * 2 * static_cast<int64_t>(sizeof(float));
}

// ---- registers path (a candidate: only on request) --------------------------------------

// One block per group, or two (a cluster) on Hopper when one per group would leave SMs idle or
// the group does not fit one block; each thread holds `tiles` 16-byte vectors in registers.
bool plan_registers(const gn_params& p, const gn_device& d, bool aligned, gn_plan* plan) {
  const Shape s = shape_of(p);
  if (classic_vec(p, s, aligned) != s.vec_elems) return false;
  const int64_t vectors = s.group_elems / s.vec_elems;
  const int64_t block_capacity = kRegisterMaxThreads * kRegisterMaxVectorsPerThread;
  const bool cluster = (d.features & GN_FEATURE_CLUSTER) != 0;
  const int64_t k =
      cluster && (s.groups_total < sm_count(d) || vectors > block_capacity) ? 2 : 1;
  const int64_t per_block = ceil_div(vectors, k);
  if (per_block > block_capacity) return false;
  int64_t per_thread = 1;
  while (per_thread < kRegisterMaxVectorsPerThread &&
         ceil_div(per_block, per_thread) > kRegisterTargetThreads) {
    per_thread *= 2;
  }
  clear(plan);
  plan->path = GN_PATH_REGISTERS;
  plan->threads = static_cast<int32_t>(round_up(ceil_div(per_block, per_thread), 32));
  plan->vec = static_cast<int32_t>(s.vec_elems);
  plan->chunks = static_cast<int32_t>(k);
  plan->blocks = s.groups_total * k;
  plan->tiles = static_cast<int32_t>(per_thread);
  return true;
}

// ---- tiled path ----------------------------------------------------------------------------

// A unit is a group (NCHW) or a sample (NHWC); unit_len counts its elements or positions.
struct Units {
  int64_t count;
  int64_t groups;    // groups per unit
  int64_t len;       // elements (NCHW) or positions (NHWC)
  int64_t row_elems; // elements per len step: 1 or C
};

Units units_of(const gn_params& p, const Shape& s) {
  if (s.nhwc) return Units{p.n, p.groups, p.spatial, p.c};
  return Units{s.groups_total, 1, s.group_elems, 1};
}

bool tiled_shape_ok(const gn_params& p, const Shape& s) {
  if (s.nhwc) {
    return p.c % s.vec_elems == 0 && p.c <= kTiledMaxNhwcChannels &&
           p.groups <= kTiledMaxNhwcGroups;
  }
  // NCHW: the kernel tracks channel and position in 32 bits.
  return s.group_elems % s.vec_elems == 0 && p.spatial <= std::numeric_limits<int32_t>::max() &&
         s.per_group <= std::numeric_limits<int32_t>::max();
}

// Shared memory besides the two slots: NHWC per-channel sums, per-group means and statistics.
int64_t tiled_scratch_bytes(const gn_params& p, const Shape& s) {
  if (!s.nhwc) return 0;
  const int64_t chsum = std::max<int64_t>(kTiledThreads * s.vec_elems, p.c);
  return (chsum + p.groups) * 4 + p.groups * 12;
}

// Unit counters, (mean, rstd) per unit and group, and two buffers of partials per block and
// group (alternating by wave, tiled_kernel.cuh).
int64_t tiled_workspace(const Units& u, int64_t blocks) {
  return round_up(u.count * 4, kVectorBytes) + round_up(u.count * u.groups * 8, kVectorBytes) +
         2 * blocks * u.groups * 16;
}

// The most unit_len steps a slot of slot_bytes holds (NCHW: whole vectors).
int64_t slot_capacity(const Shape& s, int64_t row_bytes, int64_t slot_bytes) {
  return s.nhwc ? slot_bytes / row_bytes : slot_bytes / kVectorBytes * s.vec_elems;
}

bool plan_tiled(const gn_params& p, const gn_device& d, bool aligned, gn_plan* plan) {
  const Shape s = shape_of(p);
  if (!aligned || !tiled_shape_ok(p, s)) return false;
  const Units u = units_of(p, s);
  const int64_t row_bytes = u.row_elems * s.esize;
  const int64_t per_block =
      std::min<int64_t>(d.max_smem_per_block,
                        d.smem_per_sm / kTiledBlocksPerSm - kRuntimeSmemPerBlock) -
      kStaticSmemReserve - tiled_scratch_bytes(p, s);
  const int64_t blocks_max = std::min(kTiledMaxBlocks, kTiledBlocksPerSm * sm_count(d));
  const int64_t min_tile = s.nhwc ? std::max<int64_t>(1, kTiledMinTileBytes / row_bytes)
                                  : kTiledMinTileBytes / s.esize;
  // On chip: each block of a unit holds one tile in one of three slots (this unit's, the
  // previous unit's being normalised, the next unit's loading). Otherwise: two slots stream.
  const int64_t cap3 = slot_capacity(s, row_bytes, std::min(kTiledMaxSlotBytes, per_block / 3));
  const int64_t cap2 = slot_capacity(s, row_bytes, std::min(kTiledMaxSlotBytes, per_block / 2));
  if (cap2 < 1) return false;
  const bool resident = cap3 >= 1 && ceil_div(u.len, cap3) <= blocks_max;
  int64_t per_unit, units_per_wave, tiles;
  if (resident) {
    units_per_wave = std::min(u.count, blocks_max / ceil_div(u.len, cap3));
    per_unit = std::max<int64_t>(
        1, std::min(blocks_max / units_per_wave, ceil_div(u.len, min_tile)));
    tiles = 1;
  } else {
    units_per_wave = 1;
    per_unit = blocks_max;
    tiles = std::max<int64_t>(2, ceil_div(u.len, per_unit * cap2));
  }
  if (per_unit > 1 && (d.features & GN_FEATURE_COOPERATIVE) == 0) return false;
  int64_t tile = ceil_div(u.len, per_unit * tiles);
  if (!s.nhwc) tile = round_up(tile, s.vec_elems);
  if (tiles > std::numeric_limits<int32_t>::max()) return false;
  clear(plan);
  plan->path = GN_PATH_TILED;
  plan->threads = kTiledThreads;
  plan->vec = static_cast<int32_t>(s.vec_elems);
  plan->chunks = static_cast<int32_t>(per_unit);
  plan->blocks = per_unit * units_per_wave;
  plan->tiles = static_cast<int32_t>(tiles);
  plan->units_per_wave = static_cast<int32_t>(units_per_wave);
  plan->tile = tile;
  plan->slot_elems = tile * u.row_elems;
  plan->smem_bytes = (resident ? 3 : 2) * plan->slot_elems * s.esize + tiled_scratch_bytes(p, s);
  plan->workspace_bytes = tiled_workspace(u, plan->blocks);
  return true;
}

// Independent of the spatial size (which may be smaller at run time and then qualify where the
// maximum did not); only the channel conditions of the NHWC path are fixed by the model.
int64_t tiled_workspace_bound(const gn_params& p) {
  const Shape s = shape_of(p);
  if (s.nhwc && !tiled_shape_ok(p, s)) return 0;
  return tiled_workspace(units_of(p, s), kTiledMaxBlocks);
}

// ---- choice --------------------------------------------------------------------------------

bool plan_auto(const gn_params& p, const gn_device& d, bool aligned, gn_plan* plan) {
  const Shape s = shape_of(p);
  const bool small_or_many = s.groups_total >= sm_count(d) || s.group_elems <= kSmallGroupElements;
  // Groups that are many or small, read in 16-byte vectors: one block per group, no
  // cooperation between blocks.
  if (small_or_many && classic_vec(p, s, aligned) > 1 && plan_onchip(p, d, aligned, plan)) {
    return true;
  }
  if (plan_tiled(p, d, aligned, plan)) return true;
  if (small_or_many && plan_onchip(p, d, aligned, plan)) return true;
  if (plan_cluster(p, d, aligned, plan)) return true;
  plan_stream(p, d, aligned, plan);
  return true;
}

bool plan_forced(const gn_params& p, const gn_device& d, int32_t path, bool aligned,
                 gn_plan* plan) {
  switch (path) {
    case GN_PATH_AUTO: return plan_auto(p, d, aligned, plan);
    case GN_PATH_ONCHIP: return plan_onchip(p, d, aligned, plan);
    case GN_PATH_CLUSTER: return plan_cluster(p, d, aligned, plan);
    case GN_PATH_TILED: return plan_tiled(p, d, aligned, plan);
    case GN_PATH_STREAM: plan_stream(p, d, aligned, plan); return true;
    case GN_PATH_REGISTERS: return plan_registers(p, d, aligned, plan);
    default: return false;
  }
}

}  // namespace

extern "C" gn_status gn_validate(const gn_params* p) {
  if (p == nullptr) return GN_ERROR_NULL_POINTER;
  if (p->n < 0 || p->c < 1 || p->spatial < 0) return GN_ERROR_INVALID_SHAPE;
  const int64_t limit = std::numeric_limits<int64_t>::max() / 4;
  if (p->n > limit / p->c || (p->spatial > 0 && p->n * p->c > limit / p->spatial)) {
    return GN_ERROR_INVALID_SHAPE;
  }
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

extern "C" gn_status gn_plan_launch_path(const gn_params* p, const gn_device* d, int32_t path,
                                         int32_t aligned, gn_plan* plan) {
  const gn_status status = gn_validate(p);
  if (status != GN_SUCCESS) return status;
  if (d == nullptr || plan == nullptr) return GN_ERROR_NULL_POINTER;
  if (d->sm_count < 1 || d->max_smem_per_block < 0 || d->smem_per_sm < 0) {
    return GN_ERROR_INVALID_DEVICE;
  }
  if (p->n == 0 || p->spatial == 0) {
    clear(plan);
    plan->path = GN_PATH_EMPTY;
    return GN_SUCCESS;
  }
  if (!plan_forced(*p, *d, path, aligned != 0, plan)) return GN_ERROR_INVALID_PATH;
  if (plan->blocks > std::numeric_limits<int32_t>::max()) return GN_ERROR_INVALID_SHAPE;
  return GN_SUCCESS;
}

extern "C" gn_status gn_plan_launch(const gn_params* p, const gn_device* d, gn_plan* plan) {
  return gn_plan_launch_path(p, d, GN_PATH_AUTO, 1, plan);
}

extern "C" gn_status gn_workspace_size(const gn_params* p, size_t* bytes) {
  if (bytes == nullptr) return GN_ERROR_NULL_POINTER;
  const gn_status status = gn_validate(p);
  if (status != GN_SUCCESS) return status;
  *bytes = static_cast<size_t>(std::max(stream_workspace_bound(*p), tiled_workspace_bound(*p)));
  return GN_SUCCESS;
}

extern "C" const char* gn_status_string(gn_status status) {
  switch (status) {
    case GN_SUCCESS: return "success";
    case GN_ERROR_NULL_POINTER: return "a required pointer is NULL";
    case GN_ERROR_INVALID_SHAPE: return "C must be >= 1, N and the spatial size >= 0 (and not huge)";
    case GN_ERROR_INVALID_GROUPS: return "groups must be > 0 and divide the channel count";
    case GN_ERROR_INVALID_EPSILON: return "epsilon must be finite and >= 0";
    case GN_ERROR_INVALID_DTYPE: return "dtype must be float32, float16 or bfloat16";
    case GN_ERROR_INVALID_LAYOUT: return "layout must be NCHW or NHWC";
    case GN_ERROR_INVALID_ACTIVATION: return "activation must be none or silu";
    case GN_ERROR_WORKSPACE: return "workspace missing or smaller than gn_workspace_size";
    case GN_ERROR_INVALID_DEVICE: return "device description is unusable";
    case GN_ERROR_CUDA: return "a CUDA runtime call failed";
    case GN_ERROR_INVALID_FIELD: return "a plugin field has the wrong type or length";
    case GN_ERROR_INVALID_PATH: return "the requested launch path cannot serve these params here";
    case GN_ERROR_HOST: return "host memory ran out or the caller's parallel-for failed";
  }
  return "unknown status";
}
