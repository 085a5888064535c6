/*
 * gn-deploy group-normalization kernels for the CPU: the contract of gn_forward (groupnorm.h) on
 * host memory. Statistics in fp32 per chunk, chunks merged in double in a fixed order, so that
 * one input gives bitwise the same output whatever the thread count or the order tasks run in.
 *
 * Threading is the caller's: gn_cpu_forward hands independent tasks to a parallel-for (ONNX
 * Runtime's intra-op pool in the custom-op library; NULL runs them on the calling thread).
 */
#ifndef GN_DEPLOY_GROUPNORM_CPU_H
#define GN_DEPLOY_GROUPNORM_CPU_H

#include "groupnorm/groupnorm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One task of a parallel-for. */
typedef void (*gn_task_fn)(void* data, size_t index);

/* Run task(data, i) for every i in [0, count), in any order and possibly at once, returning when
 * all have run; 0 on success, anything else when the tasks could not be run. */
typedef int32_t (*gn_parallel_for)(void* runner, gn_task_fn task, void* data, size_t count);

/*
 * y = GN(x) on the CPU, params as for gn_forward (layout NCHW: [N, C, *spatial]; NHWC:
 * [N, *spatial, C]); x, y: host memory of params->dtype (y may not alias x); gamma, beta: fp32
 * [C]. An empty tensor is a successful no-op (every pointer may then be NULL).
 * GN_ERROR_HOST when host memory ran out or parallel_for failed.
 */
GN_API gn_status gn_cpu_forward(const gn_params* params, const void* x, const float* gamma,
                                const float* beta, void* y, gn_parallel_for parallel_for,
                                void* runner);

/* gn_cpu_forward with a named instruction set ("avx512", "avx2" or "baseline"; NULL: the best
 * this CPU has), for tests and benchmarks; GN_ERROR_INVALID_PATH where the CPU lacks it. */
GN_API gn_status gn_cpu_forward_isa(const char* isa, const gn_params* params, const void* x,
                                    const float* gamma, const float* beta, void* y,
                                    gn_parallel_for parallel_for, void* runner);

/* The instruction set gn_cpu_forward uses on this machine: "avx512", "avx2" or "baseline". */
GN_API const char* gn_cpu_isa(void);

#ifdef __cplusplus
}
#endif

#endif /* GN_DEPLOY_GROUPNORM_CPU_H */
