// The CPU kernels' primitives: one chunk of one dtype, for one instruction set. isa_kernels.cpp
// is compiled once per instruction set (GN_ISA names it); cpu_forward.cpp decides the chunks,
// merges their statistics and picks the instruction set at run time.
#ifndef GN_DEPLOY_CPU_OPS_H
#define GN_DEPLOY_CPU_OPS_H

#include <cstdint>

namespace gn_cpu {

struct Ops {
  // Over n contiguous values of d = x - centre: out[0] = the sum of d, out[1] = that of d^2.
  void (*sums)(const void* x, int64_t n, float centre, float* out);
  // y = act((x - m[j]) * a[j] + b[j]) over n contiguous values of channels `spatial` long, the
  // first at position `offset` of channel 0 (act: gn_activation). Centring before the scale
  // keeps a constant group exact whatever 1 / sqrt(var + eps) is. With a next, `sums` of the n
  // values there about next_centre ride along into next_out, four vectors of them every four
  // vectors normalised (the next unit's statistics, their reads from memory hidden behind this
  // loop), bitwise what `sums` gives for them.
  void (*affine)(const void* x, void* y, int64_t n, int64_t offset, int64_t spatial,
                 const float* m, const float* a, const float* b, int32_t act, const void* next,
                 float next_centre, float* next_out);
  // Channels last, rows of c values: acc[j] = sum over the rows of (x[r, j] - shift[j]).
  void (*rows_sum)(const void* x, int64_t rows, int64_t c, const float* shift, float* acc);
  // acc[j] = sum over the rows of (x[r, j] - mean[j])^2.
  void (*rows_m2)(const void* x, int64_t rows, int64_t c, const float* mean, float* acc);
  // y[r, j] = act((x[r, j] - m[j]) * a[j] + b[j]).
  void (*rows_affine)(const void* x, void* y, int64_t rows, int64_t c, const float* m,
                      const float* a, const float* b, int32_t act);
  // out[i] = x[i] as fp32, for n values.
  void (*to_float)(const void* x, int64_t n, float* out);
};

// The primitives for a gn_dtype, or nullptr for an unknown one.
const Ops* ops_baseline(int32_t dtype);
#if defined(__x86_64__)
const Ops* ops_avx2(int32_t dtype);
const Ops* ops_avx512(int32_t dtype);
#endif

}  // namespace gn_cpu

#endif  // GN_DEPLOY_CPU_OPS_H
