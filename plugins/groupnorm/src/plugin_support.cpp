// TensorRT-free logic of the FusedGroupNorm plugin: fields and formats.
#include "groupnorm/plugin_support.h"

#include <cmath>
#include <cstdio>
#include <string>

namespace {

gn_status fail(gn_status status, char* message, size_t size, const char* text) {
  if (message != nullptr && size > 0) std::snprintf(message, size, "%s", text);
  return status;
}

}  // namespace

namespace {

// Read one integer or float field of length 1; false (with message) on a bad type or length.
bool read_number(const gn_field& f, bool integer, double* value, char* message, size_t size) {
  if (f.data == nullptr || f.length != 1) {
    if (message != nullptr && size > 0) {
      std::snprintf(message, size, "field %s must hold exactly one value", f.name);
    }
    return false;
  }
  switch (f.type) {
    case GN_FIELD_INT32: *value = *static_cast<const int32_t*>(f.data); return true;
    case GN_FIELD_INT64: *value = static_cast<double>(*static_cast<const int64_t*>(f.data)); return true;
    case GN_FIELD_FLOAT32:
      if (!integer) { *value = *static_cast<const float*>(f.data); return true; }
      break;
    case GN_FIELD_FLOAT64:
      if (!integer) { *value = *static_cast<const double*>(f.data); return true; }
      break;
    default:
      break;
  }
  if (message != nullptr && size > 0) {
    std::snprintf(message, size, "field %s must be %s", f.name, integer ? "an integer" : "a float");
  }
  return false;
}

}  // namespace

extern "C" gn_status gn_plugin_parse_fields(const gn_field* fields, int32_t count,
                                            gn_plugin_config* config, char* message,
                                            size_t message_size) {
  if (config == nullptr || (fields == nullptr && count > 0)) {
    return fail(GN_ERROR_NULL_POINTER, message, message_size, "no fields");
  }
  bool have_groups = false, have_epsilon = false;
  double groups = 0.0, epsilon = 0.0, activation = 0.0, channels_last = 0.0;
  for (int32_t i = 0; i < count; ++i) {
    const gn_field& f = fields[i];
    if (f.name == nullptr) continue;
    const std::string name(f.name);
    bool ok = true;
    if (name == "num_groups") {
      ok = read_number(f, true, &groups, message, message_size);
      have_groups = true;
    } else if (name == "epsilon") {
      ok = read_number(f, false, &epsilon, message, message_size);
      have_epsilon = true;
    } else if (name == "activation") {
      ok = read_number(f, true, &activation, message, message_size);
    } else if (name == "channels_last") {
      ok = read_number(f, true, &channels_last, message, message_size);
    }
    if (!ok) return GN_ERROR_INVALID_FIELD;
  }
  if (!have_groups) return fail(GN_ERROR_INVALID_GROUPS, message, message_size, "missing field num_groups");
  if (!have_epsilon) return fail(GN_ERROR_INVALID_EPSILON, message, message_size, "missing field epsilon");
  if (!(groups >= 1.0) || groups > 2147483647.0) {
    return fail(GN_ERROR_INVALID_GROUPS, message, message_size,
                "field num_groups must be a positive integer");
  }
  if (!(epsilon >= 0.0) || std::isinf(epsilon)) {
    return fail(GN_ERROR_INVALID_EPSILON, message, message_size,
                "field epsilon must be a finite float >= 0");
  }
  if (activation != GN_ACT_NONE && activation != GN_ACT_SILU) {
    return fail(GN_ERROR_INVALID_ACTIVATION, message, message_size,
                "field activation must be 0 (none) or 1 (SiLU)");
  }
  if (channels_last != 0.0 && channels_last != 1.0) {
    return fail(GN_ERROR_INVALID_FIELD, message, message_size,
                "field channels_last must be 0 or 1");
  }
  *config = gn_plugin_config{static_cast<int32_t>(groups), static_cast<float>(epsilon),
                             static_cast<int32_t>(activation), static_cast<int32_t>(channels_last)};
  return fail(GN_SUCCESS, message, message_size, "");
}

extern "C" int32_t gn_plugin_supports_format(int32_t dtype, int32_t format, int32_t rank,
                                             int64_t channels, int32_t channels_last) {
  const bool half = dtype == GN_FLOAT16 || dtype == GN_BFLOAT16;
  if (channels_last != 0 && (rank == 4 || (rank == 5 && dtype == GN_FLOAT32))) {
    return (dtype == GN_FLOAT32 || half) && format == GN_FORMAT_HWC && channels >= 1;
  }
  switch (format) {
    case GN_FORMAT_LINEAR:
      return (dtype == GN_FLOAT32 || half) && rank >= 2;
    case GN_FORMAT_HWC:
      return dtype == GN_FLOAT32 && (rank == 4 || rank == 5) && channels >= 1;
    case GN_FORMAT_HWC8:
      return half && (rank == 4 || rank == 5) && channels >= 1 && channels % 8 == 0;
    case GN_FORMAT_HWC16:
      return dtype == GN_FLOAT16 && rank == 4 && channels >= 1 && channels % 16 == 0;
    default:
      return 0;
  }
}

extern "C" int32_t gn_plugin_layout(int32_t format) {
  return format == GN_FORMAT_LINEAR ? GN_NCHW : GN_NHWC;
}
