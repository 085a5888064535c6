// The tiled GN kernel: one persistent, co-resident grid that reads x from HBM once wherever the
// data fits on chip, in both layouts.
//
// A *unit* is what one set of statistics needs: a group (NCHW, contiguous) or a sample (NHWC:
// every position holds all G groups, so a tile of whole rows carries partials for each group).
// Units are processed in waves of `units_per_wave`; `per_unit` blocks share a unit, and each
// owns `tiles` tiles of it (tile j = i * per_unit + part), staged in shared-memory slots by
// 16-byte asynchronous copies. Per tile the statistics are taken in two passes over shared
// memory (mean, then squared deviations) and merged in tile order (Chan). A block publishes its
// partials, the last block of the unit to arrive merges them in block order and publishes
// (mean, rstd); the others wait on the unit's counter. Tiles still in shared memory are
// normalised from there; earlier ones (a unit larger than the chip) are read again in reverse
// order of loading, so the most recent come from L2. Every partial sits at a fixed place and
// is merged in a fixed order: results are bitwise reproducible.
//
// The grid is launched cooperatively (all blocks resident, so waiting cannot deadlock); the
// unit counters live in the workspace, zeroed by a memset before the launch.
//
// With one tile per block and unit (the unit fits on chip) the block runs a three-slot
// pipeline over its units: the statistics of unit w are published before it waits for unit
// w - 1, whose tile it then normalises while unit w + 1's tile loads. A unit's barrier latency
// is hidden behind the neighbouring units' work; partials alternate between two buffers by
// wave parity, so that publishing w never overwrites what w - 1's merge still reads.
#ifndef GN_DEPLOY_TILED_KERNEL_CUH
#define GN_DEPLOY_TILED_KERNEL_CUH

#include "device_common.cuh"

namespace gn {

constexpr int kTiledThreads = 256;

struct TiledArgs {
  int64_t channels;        // C
  int64_t spatial;         // positions per sample
  int64_t per_group;       // C / G
  int64_t units;           // N * G (NCHW) or N (NHWC)
  int64_t unit_len;        // elements (NCHW) or positions (NHWC) of a unit
  int64_t tile;            // elements or positions per tile
  int64_t waves;           // ceil(units / units_per_wave)
  int64_t step_channels;   // NCHW: (threads * VEC) / spatial, a thread's step in channels
  int64_t step_rest;       // and (threads * VEC) % spatial
  int32_t groups;          // G
  int32_t unit_groups;     // groups per unit: 1 (NCHW) or G (NHWC)
  int32_t per_unit;        // blocks per unit
  int32_t units_per_wave;  // units in flight at once
  int32_t tiles;           // tiles per block and unit
  int32_t slot_elems;      // elements one shared-memory slot holds
  int32_t act;
  float eps;
};

// Shared state of one block while it works on a unit.
struct TiledShared {
  float* chsum;  // NHWC: per (row lane, channel) partial sums, then per channel
  float* gmean;  // NHWC: per group mean of the current tile
  Stats* run;    // NHWC: per group statistics of the block's tiles so far
  float* red;        // 32 floats for block sums
  Stats* red_stats;  // 32 Stats for block merges
  int* flag;         // one int: this block merges the unit
};

template <typename T, bool NHWC>
struct TiledKernel {
  static constexpr int VEC = 16 / static_cast<int>(sizeof(T));

  const T* __restrict__ x;
  const float* __restrict__ gamma;
  const float* __restrict__ beta;
  T* __restrict__ y;
  const TiledArgs& a;
  const TiledShared& sh;
  T* slots;
  int64_t row_elems;  // elements per unit_len step: C (NHWC) or 1 (NCHW)

  // Tile i of this block in unit u: [begin, end) in unit_len steps.
  __device__ __forceinline__ void tile_range(int i, int part, int64_t* begin, int64_t* end) const {
    const int64_t j = static_cast<int64_t>(i) * a.per_unit + part;
    *begin = min(a.unit_len, j * a.tile);
    *end = min(a.unit_len, *begin + a.tile);
  }

  __device__ __forceinline__ int64_t unit_base(int64_t unit) const {
    return unit * a.unit_len * row_elems;
  }

  __device__ __forceinline__ T* slot(int index) const {
    return slots + static_cast<int64_t>(index) * a.slot_elems;
  }

  // Stage tile i of unit into slot `index` (asynchronous; one commit group per call and thread).
  __device__ __forceinline__ void issue(int64_t unit, int part, int i, int index) const {
    int64_t b, e;
    tile_range(i, part, &b, &e);
    const T* src = x + unit_base(unit) + b * row_elems;
    T* dst = slot(index);
    const int64_t vectors = (e - b) * row_elems / VEC;
    for (int64_t v = threadIdx.x; v < vectors; v += kTiledThreads) {
      copy_async16(dst + v * VEC, src + v * VEC);
    }
    copy_async_commit();
  }

  // NCHW: two-pass statistics of a staged tile of `count` elements. The first pass sums
  // x - x[0] so that a large mean costs no precision.
  __device__ __forceinline__ Stats nchw_tile_stats(const T* s, int64_t count) const {
    if (count == 0) return Stats{0.0f, 0.0f, 0.0f};
    const int64_t vectors = count / VEC;
    const float shift = to_float(s[0]);
    float sum = 0.0f;
    for (int64_t v = threadIdx.x; v < vectors; v += kTiledThreads) {
      float f[VEC];
      load_shared<T, VEC>(s + v * VEC, f);
#pragma unroll
      for (int k = 0; k < VEC; ++k) sum += f[k] - shift;
    }
    sum = block_reduce(sum, sh.red);
    const float mean = shift + sum / static_cast<float>(count);
    float m2 = 0.0f;
    for (int64_t v = threadIdx.x; v < vectors; v += kTiledThreads) {
      float f[VEC];
      load_shared<T, VEC>(s + v * VEC, f);
#pragma unroll
      for (int k = 0; k < VEC; ++k) m2 += (f[k] - mean) * (f[k] - mean);
    }
    m2 = block_reduce(m2, sh.red);
    return Stats{mean, m2, static_cast<float>(count)};
  }

  // NHWC: the group of channel col * VEC + k (C <= 4096 on this path: 32-bit arithmetic).
  __device__ __forceinline__ int channel_group(int64_t col, int k) const {
    return (static_cast<int>(col) * VEC + k) / static_cast<int>(a.per_group);
  }

  // NHWC thread layout: `lanes` threads share a row, each owning the channel vectors col0,
  // col0 + lanes, ...; `rows_per_step` rows are covered at once.
  __device__ __forceinline__ int64_t col_vectors() const { return a.channels / VEC; }
  __device__ __forceinline__ int lanes() const {
    return static_cast<int>(col_vectors() < kTiledThreads ? col_vectors() : kTiledThreads);
  }

  // One pass over a staged NHWC tile of `rows` rows: per channel sums of x - x[row 0] (pass 0)
  // or of (x - tile group mean)^2 (pass 1), reduced to chsum[0, C) in row order.
  __device__ __forceinline__ void nhwc_channel_pass(const T* s, int64_t rows, int pass) const {
    const int nl = lanes();
    const int rows_per_step = kTiledThreads / nl;
    const int col0 = threadIdx.x % nl;
    const int row0 = threadIdx.x / nl;
    if (row0 < rows_per_step) {
#pragma unroll 1
      for (int64_t col = col0; col < col_vectors(); col += nl) {
        float mk[VEC], acc[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          mk[k] = pass == 0 ? to_float(s[col * VEC + k]) : sh.gmean[channel_group(col, k)];
          acc[k] = 0.0f;
        }
        for (int64_t r = row0; r < rows; r += rows_per_step) {
          float f[VEC];
          load_shared<T, VEC>(s + r * a.channels + col * VEC, f);
#pragma unroll
          for (int k = 0; k < VEC; ++k) {
            const float d = f[k] - mk[k];
            acc[k] += pass == 0 ? d : d * d;
          }
        }
#pragma unroll
        for (int k = 0; k < VEC; ++k) sh.chsum[row0 * a.channels + col * VEC + k] = acc[k];
      }
    }
    __syncthreads();
    for (int64_t c = threadIdx.x; c < a.channels; c += kTiledThreads) {
      float total = 0.0f;
      for (int r = 0; r < rows_per_step; ++r) total += sh.chsum[r * a.channels + c];
      sh.chsum[c] = total;
    }
    __syncthreads();
  }

  // NHWC: statistics of a staged tile, per group, merged into sh.run.
  __device__ __forceinline__ void nhwc_tile_stats(const T* s, int64_t rows) const {
    const float count = static_cast<float>(rows * a.per_group);
    nhwc_channel_pass(s, rows, 0);
    for (int g = threadIdx.x; g < a.groups; g += kTiledThreads) {
      float total = 0.0f;  // the mean of the channel means, each row 0's value plus a small part
      for (int64_t c = g * a.per_group; c < (g + 1) * a.per_group; ++c) {
        total += to_float(s[c]) + sh.chsum[c] / static_cast<float>(rows);
      }
      sh.gmean[g] = rows > 0 ? total / static_cast<float>(a.per_group) : 0.0f;
    }
    __syncthreads();
    nhwc_channel_pass(s, rows, 1);
    for (int g = threadIdx.x; g < a.groups; g += kTiledThreads) {
      float total = 0.0f;
      for (int64_t c = g * a.per_group; c < (g + 1) * a.per_group; ++c) total += sh.chsum[c];
      if (rows > 0) sh.run[g] = merge(sh.run[g], Stats{sh.gmean[g], total, count});
    }
    __syncthreads();
  }

  // Reset the block's statistics of a unit (NHWC keeps them per group in shared memory).
  __device__ __forceinline__ void begin_unit() const {
    if constexpr (NHWC) {
      for (int g = threadIdx.x; g < a.groups; g += kTiledThreads) sh.run[g] = Stats{0, 0, 0};
    }
  }

  // Statistics of staged tile i of the unit, merged into run (NCHW) or sh.run (NHWC).
  __device__ __forceinline__ void tile_stats(int part, int i, const T* s, Stats* run) const {
    int64_t b, e;
    tile_range(i, part, &b, &e);
    if constexpr (NHWC) {
      nhwc_tile_stats(s, e - b);
    } else {
      *run = merge(*run, nchw_tile_stats(s, e - b));
    }
  }

  // Every tile of the block in the unit, two slots deep; the last two stay staged.
  __device__ __forceinline__ Stats gather(int64_t unit, int part) const {
    Stats run{0.0f, 0.0f, 0.0f};
    begin_unit();
    issue(unit, part, 0, 0);
    if (a.tiles > 1) issue(unit, part, 1, 1);
    for (int i = 0; i < a.tiles; ++i) {
      if (i + 1 < a.tiles) {
        copy_async_wait<1>();
      } else {
        copy_async_wait<0>();
      }
      __syncthreads();
      tile_stats(part, i, slot(i & 1), &run);
      __syncthreads();
      if (i + 2 < a.tiles) issue(unit, part, i + 2, i & 1);
    }
    return run;
  }

  // Merge the unit's partials (blocks in order, per group) and publish (mean, rstd).
  __device__ __forceinline__ void merge_unit(int64_t unit, const float4* partials) const {
    const int ug = a.unit_groups;
    const float count = static_cast<float>(a.unit_len * (NHWC ? a.per_group : 1));
    constexpr int kLoads = 4;  // loads in flight per thread before the first merge
    if (ug == 1) {
      Stats s{0.0f, 0.0f, 0.0f};
      for (int q0 = 0; q0 < a.per_unit; q0 += kLoads * kTiledThreads) {
        float4 p[kLoads];
#pragma unroll
        for (int j = 0; j < kLoads; ++j) {
          const int q = q0 + j * kTiledThreads + threadIdx.x;
          p[j] = q < a.per_unit ? __ldcg(partials + q) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int j = 0; j < kLoads; ++j) s = merge(s, Stats{p[j].x, p[j].y, p[j].z});
      }
      s = block_reduce(s, sh.red_stats);
      if (threadIdx.x == 0) final_of(unit)[0] = make_float2(s.mean, rsqrtf(s.m2 / count + a.eps));
      return;
    }
    const int lane = threadIdx.x & 31;
    for (int g = threadIdx.x >> 5; g < ug; g += kTiledThreads / 32) {
      Stats s{0.0f, 0.0f, 0.0f};
      for (int q0 = 0; q0 < a.per_unit; q0 += kLoads * 32) {
        float4 p[kLoads];
#pragma unroll
        for (int j = 0; j < kLoads; ++j) {
          const int q = q0 + j * 32 + lane;
          p[j] = q < a.per_unit ? __ldcg(partials + static_cast<int64_t>(q) * ug + g)
                                : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int j = 0; j < kLoads; ++j) s = merge(s, Stats{p[j].x, p[j].y, p[j].z});
      }
      s = warp_reduce(s);
      if (lane == 0) final_of(unit)[g] = make_float2(s.mean, rsqrtf(s.m2 / count + a.eps));
    }
  }

  float2* final_stats;
  float4* partials;    // two buffers of gridDim.x * unit_groups, by wave parity
  unsigned* counters;

  __device__ __forceinline__ float2* final_of(int64_t unit) const {
    return final_stats + unit * a.unit_groups;
  }

  // Publish the block's partials of the unit (wave w); the last block to arrive merges them
  // and releases the unit. Does not wait.
  __device__ __forceinline__ void arrive(int64_t unit, int64_t w, int local, Stats run) const {
    const int ug = a.unit_groups;
    float4* mine = partials + (w & 1) * static_cast<int64_t>(gridDim.x) * ug;
    if constexpr (NHWC) {
      for (int g = threadIdx.x; g < ug; g += kTiledThreads) {
        const Stats s = sh.run[g];
        mine[static_cast<int64_t>(blockIdx.x) * ug + g] = make_float4(s.mean, s.m2, s.count, 0.f);
      }
    } else if (threadIdx.x == 0) {
      mine[blockIdx.x] = make_float4(run.mean, run.m2, run.count, 0.0f);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      if (a.per_unit == 1) {
        *sh.flag = 1;  // the block is the unit: its own partials are visible after the barrier
      } else {
        __threadfence();
        const unsigned arrived = atomicAdd(counters + unit, 1u);
        *sh.flag = arrived == static_cast<unsigned>(a.per_unit - 1);
      }
    }
    __syncthreads();
    if (*sh.flag) {
      __threadfence();
      merge_unit(unit, mine + static_cast<int64_t>(local) * a.per_unit * ug);
      __syncthreads();
      if (threadIdx.x == 0 && a.per_unit > 1) {
        __threadfence();
        atomicExch(counters + unit, static_cast<unsigned>(a.per_unit + 1));
      }
    }
  }

  // Wait until the unit's statistics are published.
  __device__ __forceinline__ void await(int64_t unit) const {
    if (threadIdx.x == 0 && a.per_unit > 1) {
      // Plain loads and a growing pause: hundreds of blocks may poll one counter.
      unsigned pause = 32;
      while (load_acquire(counters + unit) != static_cast<unsigned>(a.per_unit + 1)) {
        __nanosleep(pause);
        pause = pause < 256 ? 2 * pause : pause;
      }
    }
    __syncthreads();
  }

  // NCHW: normalise a staged tile starting at element `begin` of group g. A thread tracks the
  // channel and position of its vector incrementally (spatial < 2^31 on this path).
  __device__ __forceinline__ void nchw_normalize(const T* s, T* dst, int64_t begin, int64_t count,
                                                 int64_t g, float2 st) const {
    const int64_t vectors = count / VEC;
    const float* gam = gamma + g * a.per_group;
    const float* bet = beta + g * a.per_group;
    const int spatial = static_cast<int>(a.spatial);
    const int dq = static_cast<int>(a.step_channels), dr = static_cast<int>(a.step_rest);
    const int64_t e = begin + static_cast<int64_t>(threadIdx.x) * VEC;
    int c = static_cast<int>(e / a.spatial), r = static_cast<int>(e % a.spatial);
    const bool whole = spatial % VEC == 0;  // a vector never crosses a channel
    const bool act = a.act != 0;
    for (int64_t v = threadIdx.x; v < vectors; v += kTiledThreads) {
      float f[VEC];
      load_shared<T, VEC>(s + v * VEC, f);
      if (whole) {
        const float scale = st.y * __ldg(gam + c);
        const float shift = __ldg(bet + c);
#pragma unroll
        for (int k = 0; k < VEC; ++k) f[k] = affine_act(f[k], st.x, scale, shift, act);
      } else {
        int ck = c, rk = r;
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          f[k] = affine_act(f[k], st.x, st.y * __ldg(gam + ck), __ldg(bet + ck), act);
          if (++rk == spatial) {
            rk = 0;
            ++ck;
          }
        }
      }
      store_global_streaming<T, VEC>(dst + v * VEC, f);
      c += dq;
      r += dr;
      if (r >= spatial) {
        r -= spatial;
        ++c;
      }
    }
  }

  // NHWC: normalise a staged tile of `rows` rows; sh.chsum holds (mean, rstd) per group.
  __device__ __forceinline__ void nhwc_normalize(const T* s, T* dst, int64_t rows) const {
    const int nl = lanes();
    const int rows_per_step = kTiledThreads / nl;
    const int col0 = threadIdx.x % nl;
    const int row0 = threadIdx.x / nl;
    if (row0 >= rows_per_step) return;
    const float2* st = reinterpret_cast<const float2*>(sh.chsum);
    const bool act = a.act != 0;
#pragma unroll 1
    for (int64_t col = col0; col < col_vectors(); col += nl) {
      float mean[VEC], scale[VEC], shift[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const int64_t c = col * VEC + k;
        const float2 g = st[channel_group(col, k)];
        mean[k] = g.x;
        scale[k] = g.y * __ldg(gamma + c);
        shift[k] = __ldg(beta + c);
      }
      for (int64_t r = row0; r < rows; r += rows_per_step) {
        float f[VEC];
        load_shared<T, VEC>(s + r * a.channels + col * VEC, f);
#pragma unroll
        for (int k = 0; k < VEC; ++k) f[k] = affine_act(f[k], mean[k], scale[k], shift[k], act);
        store_global_streaming<T, VEC>(dst + r * a.channels + col * VEC, f);
      }
    }
  }

  // The unit's (mean, rstd): returned (NCHW) or staged per group in sh.chsum (NHWC).
  __device__ __forceinline__ float2 load_final(int64_t unit) const {
    if constexpr (NHWC) {
      float2* staged = reinterpret_cast<float2*>(sh.chsum);
      for (int g = threadIdx.x; g < a.groups; g += kTiledThreads) {
        staged[g] = __ldcg(final_of(unit) + g);
      }
      __syncthreads();
      return make_float2(0.0f, 0.0f);
    } else {
      return __ldcg(final_of(unit));
    }
  }

  __device__ __forceinline__ void tile_normalize(int64_t unit, int part, int i, const T* s,
                                                 float2 st) const {
    int64_t b, e;
    tile_range(i, part, &b, &e);
    T* dst = y + unit_base(unit) + b * row_elems;
    if constexpr (NHWC) {
      nhwc_normalize(s, dst, e - b);
    } else {
      nchw_normalize(s, dst, b, e - b, unit % a.groups, st);
    }
  }

  // Normalise every tile of the block in reverse order of loading: the last two are still
  // staged, earlier ones are staged again (two slots deep).
  __device__ __forceinline__ void scatter(int64_t unit, int part) const {
    const float2 st = load_final(unit);
    for (int i = a.tiles - 1; i >= 0; --i) {
      if (i <= a.tiles - 3) {
        if (i >= 1) {
          copy_async_wait<1>();
        } else {
          copy_async_wait<0>();
        }
        __syncthreads();
      }
      tile_normalize(unit, part, i, slot(i & 1), st);
      __syncthreads();
      if (i >= 2) issue(unit, part, i - 2, i & 1);
    }
  }

  // Units larger than one tile per block: gather, publish, wait, normalise, one after another.
  __device__ __forceinline__ void run_sequential(int local, int part) const {
    for (int64_t w = 0; w < a.waves; ++w) {
      const int64_t unit = w * a.units_per_wave + local;
      if (unit >= a.units) break;
      const Stats run = gather(unit, part);
      arrive(unit, w, local, run);
      await(unit);
      scatter(unit, part);
    }
  }

  // One tile per block and unit: a three-slot pipeline (see the top of this file).
  __device__ __forceinline__ void run_pipelined(int local, int part) const {
    auto unit_of = [&](int64_t w) { return w * a.units_per_wave + local; };
    if (unit_of(0) < a.units) issue(unit_of(0), part, 0, 0);
    if (unit_of(1) < a.units) issue(unit_of(1), part, 0, 1);
    int64_t w = 0;
    for (; unit_of(w) < a.units; ++w) {
      const int64_t unit = unit_of(w);
      if (unit_of(w + 1) < a.units) {
        copy_async_wait<1>();
      } else {
        copy_async_wait<0>();
      }
      __syncthreads();
      Stats run{0.0f, 0.0f, 0.0f};
      begin_unit();
      tile_stats(part, 0, slot(static_cast<int>(w % 3)), &run);
      __syncthreads();
      arrive(unit, w, local, run);
      if (w > 0) finish(unit_of(w - 1), part, static_cast<int>((w - 1) % 3));
      if (unit_of(w + 2) < a.units) issue(unit_of(w + 2), part, 0, static_cast<int>((w + 2) % 3));
    }
    if (w > 0) finish(unit_of(w - 1), part, static_cast<int>((w - 1) % 3));
  }

  // Wait for a unit and normalise the block's staged tile of it; the slot is free afterwards.
  __device__ __forceinline__ void finish(int64_t unit, int part, int index) const {
    await(unit);
    tile_normalize(unit, part, 0, slot(index), load_final(unit));
    __syncthreads();
  }
};

template <typename T, bool NHWC>
__global__ void __launch_bounds__(kTiledThreads, 2)
    tiled_kernel(const T* __restrict__ x, const float* __restrict__ gamma,
                 const float* __restrict__ beta, T* __restrict__ y, TiledArgs a,
                 unsigned* __restrict__ counters, float2* __restrict__ final_stats,
                 float4* __restrict__ partials) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float red[32];
  __shared__ Stats red_stats[32];
  __shared__ int flag;
  // slots (three when each block holds one tile per unit, else two), then the NHWC scratch
  float* scratch = reinterpret_cast<float*>(
      smem_raw + (a.tiles == 1 ? 3 : 2) * static_cast<int64_t>(a.slot_elems) * sizeof(T));
  const int64_t min_chsum = static_cast<int64_t>(kTiledThreads) * TiledKernel<T, NHWC>::VEC;
  const int64_t chsum_floats = a.channels > min_chsum ? a.channels : min_chsum;
  const TiledShared sh{scratch, scratch + chsum_floats,
                       reinterpret_cast<Stats*>(scratch + chsum_floats + a.groups), red,
                       red_stats, &flag};
  const TiledKernel<T, NHWC> k{x,     gamma, beta,  y,           a,        sh,
                               reinterpret_cast<T*>(smem_raw), NHWC ? a.channels : 1,
                               final_stats, partials, counters};
  const int local = static_cast<int>(blockIdx.x) / a.per_unit;
  const int part = static_cast<int>(blockIdx.x) % a.per_unit;
  if (a.tiles == 1) {
    k.run_pipelined(local, part);
  } else {
    k.run_sequential(local, part);
  }
}

}  // namespace gn

#endif  // GN_DEPLOY_TILED_KERNEL_CUH
