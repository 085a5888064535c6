/*
 * TensorRT-free logic of the FusedGroupNorm plugin (docs/design.md, "The plugin op"): field
 * validation and format support; the workspace is gn_workspace_size (device-independent).
 * The TensorRT adapter maps TensorRT's enums onto these and decides nothing itself, so all of
 * this is tested on the CPU.
 */
#ifndef GN_DEPLOY_PLUGIN_SUPPORT_H
#define GN_DEPLOY_PLUGIN_SUPPORT_H

#include "groupnorm/groupnorm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The plugin's creator fields, after parsing. */
typedef struct gn_plugin_config {
  int32_t num_groups;
  float epsilon;
  int32_t activation;
  int32_t channels_last; /* 1: offer only unpadded channels-last formats for 4-D and 5-D x */
} gn_plugin_config;

/* Tensor formats the plugin can meet, in TensorRT's terms. */
typedef enum gn_format {
  GN_FORMAT_LINEAR = 0, /* kLINEAR: [N, C, *spatial] */
  GN_FORMAT_HWC = 1,    /* kHWC / kDHWC: channels last, unpadded */
  GN_FORMAT_HWC8 = 2,   /* kHWC8 / kDHWC8: channels last, padded to a multiple of 8 */
  GN_FORMAT_HWC16 = 3   /* kHWC16: channels last, padded to a multiple of 16 */
} gn_format;

/* A creator field as TensorRT hands it over, its type translated by the adapter. */
typedef enum gn_field_type {
  GN_FIELD_INT32 = 0,
  GN_FIELD_INT64 = 1,
  GN_FIELD_FLOAT32 = 2,
  GN_FIELD_FLOAT64 = 3,
  GN_FIELD_OTHER = 4
} gn_field_type;

typedef struct gn_field {
  const char* name;
  const void* data;
  int32_t type; /* gn_field_type */
  int32_t length;
} gn_field;

/*
 * Parse the creator's fields num_groups (integer), epsilon (float), activation (integer,
 * default 0) and channels_last (integer 0 or 1, default 0) into config; other fields are
 * ignored. On failure writes a one-line reason naming
 * the field into message (at most message_size bytes, NUL-terminated) and returns the error.
 */
GN_API gn_status gn_plugin_parse_fields(const gn_field* fields, int32_t count,
                                        gn_plugin_config* config, char* message,
                                        size_t message_size);

/*
 * Whether x (and so y) may be of dtype and format for a tensor of this rank whose channel
 * count is channels (a build-time constant; < 1 if unknown). Channels-last formats need the
 * padding to vanish (C a multiple of the vector) so that the kernels' NHWC path reads them.
 * With channels_last (the op's attribute), a 4-D or 5-D x is offered kHWC/kDHWC only, in every
 * dtype: TensorRT-RTX building ahead of time takes the first format a plugin accepts, and
 * only this one meets its channels-last convolutions without a transpose on each side.
 * Without it, kHWC is offered for fp32 only (TensorRT's own rule for that format).
 */
GN_API int32_t gn_plugin_supports_format(int32_t dtype, int32_t format, int32_t rank,
                                         int64_t channels, int32_t channels_last);

/* The kernels' layout for a supported format. */
GN_API int32_t gn_plugin_layout(int32_t format);

#ifdef __cplusplus
}
#endif

#endif /* GN_DEPLOY_PLUGIN_SUPPORT_H */
