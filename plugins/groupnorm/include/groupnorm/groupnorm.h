/*
 * gn-deploy group-normalization kernels: a plain C API with no TensorRT (and no CUDA header)
 * types. y = act((x - mean_g) / sqrt(var_g + eps) * gamma_c + beta_c), statistics in fp32 over
 * the C/G contiguous channels of group g and all spatial positions, population variance.
 *
 * Every function returns a gn_status; none throws, none synchronises the host.
 */
#ifndef GN_DEPLOY_GROUPNORM_H
#define GN_DEPLOY_GROUPNORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define GN_API __declspec(dllexport)
#else
#define GN_API __attribute__((visibility("default")))
#endif

typedef enum gn_status {
  GN_SUCCESS = 0,
  GN_ERROR_NULL_POINTER = 1,      /* a required pointer argument is NULL */
  GN_ERROR_INVALID_SHAPE = 2,     /* C < 1, N or spatial size < 0, or too large */
  GN_ERROR_INVALID_GROUPS = 3,    /* groups <= 0 or C % groups != 0 */
  GN_ERROR_INVALID_EPSILON = 4,   /* epsilon negative, NaN or infinite */
  GN_ERROR_INVALID_DTYPE = 5,     /* not a gn_dtype */
  GN_ERROR_INVALID_LAYOUT = 6,    /* not a gn_layout */
  GN_ERROR_INVALID_ACTIVATION = 7,/* not a gn_activation */
  GN_ERROR_WORKSPACE = 8,         /* workspace missing or smaller than gn_workspace_size */
  GN_ERROR_INVALID_DEVICE = 9,    /* device description unusable (zero SMs, ...) */
  GN_ERROR_CUDA = 10,             /* a CUDA runtime call failed; see cudaGetLastError */
  GN_ERROR_INVALID_FIELD = 11,    /* a plugin field has the wrong type or length */
  GN_ERROR_INVALID_PATH = 12,     /* a forced launch path cannot serve these params here */
  GN_ERROR_HOST = 13              /* CPU kernels: host memory ran out or the parallel-for failed */
} gn_status;

typedef enum gn_dtype { GN_FLOAT32 = 0, GN_FLOAT16 = 1, GN_BFLOAT16 = 2 } gn_dtype;

/* GN_NCHW: [N, C, *spatial] contiguous. GN_NHWC: [N, *spatial, C] contiguous (channels last). */
typedef enum gn_layout { GN_NCHW = 0, GN_NHWC = 1 } gn_layout;

typedef enum gn_activation { GN_ACT_NONE = 0, GN_ACT_SILU = 1 } gn_activation;

/* N = 0 or spatial = 0 (an empty tensor) is valid: gn_forward then does nothing. */
typedef struct gn_params {
  int64_t n;          /* batch, >= 0 */
  int64_t c;          /* channels, >= 1, divisible by groups */
  int64_t spatial;    /* product of the spatial dims (1 for [N, C]), >= 0 */
  int32_t groups;     /* number of groups G */
  float epsilon;      /* added to the variance, >= 0 */
  int32_t activation; /* gn_activation */
  int32_t layout;     /* gn_layout */
  int32_t dtype;      /* gn_dtype of x and y; gamma and beta are always fp32 */
} gn_params;

/* What the loaded kernels can use on a device (gn_device.features). */
typedef enum gn_feature {
  GN_FEATURE_CLUSTER = 1,    /* thread-block clusters, and the library holds sm_90+ code for them */
  GN_FEATURE_COOPERATIVE = 2 /* cooperative (co-resident) launches */
} gn_feature;

/* What the planner needs to know about a GPU (gn_query_device fills it from the runtime). */
typedef struct gn_device {
  int32_t sm_count;
  int32_t max_smem_per_block; /* opt-in dynamic shared memory per block, bytes */
  int32_t cc_major;
  int32_t cc_minor;
  int32_t smem_per_sm;        /* shared memory per multiprocessor, bytes */
  int32_t features;           /* gn_feature bits */
} gn_device;

typedef enum gn_path {
  GN_PATH_AUTO = -1,   /* let the planner choose (only as a request) */
  GN_PATH_ONCHIP = 0,  /* one block per group, group kept in shared memory: x read once */
  GN_PATH_STREAM = 1,  /* partial statistics per chunk, then normalise: x read twice */
  GN_PATH_CLUSTER = 2, /* a thread-block cluster per group, each block keeping its slice in
                          shared memory, statistics merged over distributed shared memory */
  GN_PATH_TILED = 3,   /* a co-resident grid of blocks sharing each group (NCHW) or sample
                          (NHWC) in 16-byte tiles staged in shared memory: x read once where the
                          data of a wave fits on chip; needs 16-byte aligned x and y and
                          16-byte rows (NHWC: C, NCHW: C/G * spatial, a multiple of the vector) */
  GN_PATH_EMPTY = 4,   /* nothing to do: the tensor has no element */
  GN_PATH_REGISTERS = 5 /* candidate, only on request (never the planner's choice yet): one
                           block, or on Hopper a 2-block cluster, per group, the group held in
                           registers; needs 16-byte aligned x and y and vectors within a
                           channel (NCHW: spatial) or a group's slice (NHWC: C/G) */
} gn_path;

typedef struct gn_plan {
  int32_t path;            /* gn_path */
  int32_t threads;         /* threads per block */
  int32_t vec;             /* elements per vector access */
  int32_t chunks;          /* blocks per group (1 on-chip; cluster size (registers: 1 or 2);
                              tiled: per unit) */
  int64_t blocks;          /* grid size of each launch */
  int64_t smem_bytes;      /* dynamic shared memory per block */
  int64_t workspace_bytes; /* scratch the launch needs in device memory */
  /* Tiled path only (0 elsewhere), except tiles: */
  int32_t tiles;           /* tiles per block and unit (1: the unit stays on chip, and the
                              next unit's tile loads while this one finishes); registers path:
                              16-byte vectors per thread (1, 2, 4 or 8) */
  int32_t units_per_wave;  /* units (groups for NCHW, samples for NHWC) processed at once */
  int64_t tile;            /* elements (NCHW) or positions (NHWC) per tile */
  int64_t slot_elems;      /* elements in each shared-memory slot (three when tiles is 1) */
} gn_plan;

/* Check params; GN_SUCCESS when gn_forward would accept them. */
GN_API gn_status gn_validate(const gn_params* params);

/* The launch plan for params on a device, for 16-byte aligned x and y. Pure host code. */
GN_API gn_status gn_plan_launch(const gn_params* params, const gn_device* device, gn_plan* plan);

/* The plan for a requested path (GN_PATH_AUTO: the planner's choice); aligned says whether x
 * and y are 16-byte aligned. GN_ERROR_INVALID_PATH when that path cannot serve params on
 * device (a group too large for shared memory, no cluster code, unaligned tiles, ...). */
GN_API gn_status gn_plan_launch_path(const gn_params* params, const gn_device* device,
                                     int32_t path, int32_t aligned, gn_plan* plan);

/* Describe the current CUDA device (attribute queries only, no synchronisation). */
GN_API gn_status gn_query_device(gn_device* device);

/* Device scratch bytes that cover gn_forward for params and for any smaller N or spatial size,
 * on any device: pure host code, the same wherever it runs (a TensorRT engine may be built on
 * one machine, or none with a GPU, and run on another). */
GN_API gn_status gn_workspace_size(const gn_params* params, size_t* bytes);

/*
 * Enqueue group normalization on stream (a cudaStream_t; NULL is the default stream).
 * x and y: device pointers of params->dtype (y may not alias x); gamma, beta: fp32 [C].
 * workspace: at least gn_workspace_size bytes (may be NULL when that is 0). For an empty
 * tensor nothing is launched and every pointer may be NULL.
 */
GN_API gn_status gn_forward(const gn_params* params, const void* x, const float* gamma,
                            const float* beta, void* y, void* workspace, size_t workspace_bytes,
                            void* stream);

/* gn_forward on a requested path (tests and benchmarks); GN_PATH_AUTO is gn_forward. */
GN_API gn_status gn_forward_path(const gn_params* params, int32_t path, const void* x,
                                 const float* gamma, const float* beta, void* y, void* workspace,
                                 size_t workspace_bytes, void* stream);

/* A static, human-readable description of a status. */
GN_API const char* gn_status_string(gn_status status);

#ifdef __cplusplus
}
#endif

#endif /* GN_DEPLOY_GROUPNORM_H */
