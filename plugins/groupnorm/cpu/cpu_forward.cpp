// gn_cpu_forward: the fixed decomposition of a tensor into units and chunks, the merge of chunk
// statistics, and the choice of instruction set. The primitives are in isa_kernels.cpp.
//
// A unit is a group (NCHW: its C/G * spatial values are contiguous) or a sample (NHWC: every
// group of it, its C/G channels interleaved with the others at each position), cut into chunks
// of kChunkElements (NHWC: whole positions, about kRowsChunkElements). NCHW chunks are summed in
// one pass (d = x - centre and d^2) about one centre per group, the mean of its first chunk; the
// group is summed again about its own mean where that lies far from the centre (never
// E[x^2] - E[x]^2 about 0). NHWC chunks take two passes while they sit in cache (the mean of
// x - shift, then the squared deviations from it). Chunks merge with Chan's formula in double
// in chunk order. The chunks depend on the shape alone and every element is normalised by the
// same code wherever its chunk runs (a chunk's sums are the same additions whether they ride
// along a normalisation or not), so neither the thread count nor the order the tasks run in
// changes a bit of the result.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "cpu_ops.h"
#include "groupnorm/groupnorm_cpu.h"

namespace gn_cpu {
namespace {

constexpr int64_t kChunkElements = 4096;
// NHWC chunks are whole positions: about this many values, and at least this many positions, so
// that the per-channel work of each chunk (shifts, group means) stays small beside its values.
constexpr int64_t kRowsChunkElements = 4 * kChunkElements;
constexpr int64_t kRowsChunkMin = 16;
// How far (in standard deviations) a group's mean may lie from the centre its NCHW statistics
// were summed about before they are summed again about the mean.
constexpr double kOffCentre = 2.0;
// Below this many elements handing tasks to other threads costs more than it saves.
constexpr int64_t kSerialElements = 1 << 15;

struct Moments {
  double count = 0.0;
  double mean = 0.0;
  double m2 = 0.0;
};

Moments merge(const Moments& a, const Moments& b) {
  const double count = a.count + b.count;
  if (count == 0.0) return a;
  const double delta = b.mean - a.mean;
  return Moments{count, a.mean + delta * (b.count / count),
                 a.m2 + b.m2 + delta * delta * (a.count * b.count / count)};
}

class Forward {
 public:
  Forward(const gn_params& p, const Ops& ops, const void* x, const float* gamma, const float* beta,
          void* y)
      : p_(p), ops_(ops), x_(static_cast<const char*>(x)), y_(static_cast<char*>(y)),
        gamma_(gamma), beta_(beta), esize_(p.dtype == GN_FLOAT32 ? 4 : 2),
        per_group_(p.c / p.groups), nhwc_(p.layout == GN_NHWC) {
    // NCHW chunks are runs of a group's values; NHWC chunks are runs of whole positions.
    units_ = nhwc_ ? p.n : p.n * p.groups;
    unit_groups_ = nhwc_ ? p.groups : 1;
    unit_length_ = nhwc_ ? p.spatial : per_group_ * p.spatial;
    chunk_ = nhwc_ ? std::max<int64_t>(kRowsChunkMin, kRowsChunkElements / p.c) : kChunkElements;
    chunks_ = (unit_length_ + chunk_ - 1) / chunk_;
    moments_.resize(static_cast<size_t>(units_ * chunks_ * unit_groups_));
    centre_.resize(static_cast<size_t>(nhwc_ ? 0 : units_));
    mean_.resize(static_cast<size_t>(p.n * p.c));
    scale_.resize(static_cast<size_t>(p.n * p.c));
    shift_.resize(static_cast<size_t>(p.n * p.c));
  }

  int64_t units() const { return units_; }
  int64_t elements() const { return p_.n * p_.c * p_.spatial; }
  int64_t tasks() const { return units_ * chunks_; }

  // NCHW: the centre every chunk of a unit is summed about, from its first chunk (before any
  // chunk's statistics).
  void centre(int64_t unit) {
    const float first = group_first(unit);
    float sums[2];
    ops_.sums(span(unit, 0), chunk_length(0), first, sums);
    set_centre(unit, first, sums[0]);
  }

  // The statistics of one chunk (task = unit * chunks + chunk) into moments_ (NCHW: once the
  // unit's centre is set).
  void stats(int64_t task) {
    const int64_t unit = task / chunks_, k = task % chunks_;
    if (nhwc_) {
      stats_rows(unit, k);
    } else {
      stats_span(unit, k);
    }
  }

  // Merge a unit's chunks group by group; per channel, the mean, scale and shift that
  // normalise it: y = (x - mean) * scale + shift.
  void finish(int64_t unit) {
    for (int64_t gu = 0; gu < unit_groups_; ++gu) {
      Moments total = merged(unit, gu);
      if (!nhwc_ && off_centre(unit, total)) total = recentred(unit, total.mean);
      const double variance = std::max(total.m2, 0.0) / total.count;
      const double rstd = 1.0 / std::sqrt(variance + static_cast<double>(p_.epsilon));
      const int64_t n = nhwc_ ? unit : unit / p_.groups;
      const int64_t g = nhwc_ ? gu : unit % p_.groups;
      // The mean in fp32 and what rounding it left out, moved into the shift: x - mean is then
      // exact for x near the mean (a group of 1000 + N(0, 1) loses no digit to its mean).
      const float mean = static_cast<float>(total.mean);
      const double rest = total.mean - mean;
      for (int64_t c = g * per_group_; c < (g + 1) * per_group_; ++c) {
        const size_t at = static_cast<size_t>(n * p_.c + c);
        const double a = rstd * gamma_[c];
        mean_[at] = mean;
        scale_[at] = static_cast<float>(a);
        shift_[at] = static_cast<float>(beta_[c] - rest * a);
      }
    }
  }

  // y for one chunk, once its unit is finished.
  void normalize(int64_t task) { normalize_chunk(task / chunks_, task % chunks_, -1, nullptr); }

  // Cut the units into about `wanted` runs of neighbours, one task each; how many there are.
  int64_t split_units(int64_t wanted) {
    run_units_ = (units_ + wanted - 1) / std::max<int64_t>(1, wanted);
    return (units_ + run_units_ - 1) / run_units_;
  }

  // NCHW: every unit's centre, on the calling thread (before the statistics of all chunks run
  // as tasks of their own).
  void centres() {
    for (int64_t u = 0; !nhwc_ && u < units_; ++u) centre(u);
  }

  // A run of units in one task: each unit's chunks stay in cache between its statistics and its
  // normalisation, and (NCHW) the next unit's statistics ride along this one's normalisation,
  // their reads from memory hidden behind its arithmetic.
  void unit_run(int64_t run) {
    const int64_t first = run * run_units_, last = std::min(units_, first + run_units_);
    if (!nhwc_) centre(first);
    for (int64_t k = 0; k < chunks_; ++k) stats(first * chunks_ + k);
    for (int64_t u = first; u < last; ++u) {
      finish(u);
      if (!nhwc_ && u + 1 < last) {
        normalize_riding(u);
        continue;
      }
      for (int64_t k = 0; k < chunks_; ++k) normalize_chunk(u, k, -1, nullptr);
      for (int64_t k = 0; u + 1 < last && k < chunks_; ++k) stats((u + 1) * chunks_ + k);
    }
  }

  std::atomic<bool> failed{false};

 private:
  Moments& moment(int64_t unit, int64_t k, int64_t gu) {
    return moments_[static_cast<size_t>((unit * chunks_ + k) * unit_groups_ + gu)];
  }

  Moments merged(int64_t unit, int64_t gu) {
    Moments total;
    for (int64_t k = 0; k < chunks_; ++k) total = merge(total, moment(unit, k, gu));
    return total;
  }

  // y for chunk k of a unit; with a next unit (NCHW), the sums of its chunk k about
  // next_centre ride along into `sums`.
  void normalize_chunk(int64_t unit, int64_t k, int64_t next, float* sums,
                       float next_centre = 0.0f) {
    const int64_t begin = k * chunk_, end = begin + chunk_length(k);
    if (nhwc_) {
      const int64_t at = (unit * p_.spatial + begin) * p_.c;
      const size_t row = static_cast<size_t>(unit * p_.c);
      ops_.rows_affine(x_ + at * esize_, y_ + at * esize_, end - begin, p_.c, &mean_[row],
                       &scale_[row], &shift_[row], p_.activation);
      return;
    }
    // A run of a group's values crosses channels every spatial values.
    const int64_t channel = (unit / p_.groups) * p_.c + (unit % p_.groups) * per_group_ +
                            begin / p_.spatial;
    const size_t coef = static_cast<size_t>(channel);
    ops_.affine(span(unit, k), y_ + (unit * unit_length_ + begin) * esize_, end - begin,
                begin % p_.spatial, p_.spatial, &mean_[coef], &scale_[coef], &shift_[coef],
                p_.activation, next >= 0 ? span(next, k) : nullptr, next_centre, sums);
  }

  // NCHW: unit u normalised while the next unit's statistics ride along: its first chunk summed
  // about its first value with chunk 0 (then again about the centre that gives, from cache),
  // each later chunk k summed about the centre with chunk k.
  void normalize_riding(int64_t u) {
    const int64_t next = u + 1;
    float sums[2];
    const float first = group_first(next);
    normalize_chunk(u, 0, next, sums, first);
    set_centre(next, first, sums[0]);
    stats_span(next, 0);
    for (int64_t k = 1; k < chunks_; ++k) {
      normalize_chunk(u, k, next, sums, centre_[static_cast<size_t>(next)]);
      record(next, k, sums);
    }
  }

  // NCHW: chunk k of a group's values, and its first value.
  const char* span(int64_t unit, int64_t k) const {
    return x_ + (unit * unit_length_ + k * chunk_) * esize_;
  }

  float group_first(int64_t unit) const {
    float first;
    ops_.to_float(span(unit, 0), 1, &first);
    return first;
  }

  // NCHW statistics: every chunk of a group is summed (d = x - centre and d^2, one pass) about
  // one centre, the mean of its first chunk (that chunk summed about the group's first value).
  // A chunk's squared deviations, sum d^2 - (sum d)^2 / n, lose digits only as far as the
  // chunk's mean lies from the centre; finish() checks the whole group's and sums it again
  // about its own mean where that lies far from the centre.
  void set_centre(int64_t unit, float first, float first_chunk_sum) {
    const double mean = first + static_cast<double>(first_chunk_sum) / chunk_length(0);
    centre_[static_cast<size_t>(unit)] = static_cast<float>(mean);
  }

  void stats_span(int64_t unit, int64_t k) {
    float sums[2];
    ops_.sums(span(unit, k), chunk_length(k), centre_[static_cast<size_t>(unit)], sums);
    record(unit, k, sums);
  }

  void record(int64_t unit, int64_t k, const float* sums) {
    const double n = static_cast<double>(chunk_length(k)), sum = sums[0];
    moment(unit, k, 0) = Moments{n, centre_[static_cast<size_t>(unit)] + sum / n,
                                 static_cast<double>(sums[1]) - sum * sum / n};
  }

  // Whether the group's sums were taken about a centre more than kOffCentre of its standard
  // deviations from its mean: their squares then exceed its squared deviations (1 + kOffCentre^2)
  // times, too many digits lost to trust.
  bool off_centre(int64_t unit, const Moments& total) const {
    const double off = total.mean - centre_[static_cast<size_t>(unit)];
    return off * off * total.count > kOffCentre * kOffCentre * std::max(total.m2, 0.0);
  }

  // The group summed again about its mean (a third read of it; rare).
  Moments recentred(int64_t unit, double mean) {
    centre_[static_cast<size_t>(unit)] = static_cast<float>(mean);
    for (int64_t k = 0; k < chunks_; ++k) stats_span(unit, k);
    return merged(unit, 0);
  }

  int64_t chunk_length(int64_t k) const {
    return std::min(unit_length_, (k + 1) * chunk_) - k * chunk_;
  }

  void stats_rows(int64_t unit, int64_t k) {
    const int64_t begin = k * chunk_, rows = chunk_length(k);
    const int64_t c = p_.c;
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(3 * c));
    float* first = scratch.data();
    float* acc = first + c;
    float* mean = acc + c;
    const char* sample = x_ + unit * p_.spatial * c * esize_;
    ops_.to_float(sample, c, first);  // each channel shifted by its value at the first position
    const char* x = sample + begin * c * esize_;
    ops_.rows_sum(x, rows, c, first, acc);
    thread_local std::vector<double> group_mean;
    group_mean.resize(static_cast<size_t>(p_.groups));
    for (int64_t g = 0; g < p_.groups; ++g) {
      double total = 0.0;
      for (int64_t j = g * per_group_; j < (g + 1) * per_group_; ++j) {
        total += first[j] + static_cast<double>(acc[j]) / rows;
      }
      group_mean[static_cast<size_t>(g)] = total / per_group_;
      std::fill(mean + g * per_group_, mean + (g + 1) * per_group_,
                static_cast<float>(group_mean[static_cast<size_t>(g)]));
    }
    ops_.rows_m2(x, rows, c, mean, acc);
    for (int64_t g = 0; g < p_.groups; ++g) {
      double m2 = 0.0;
      for (int64_t j = g * per_group_; j < (g + 1) * per_group_; ++j) m2 += acc[j];
      moment(unit, k, g) = Moments{static_cast<double>(rows * per_group_),
                                   group_mean[static_cast<size_t>(g)], m2};
    }
  }

  gn_params p_;
  const Ops& ops_;
  const char* x_;
  char* y_;
  const float* gamma_;
  const float* beta_;
  int64_t esize_, per_group_;
  bool nhwc_;
  int64_t units_ = 0, unit_groups_ = 0, chunk_ = 0, chunks_ = 0, unit_length_ = 0;
  int64_t run_units_ = 1;
  std::vector<Moments> moments_;
  std::vector<float> centre_;
  std::vector<float> mean_, scale_, shift_;
};

template <void (Forward::*Method)(int64_t)>
void run_task(void* data, size_t index) {
  auto* forward = static_cast<Forward*>(data);
  try {
    (forward->*Method)(static_cast<int64_t>(index));
  } catch (...) {  // only std::bad_alloc can come from a task; never let it leave the thread
    forward->failed = true;
  }
}

// The cores this process may run on (a container's share, not the host's count).
int64_t usable_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max<int64_t>(1, std::thread::hardware_concurrency());
}

int32_t run_serially(void*, gn_task_fn task, void* data, size_t count) {
  for (size_t i = 0; i < count; ++i) task(data, i);
  return 0;
}

// Small tensors on the calling thread (one run of all units); runs of whole units per task, two
// runs a core, when there are enough units to keep every core busy; otherwise the chunks of all
// units in two rounds (statistics, then normalisation) around the merge.
gn_status run(Forward& forward, gn_parallel_for parallel_for, void* runner) {
  static const int64_t cores = usable_cores();  // a system call: once
  if (forward.elements() < kSerialElements) parallel_for = run_serially;
  bool ok = true;
  if (parallel_for == run_serially || forward.units() >= 2 * cores) {
    const int64_t runs = forward.split_units(parallel_for == run_serially ? 1 : 2 * cores);
    ok = parallel_for(runner, run_task<&Forward::unit_run>, &forward, runs) == 0;
  } else {
    forward.centres();
    ok = parallel_for(runner, run_task<&Forward::stats>, &forward, forward.tasks()) == 0;
    for (int64_t u = 0; ok && u < forward.units(); ++u) forward.finish(u);
    ok = ok && parallel_for(runner, run_task<&Forward::normalize>, &forward, forward.tasks()) == 0;
  }
  return ok && !forward.failed ? GN_SUCCESS : GN_ERROR_HOST;
}

// The best instruction set of this CPU (CPUID is slow, a VM exit on many hypervisors: ask once).
const char* detect_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  // F16C from CPUID leaf 1, ECX: Clang's __builtin_cpu_supports does not know it.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  const bool f16 = __builtin_cpu_supports("fma") && f16c;
  if (f16 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return "avx512";
  }
  if (f16 && __builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "baseline";
}

const char* best_isa() {
  static const char* const isa = detect_isa();
  return isa;
}

// 0 baseline, 1 avx2, 2 avx512; -1 for a name that is none of them.
int isa_rank(const char* isa) {
  if (std::strcmp(isa, "avx512") == 0) return 2;
  if (std::strcmp(isa, "avx2") == 0) return 1;
  return std::strcmp(isa, "baseline") == 0 ? 0 : -1;
}

// The primitives of a named instruction set, or nullptr where this CPU or build lacks it.
const Ops* ops_for(const char* isa, int32_t dtype) {
  const int rank = isa_rank(isa);
  if (rank < 0 || rank > isa_rank(best_isa())) return nullptr;
#if defined(__x86_64__)
  if (rank == 2) return ops_avx512(dtype);
  if (rank == 1) return ops_avx2(dtype);
#endif
  return ops_baseline(dtype);
}

}  // namespace
}  // namespace gn_cpu

extern "C" const char* gn_cpu_isa(void) { return gn_cpu::best_isa(); }

extern "C" gn_status gn_cpu_forward_isa(const char* isa, const gn_params* params, const void* x,
                                        const float* gamma, const float* beta, void* y,
                                        gn_parallel_for parallel_for, void* runner) {
  const gn_status status = gn_validate(params);
  if (status != GN_SUCCESS) return status;
  if (params->n == 0 || params->spatial == 0) return GN_SUCCESS;
  if (x == nullptr || y == nullptr || gamma == nullptr || beta == nullptr) {
    return GN_ERROR_NULL_POINTER;
  }
  const char* chosen = isa != nullptr ? isa : gn_cpu::best_isa();
  const gn_cpu::Ops* ops = gn_cpu::ops_for(chosen, params->dtype);
  if (ops == nullptr) return GN_ERROR_INVALID_PATH;
  try {
    gn_cpu::Forward forward(*params, *ops, x, gamma, beta, y);
    return gn_cpu::run(forward, parallel_for != nullptr ? parallel_for : gn_cpu::run_serially,
                       runner);
  } catch (const std::bad_alloc&) {
    return GN_ERROR_HOST;
  }
}

extern "C" gn_status gn_cpu_forward(const gn_params* params, const void* x, const float* gamma,
                                    const float* beta, void* y, gn_parallel_for parallel_for,
                                    void* runner) {
  return gn_cpu_forward_isa(nullptr, params, x, gamma, beta, y, parallel_for, runner);
}
