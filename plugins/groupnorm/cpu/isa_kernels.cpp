// The CPU primitives of cpu_ops.h in vectors of the machine's register width (GCC/Clang vector
// extensions), compiled once per instruction set: -DGN_ISA=avx512 (-mavx512f -mavx512bw
// -mavx512vl -mavx512dq -mfma -mf16c: 16 lanes), -DGN_ISA=avx2 (-mavx2 -mfma -mf16c: 8 lanes) and
// -DGN_ISA=baseline (no flags: 4 lanes, SSE2 on x86-64). Vectors wider than the registers would
// make GCC lower selects lane by lane. fp16 moves through F16C where present.
// A chunk's tail goes through the same vector code, padded, so that an element's result does not
// depend on where a chunk starts.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu_ops.h"
#include "groupnorm/groupnorm.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

#ifndef GN_ISA
#error "compile with -DGN_ISA=avx512|avx2|baseline"
#endif
#define GN_CAT2(a, b) a##b
#define GN_CAT(a, b) GN_CAT2(a, b)

namespace gn_cpu {
namespace {

#if defined(__AVX512F__)
constexpr int W = 16;
#elif defined(__AVX2__)
constexpr int W = 8;
#else
constexpr int W = 4;
#endif
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));
typedef uint32_t vu __attribute__((vector_size(4 * W)));
typedef uint16_t vu16 __attribute__((vector_size(2 * W)));

inline vf splat(float v) { return vf{} + v; }

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// IEEE half to float, exact: the exponent is rebased by one multiplication by 2^112 (subnormal
// halves land on normal floats), infinities and NaNs get the float's all-ones exponent.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t rest = h & 0x7fffu;
  if (rest >= 0x7c00u) return bits_to_float(sign | 0x7f800000u | (rest << 13));
  return bits_to_float(sign | float_to_bits(bits_to_float(rest << 13) * 0x1p112f));
}

// Float to IEEE half, rounding to nearest even; overflow gives infinity, NaN stays NaN.
inline uint16_t float_to_half(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (a < 0x38800000u) {
    // Below the smallest normal half: adding 0.5 leaves the half's subnormal step as the
    // float's last bit, so the hardware's own rounding is the half's.
    const uint32_t r = float_to_bits(bits_to_float(a) + 0.5f) - 0x3f000000u;
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t odd = (a >> 13) & 1u;
  const uint32_t rebased = a - (112u << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (rebased >> 13));
}

inline float bf16_to_float(uint16_t b) { return bits_to_float(static_cast<uint32_t>(b) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

struct Half {
  uint16_t bits;
};
struct Bf16 {
  uint16_t bits;
};

// Scalar and 16-lane conversions of each storage type.
template <class T>
struct Io;

template <>
struct Io<float> {
  static float get(const float* p) { return *p; }
  static void put(float* p, float v) { *p = v; }
  static vf load(const float* p) {
    vf v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
};

template <>
struct Io<Half> {
  static float get(const Half* p) { return half_to_float(p->bits); }
  static void put(Half* p, float v) { p->bits = float_to_half(v); }
#if defined(__AVX512F__) && defined(__F16C__)
  static vf load(const Half* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return reinterpret_cast<vf>(_mm512_maskz_cvtph_ps(0xffff, h));  // maskz: GCC 12 warns on the
                                                                    // unmasked intrinsic's header
  }
  static void store(Half* p, vf v) {
    const __m256i h = _mm512_maskz_cvtps_ph(0xffff, reinterpret_cast<__m512>(v),
                                            _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
  }
#elif defined(__F16C__)
  static vf load(const Half* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return reinterpret_cast<vf>(_mm256_cvtph_ps(h));
  }
  static void store(Half* p, vf v) {
    const __m128i h = _mm256_cvtps_ph(reinterpret_cast<__m256>(v), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
  }
#else
  static vf load(const Half* p) {
    float t[W];
    for (int i = 0; i < W; ++i) t[i] = half_to_float(p[i].bits);
    vf v;
    std::memcpy(&v, t, sizeof v);
    return v;
  }
  static void store(Half* p, vf v) {
    float t[W];
    std::memcpy(t, &v, sizeof t);
    for (int i = 0; i < W; ++i) p[i].bits = float_to_half(t[i]);
  }
#endif
};

template <>
struct Io<Bf16> {
  static float get(const Bf16* p) { return bf16_to_float(p->bits); }
  static void put(Bf16* p, float v) { p->bits = float_to_bf16(v); }
  static vf load(const Bf16* p) {
    vu16 h;
    std::memcpy(&h, p, sizeof h);
    return reinterpret_cast<vf>(__builtin_convertvector(h, vu) << 16);
  }
  static void store(Bf16* p, vf v) {
    const vu u = reinterpret_cast<vu>(v);
    const vu rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const vu quiet = (u >> 16) | 0x40u;
    const vu out = (u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded;
    const vu16 h = __builtin_convertvector(out, vu16);
    std::memcpy(p, &h, sizeof h);
  }
};

// The first k < W values, the other lanes set to fill.
template <class T>
vf load_part(const T* p, int64_t k, float fill) {
  float t[W];
  for (int i = 0; i < W; ++i) t[i] = i < k ? Io<T>::get(p + i) : fill;
  vf v;
  std::memcpy(&v, t, sizeof v);
  return v;
}

template <class T>
void store_part(T* p, int64_t k, vf v) {
  float t[W];
  std::memcpy(t, &v, sizeof t);
  for (int64_t i = 0; i < k; ++i) Io<T>::put(p + i, t[i]);
}

// Lanes summed in a fixed tree of register shuffles (one overload per width this ISA uses).
typedef float v4f __attribute__((vector_size(16)));

inline float hsum(v4f v) {
  const v4f t = v + __builtin_shufflevector(v, v, 2, 3, 0, 1);
  return (t + __builtin_shufflevector(t, t, 1, 0, 3, 2))[0];
}

#if defined(__AVX2__) || defined(__AVX512F__)
typedef float v8f __attribute__((vector_size(32)));

inline float hsum(v8f v) {
  return hsum(__builtin_shufflevector(v, v, 0, 1, 2, 3) +
              __builtin_shufflevector(v, v, 4, 5, 6, 7));
}
#endif

#if defined(__AVX512F__)
inline float hsum(vf v) {
  return hsum(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
              __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
}
#endif

// 2^f for 0 <= f <= 1 by Horner over coefficients fitted for relative error: degree 5 (below
// 1.6e-7 in fp32 arithmetic) when kExact, else degree 3 (below 7.5e-5, for 16-bit outputs, whose
// rounding step is 2^-11 or coarser).
template <bool kExact>
inline vf exp2_unit(vf f) {
  if constexpr (kExact) {
    vf p = splat(0.0018775742501020432f);
    p = p * f + 0.008989345282316208f;
    p = p * f + 0.05582631379365921f;
    p = p * f + 0.24015361070632935f;
    p = p * f + 0.6931530833244324f;
    return p * f + 0.9999999403953552f;
  } else {
    vf p = splat(0.07802419364452362f);
    p = p * f + 0.2260672152042389f;
    p = p * f + 0.6958337426185608f;
    return p * f + 0.9999251961708069f;
  }
}

constexpr float kLog2e = 1.44269504088896341f;

#if defined(__AVX512F__)
// e^-v = 2^t, t = -v log2 e; when kExact held below 126 so that 1 + e^-v and the Newton step
// stay finite (without it, 1 + e^-v may overflow to infinity and its reciprocal estimate is 0,
// as it should be). VREDUCEPS gives t - floor(t) and VSCALEFPS applies 2^floor(t), overflowing
// and underflowing by itself (the maskz forms keep GCC 12's headers from warning).
template <bool kExact>
inline vf exp_neg(vf v) {
  const __m512 scaled = reinterpret_cast<__m512>(v * -kLog2e);
  const __m512 t =
      kExact ? _mm512_maskz_min_ps(0xffff, scaled, _mm512_set1_ps(126.0f)) : scaled;
  const vf f = reinterpret_cast<vf>(
      _mm512_maskz_reduce_ps(0xffff, t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
  return reinterpret_cast<vf>(
      _mm512_maskz_scalef_ps(0xffff, reinterpret_cast<__m512>(exp2_unit<kExact>(f)), t));
}
#else
// e^-v = 2^t with t = -v log2 e clamped to [-126, 126]; n = round(t - 1/2) is floor(t) (t itself
// at a tie, so t - n lies in [0, 1]) and 2^n is built in the exponent bits.
template <bool kExact>
inline vf exp_neg(vf v) {
#if defined(__AVX2__)
  const __m256 low = _mm256_max_ps(reinterpret_cast<__m256>(v * -kLog2e), _mm256_set1_ps(-126.0f));
  const vf t = reinterpret_cast<vf>(_mm256_min_ps(low, _mm256_set1_ps(126.0f)));
#else
  vf t = v * -kLog2e;
  t = t < -126.0f ? splat(-126.0f) : t;
  t = t > 126.0f ? splat(126.0f) : t;
#endif
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const vf n = ((t - 0.5f) + magic) - magic;
  const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  return exp2_unit<kExact>(t - n) * reinterpret_cast<vf>(e);
}
#endif

// 1 / d for d >= 1: the hardware's estimate (relative error below 6e-5 with AVX-512, 4e-4 with
// AVX2), refined by one Newton step (below 1e-7) when kExact; a division elsewhere.
template <bool kExact>
inline vf reciprocal(vf d) {
#if defined(__AVX512F__)
  const vf r = reinterpret_cast<vf>(_mm512_maskz_rcp14_ps(0xffff, reinterpret_cast<__m512>(d)));
#elif defined(__AVX2__)
  const vf r = reinterpret_cast<vf>(_mm256_rcp_ps(reinterpret_cast<__m256>(d)));
#else
  return 1.0f / d;
#endif
#if defined(__AVX2__) || defined(__AVX512F__)
  if constexpr (kExact) {
    return r * (2.0f - d * r);
  } else {
    return r;
  }
#endif
}

// SiLU in full fp32 precision for fp32 outputs; for 16-bit outputs a shorter polynomial and the
// reciprocal estimate alone, their errors well below those outputs' rounding.
template <class T, bool kSilu>
inline vf activate(vf v) {
  if constexpr (kSilu) {
    constexpr bool kExact = std::is_same_v<T, float>;
    return v * reciprocal<kExact>(1.0f + exp_neg<kExact>(v));
  } else {
    return v;
  }
}

// The sums over n contiguous values of d = x - centre and of d^2, each in four accumulators
// (one would wait on the addition's latency every vector), four vectors a step so that they can
// ride along another loop: the same additions in the same order however they are stepped.
template <class T>
class CentredSums {
 public:
  CentredSums(const T* x, int64_t n, float centre) : x_(x), n_(n), centre_(centre) {}

  // Four more vectors, while four remain.
  void step() {
    if (i_ + 4 * W > n_) return;
    for (int k = 0; k < 4; ++k) add(k, Io<T>::load(x_ + i_ + k * W));
    i_ += 4 * W;
  }

  // The rest; out[0] = the sum of d, out[1] = the sum of d^2. Once.
  void finish(float* out) {
    while (i_ + 4 * W <= n_) step();
    for (int k = 0; i_ + W <= n_; i_ += W, ++k) add(k, Io<T>::load(x_ + i_));
    if (i_ < n_) add(3, load_part(x_ + i_, n_ - i_, centre_));  // padding adds 0 to both
    out[0] = hsum((d_[0] + d_[1]) + (d_[2] + d_[3]));
    out[1] = hsum((q_[0] + q_[1]) + (q_[2] + q_[3]));
  }

 private:
  void add(int k, vf v) {
    const vf d = v - centre_;
    d_[k] += d;
    q_[k] += d * d;
  }

  const T* x_;
  int64_t n_;
  float centre_;
  int64_t i_ = 0;
  vf d_[4] = {}, q_[4] = {};
};

template <class T>
void sums(const void* x, int64_t n, float centre, float* out) {
  CentredSums<T>(static_cast<const T*>(x), n, centre).finish(out);
}

// y = act((x - m) * a + b) over n values, stepping `ride` once every four vectors.
template <class T, bool kSilu>
void affine_span(const T* x, T* y, int64_t n, float m, float a, float b, CentredSums<T>& ride) {
  const vf vm = splat(m), va = splat(a), vb = splat(b);
  const auto out = [&](int64_t i) {
    Io<T>::store(y + i, activate<T, kSilu>((Io<T>::load(x + i) - vm) * va + vb));
  };
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    for (int k = 0; k < 4; ++k) out(i + k * W);
    ride.step();
  }
  for (; i + W <= n; i += W) out(i);
  if (i < n) {
    store_part(y + i, n - i, activate<T, kSilu>((load_part(x + i, n - i, m) - vm) * va + vb));
  }
}

// The run channel by channel: each channel's part is a span of its own coefficients.
template <class T, bool kSilu>
void affine_channels(const T* x, T* y, int64_t n, int64_t offset, int64_t spatial,
                     const float* m, const float* a, const float* b, CentredSums<T>& ride) {
  for (int64_t i = 0, j = 0; i < n; ++j) {
    const int64_t run = std::min(n - i, spatial - (j == 0 ? offset : 0));
    affine_span<T, kSilu>(x + i, y + i, run, m[j], a[j], b[j], ride);
    i += run;
  }
}

template <class T>
void affine(const void* xv, void* yv, int64_t n, int64_t offset, int64_t spatial,
            const float* m, const float* a, const float* b, int32_t act, const void* next,
            float next_centre, float* next_out) {
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  CentredSums<T> ride(static_cast<const T*>(next), next != nullptr ? n : 0, next_centre);
  if (act == GN_ACT_SILU) {
    affine_channels<T, true>(x, y, n, offset, spatial, m, a, b, ride);
  } else {
    affine_channels<T, false>(x, y, n, offset, spatial, m, a, b, ride);
  }
  if (next != nullptr) ride.finish(next_out);
}

// Channels last: lanes are channels j..j+k of each row; the padding lanes hold 0 on both sides.
template <class T>
vf row_load(const T* p, int64_t k) {
  return k == W ? Io<T>::load(p) : load_part(p, k, 0.0f);
}

inline vf coef_load(const float* p, int64_t k) {
  return k == W ? Io<float>::load(p) : load_part(p, k, 0.0f);
}

template <class T>
void row_store(T* p, int64_t k, vf v) {
  if (k == W) {
    Io<T>::store(p, v);
  } else {
    store_part(p, k, v);
  }
}

// Per channel j, the sum over the rows of (x[r, j] - centre[j]), or of its square: row after
// row, as the values lie in memory (column by column would stride through a chunk of many rows
// and wait on memory at every row), acc[j] taking the rows in order.
template <class T, bool kSquare>
void rows_centred_sum(const void* xv, int64_t rows, int64_t c, const float* centre, float* acc) {
  const T* x = static_cast<const T*>(xv);
  std::fill(acc, acc + c, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < c; j += W) {
      const int64_t k = c - j < W ? c - j : W;
      const vf d = row_load(x + r * c + j, k) - coef_load(centre + j, k);
      row_store(acc + j, k, coef_load(acc + j, k) + (kSquare ? d * d : d));
    }
  }
}

template <class T, bool kSilu>
void rows_affine_act(const T* x, T* y, int64_t rows, int64_t c, const float* m, const float* a,
                     const float* b) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < c; j += W) {
      const int64_t k = c - j < W ? c - j : W;
      const vf centred = row_load(x + r * c + j, k) - coef_load(m + j, k);
      row_store(y + r * c + j, k,
                activate<T, kSilu>(centred * coef_load(a + j, k) + coef_load(b + j, k)));
    }
  }
}

template <class T>
void rows_affine(const void* x, void* y, int64_t rows, int64_t c, const float* m, const float* a,
                 const float* b, int32_t act) {
  if (act == GN_ACT_SILU) {
    rows_affine_act<T, true>(static_cast<const T*>(x), static_cast<T*>(y), rows, c, m, a, b);
  } else {
    rows_affine_act<T, false>(static_cast<const T*>(x), static_cast<T*>(y), rows, c, m, a, b);
  }
}

template <class T>
void to_float(const void* xv, int64_t n, float* out) {
  const T* x = static_cast<const T*>(xv);
  for (int64_t i = 0; i < n; ++i) out[i] = Io<T>::get(x + i);
}

template <class T>
constexpr Ops ops_of() {
  return Ops{&sums<T>,
             &affine<T>,
             &rows_centred_sum<T, false>,
             &rows_centred_sum<T, true>,
             &rows_affine<T>,
             &to_float<T>};
}

constexpr Ops kFloat = ops_of<float>();
constexpr Ops kHalf = ops_of<Half>();
constexpr Ops kBf16 = ops_of<Bf16>();

}  // namespace

const Ops* GN_CAT(ops_, GN_ISA)(int32_t dtype) {
  switch (dtype) {
    case GN_FLOAT32: return &kFloat;
    case GN_FLOAT16: return &kHalf;
    case GN_BFLOAT16: return &kBf16;
    default: return nullptr;
  }
}

}  // namespace gn_cpu
