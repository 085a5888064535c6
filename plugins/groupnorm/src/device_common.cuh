// Device building blocks shared by the GN kernels: fp32 statistics with deterministic merges,
// 16-byte vector loads and stores with conversion to and from fp32, asynchronous copies into
// shared memory, and the per-element normalisation. No TensorRT types.
#ifndef GN_DEPLOY_DEVICE_COMMON_CUH
#define GN_DEPLOY_DEVICE_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace gn {

constexpr unsigned kFullMask = 0xffffffffu;

// Count, mean and sum of squared deviations of a set of values (Chan et al. merge).
struct Stats {
  float mean;
  float m2;
  float count;
};

__device__ __forceinline__ Stats merge(Stats a, Stats b) {
  if (b.count == 0.0f) return a;
  if (a.count == 0.0f) return b;
  const float n = a.count + b.count;
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

__device__ __forceinline__ float warp_reduce(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullMask, v, offset);
  return v;
}

// Combine one value per thread (Stats merged, floats summed) in a fixed order; every thread
// gets the block's result. V{} is the empty value.
template <typename V>
__device__ __forceinline__ V block_reduce(V v, V* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  v = warp_reduce(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    v = lane < warps ? scratch[lane] : V{};
    v = warp_reduce(v);
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  const V result = scratch[0];
  __syncthreads();
  return result;
}

// VEC elements of T: one 16-byte access when VEC * sizeof(T) == 16, a scalar when VEC == 1.
template <typename T, int VEC>
struct Vec;

template <typename T>
struct Vec<T, 1> {
  using Storage = T;
};
template <>
struct Vec<float, 4> {
  using Storage = uint4;
};
template <>
struct Vec<__half, 8> {
  using Storage = uint4;
};
template <>
struct Vec<__nv_bfloat16, 8> {
  using Storage = uint4;
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// 16-bit patterns of the half types.
__device__ __forceinline__ float bits_to_float(uint16_t b, __half) {
  return __half2float(__ushort_as_half(b));
}
__device__ __forceinline__ float bits_to_float(uint16_t b, __nv_bfloat16) {
  return __bfloat162float(__ushort_as_bfloat16(b));
}
__device__ __forceinline__ uint32_t float_to_bits(float v, __half) {
  return __half_as_ushort(__float2half_rn(v));
}
__device__ __forceinline__ uint32_t float_to_bits(float v, __nv_bfloat16) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// The 32-bit word w of a 16-byte vector; two fp32 or half values into one word.
template <int W>
__device__ __forceinline__ uint32_t word(const uint4& s) {
  if constexpr (W == 0) return s.x;
  if constexpr (W == 1) return s.y;
  if constexpr (W == 2) return s.z;
  return s.w;
}

template <typename T, int W, int VEC>
__device__ __forceinline__ void unpack_word(const uint4& s, float (&f)[VEC]) {
  const uint32_t v = word<W>(s);
  if constexpr (sizeof(T) == 4) {
    f[W] = __uint_as_float(v);
  } else {
    f[2 * W] = bits_to_float(static_cast<uint16_t>(v & 0xffffu), T{});
    f[2 * W + 1] = bits_to_float(static_cast<uint16_t>(v >> 16), T{});
  }
}

template <typename T, int W, int VEC>
__device__ __forceinline__ uint32_t pack_word(const float (&f)[VEC]) {
  if constexpr (sizeof(T) == 4) {
    return __float_as_uint(f[W]);
  } else {
    return float_to_bits(f[2 * W], T{}) | (float_to_bits(f[2 * W + 1], T{}) << 16);
  }
}

// Unpack a stored vector into fp32 values.
template <typename T, int VEC>
__device__ __forceinline__ void unpack(const typename Vec<T, VEC>::Storage& s, float (&f)[VEC]) {
  if constexpr (VEC == 1) {
    f[0] = to_float(s);
  } else {
    unpack_word<T, 0>(s, f);
    unpack_word<T, 1>(s, f);
    unpack_word<T, 2>(s, f);
    unpack_word<T, 3>(s, f);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ typename Vec<T, VEC>::Storage pack(const float (&f)[VEC]) {
  if constexpr (VEC == 1) {
    return from_float<T>(f[0]);
  } else {
    return uint4{pack_word<T, 0>(f), pack_word<T, 1>(f), pack_word<T, 2>(f), pack_word<T, 3>(f)};
  }
}

// Global loads and stores of one vector (16 bytes when vectorised; x is read-only).
template <typename T, int VEC>
__device__ __forceinline__ void load_global(const T* p, float (&f)[VEC]) {
  using S = typename Vec<T, VEC>::Storage;
  unpack<T, VEC>(__ldg(reinterpret_cast<const S*>(p)), f);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_global(T* p, const float (&f)[VEC]) {
  using S = typename Vec<T, VEC>::Storage;
  *reinterpret_cast<S*>(p) = pack<T, VEC>(f);
}

// Streaming store (evict-first): y is not read again by this kernel.
template <typename T, int VEC>
__device__ __forceinline__ void store_global_streaming(T* p, const float (&f)[VEC]) {
  static_assert(VEC * sizeof(T) == 16, "streaming stores are 16-byte vectors");
  __stcs(reinterpret_cast<uint4*>(p), pack<T, VEC>(f));
}

// A vector from shared memory (p 16-byte aligned for VEC > 1, as every cp.async target is).
// Spelled as one ld.shared.v4: through a plain dereference the compiler split it into four
// 32-bit LDS, four issue slots where one does.
template <typename T, int VEC>
__device__ __forceinline__ void load_shared(const T* p, float (&f)[VEC]) {
  if constexpr (VEC == 1) {
    f[0] = to_float(*p);
  } else {
    uint4 s;
    const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(s.x), "=r"(s.y), "=r"(s.z), "=r"(s.w)
                 : "r"(address)
                 : "memory");
    unpack<T, VEC>(s, f);
  }
}

// 16-byte asynchronous copy global -> shared, bypassing L1 (sm_80+).
__device__ __forceinline__ void copy_async16(void* smem, const void* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem) : "memory");
}

__device__ __forceinline__ void copy_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Wait until at most `pending` committed groups of this thread are still in flight.
template <int PENDING>
__device__ __forceinline__ void copy_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}

// A GPU-scope acquire load: what other blocks wrote before releasing this word is visible.
__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// 2^x flushing subnormal results to zero. __expf's ex2 keeps subnormals, at a compare and two
// predicated multiplies per value; here e = exp(-v) only ever meets 1 + e, where a subnormal
// adds nothing, so the flush changes no result.
__device__ __forceinline__ float exp2_ftz(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}

// v * sigmoid(v) = v / (1 + e^-v), e^-v = 2^(-v * log2(e)) as __expf computes it.
__device__ __forceinline__ float silu(float v) {
  return __fdividef(v, 1.0f + exp2_ftz(v * -1.4426950408889634f));
}

// y = act((x - mean) * scale + beta) for one value, scale = rstd * gamma. Subtracting the mean
// first keeps inputs with a large mean exact (x and mean are within a factor of two).
__device__ __forceinline__ float affine_act(float v, float mean, float scale, float beta,
                                            bool act) {
  const float o = fmaf(v - mean, scale, beta);
  return act ? silu(o) : o;
}

}  // namespace gn

#endif  // GN_DEPLOY_DEVICE_COMMON_CUH
