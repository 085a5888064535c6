// The ONNX Runtime custom-op library: gn_deploy.FusedGroupNorm on the CPU execution provider.
// The op, its attributes and their validation are the TensorRT plugin's (plugin_support.cpp
// parses both); the work is gn_cpu_forward, threaded through ONNX Runtime's intra-op pool.
// Every failure is a status naming the node; nothing is thrown across the C API.
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "groupnorm/groupnorm_cpu.h"
#include "groupnorm/plugin_support.h"
#include "ort_api.h"

namespace {

const OrtApi* g_api = nullptr;

OrtStatus* fail(const std::string& node, const std::string& what) {
  const std::string text = "gn_deploy.FusedGroupNorm node '" + node + "': " + what;
  return ort::CreateStatus::of(g_api)(ORT_INVALID_ARGUMENT, text.c_str());
}

void release(OrtStatus* status) {
  if (status != nullptr) ort::ReleaseStatus::of(g_api)(status);
}

struct Kernel {
  std::string node;
  gn_plugin_config config;
};

std::string node_name(const OrtKernelInfo* info) {
  size_t size = 0;
  OrtStatus* status = ort::KernelInfoGetNodeName::of(g_api)(info, nullptr, &size);
  if (status != nullptr || size == 0) {
    release(status);
    return "?";
  }
  std::string name(size, '\0');
  status = ort::KernelInfoGetNodeName::of(g_api)(info, &name[0], &size);
  release(status);
  name.resize(std::strlen(name.c_str()));
  return name;
}

// Whether the node has the attribute as a string or a list (a size query, nothing read).
bool has_other_attribute(const OrtKernelInfo* info, const char* name) {
  size_t size = 0;
  OrtStatus* status = ort::KernelInfoGetAttributeString::of(g_api)(info, name, nullptr, &size);
  if (status != nullptr) {
    release(status);
    status = ort::KernelInfoGetAttributeArrayInt64::of(g_api)(info, name, nullptr, &size);
  }
  if (status != nullptr) {
    release(status);
    status = ort::KernelInfoGetAttributeArrayFloat::of(g_api)(info, name, nullptr, &size);
  }
  release(status);
  return status == nullptr;
}

// An attribute as the plugin's creator would see it: an integer field when it reads as int64, a
// float field when it reads as float, a field of another type when it is a string or a list,
// no field when it is absent.
struct Attribute {
  int64_t integer = 0;
  float real = 0.0f;
};

bool read_attribute(const OrtKernelInfo* info, const char* name, Attribute* value,
                    gn_field* field) {
  OrtStatus* status = ort::KernelInfoGetAttributeInt64::of(g_api)(info, name, &value->integer);
  if (status == nullptr) {
    *field = gn_field{name, &value->integer, GN_FIELD_INT64, 1};
    return true;
  }
  release(status);
  status = ort::KernelInfoGetAttributeFloat::of(g_api)(info, name, &value->real);
  if (status == nullptr) {
    *field = gn_field{name, &value->real, GN_FIELD_FLOAT32, 1};
    return true;
  }
  release(status);
  if (!has_other_attribute(info, name)) return false;
  *field = gn_field{name, &value->integer, GN_FIELD_OTHER, 1};
  return true;
}

// The creator's reason, in ONNX's words ("attribute" where TensorRT says "field").
std::string attribute_message(const char* message) {
  std::string text(message);
  for (size_t at = text.find("field"); at != std::string::npos; at = text.find("field", at)) {
    text.replace(at, 5, "attribute");
  }
  return text;
}

OrtStatus* create_kernel(const OrtKernelInfo* info, void** kernel) {
  const std::string node = node_name(info);
  static const char* const kNames[] = {"num_groups", "epsilon", "activation", "channels_last"};
  Attribute values[4];
  gn_field fields[4];
  int32_t count = 0;
  for (int i = 0; i < 4; ++i) {
    if (read_attribute(info, kNames[i], &values[i], &fields[count])) ++count;
  }
  gn_plugin_config config{};
  char message[256] = "";
  if (gn_plugin_parse_fields(fields, count, &config, message, sizeof message) != GN_SUCCESS) {
    return fail(node, attribute_message(message));
  }
  *kernel = new Kernel{node, config};
  return nullptr;
}

struct Tensor {
  int32_t type = ORT_UNDEFINED;
  std::vector<int64_t> dims;
};

OrtStatus* describe(const OrtValue* value, Tensor* tensor) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  OrtStatus* status = ort::GetTensorTypeAndShape::of(g_api)(value, &info);
  size_t rank = 0;
  if (status == nullptr) status = ort::GetTensorElementType::of(g_api)(info, &tensor->type);
  if (status == nullptr) status = ort::GetDimensionsCount::of(g_api)(info, &rank);
  if (status == nullptr) {
    tensor->dims.resize(rank);
    status = ort::GetDimensions::of(g_api)(info, tensor->dims.data(), rank);
  }
  if (info != nullptr) ort::ReleaseTensorTypeAndShapeInfo::of(g_api)(info);
  return status;
}

std::string shape_text(const std::vector<int64_t>& dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + "]";
}

int32_t dtype_of(int32_t type) {
  switch (type) {
    case ORT_FLOAT: return GN_FLOAT32;
    case ORT_FLOAT16: return GN_FLOAT16;
    case ORT_BFLOAT16: return GN_BFLOAT16;
    default: return -1;
  }
}

// gamma and beta: fp32 vectors of C values.
std::string affine_error(const char* name, const Tensor& t, int64_t channels) {
  if (t.type != ORT_FLOAT) return std::string(name) + " must be float32";
  if (t.dims.size() != 1 || t.dims[0] != channels) {
    return std::string(name) + " has shape " + shape_text(t.dims) + ", not [" +
           std::to_string(channels) + "] (C of x)";
  }
  return "";
}

std::string shape_error(const Kernel& k, const Tensor& x, const Tensor& gamma, const Tensor& beta) {
  if (dtype_of(x.type) < 0) return "x must be float32, float16 or bfloat16";
  if (x.dims.size() < 3 || x.dims.size() > 5) {
    return "x must be 3-D to 5-D [N, C, *spatial], not " + shape_text(x.dims);
  }
  const int64_t channels = x.dims[1];
  if (channels < 1 || channels % k.config.num_groups != 0) {
    return "C = " + std::to_string(channels) + " is not divisible by num_groups = " +
           std::to_string(k.config.num_groups);
  }
  const std::string error = affine_error("gamma", gamma, channels);
  return error.empty() ? affine_error("beta", beta, channels) : error;
}

struct Runner {
  OrtKernelContext* context;
  OrtStatus* status;
};

int32_t parallel_for(void* runner, gn_task_fn task, void* data, size_t count) {
  auto* r = static_cast<Runner*>(runner);
  r->status = ort::KernelContextParallelFor::of(g_api)(r->context, task, count, 0, data);
  return r->status == nullptr ? 0 : 1;
}

OrtStatus* input(const Kernel& k, OrtKernelContext* context, size_t index, const OrtValue** value,
                 Tensor* tensor) {
  OrtStatus* status = ort::KernelContextGetInput::of(g_api)(context, index, value);
  if (status == nullptr && *value == nullptr) {
    static const char* const kNames[] = {"x", "gamma", "beta"};
    return fail(k.node, std::string("missing input ") + kNames[index]);
  }
  return status != nullptr ? status : describe(*value, tensor);
}

OrtStatus* compute(const Kernel& k, OrtKernelContext* context) {
  const OrtValue* values[3] = {};
  Tensor tensors[3];
  for (size_t i = 0; i < 3; ++i) {
    if (OrtStatus* status = input(k, context, i, &values[i], &tensors[i])) return status;
  }
  const Tensor& x = tensors[0];
  const std::string error = shape_error(k, x, tensors[1], tensors[2]);
  if (!error.empty()) return fail(k.node, error);
  int64_t spatial = 1;
  for (size_t i = 2; i < x.dims.size(); ++i) spatial *= x.dims[i];
  const gn_params params{x.dims[0], x.dims[1], spatial, k.config.num_groups, k.config.epsilon,
                         k.config.activation, GN_NCHW, dtype_of(x.type)};
  const gn_status valid = gn_validate(&params);
  if (valid != GN_SUCCESS) return fail(k.node, gn_status_string(valid));
  OrtValue* out = nullptr;
  OrtStatus* status =
      ort::KernelContextGetOutput::of(g_api)(context, 0, x.dims.data(), x.dims.size(), &out);
  void* data[4] = {};
  for (size_t i = 0; status == nullptr && i < 3; ++i) {
    status = ort::GetTensorMutableData::of(g_api)(const_cast<OrtValue*>(values[i]), &data[i]);
  }
  if (status == nullptr) status = ort::GetTensorMutableData::of(g_api)(out, &data[3]);
  if (status != nullptr) return status;
  Runner runner{context, nullptr};
  const gn_status done = gn_cpu_forward(&params, data[0], static_cast<const float*>(data[1]),
                                        static_cast<const float*>(data[2]), data[3], parallel_for,
                                        &runner);
  if (runner.status != nullptr) return runner.status;
  return done == GN_SUCCESS ? nullptr : fail(k.node, gn_status_string(done));
}

// One registered op per dtype of x (same name, domain and attributes).
struct Op {
  OrtCustomOp base;
  int32_t type;
};

int32_t type_of(const OrtCustomOp* op) { return reinterpret_cast<const Op*>(op)->type; }

Op make_op(int32_t type) {
  OrtCustomOp o{};
  o.version = kCustomOpVersion;
  o.GetName = [](const OrtCustomOp*) { return "FusedGroupNorm"; };
  o.GetExecutionProviderType = [](const OrtCustomOp*) { return "CPUExecutionProvider"; };
  o.GetInputType = [](const OrtCustomOp* op, size_t i) { return i == 0 ? type_of(op) : ORT_FLOAT; };
  o.GetInputTypeCount = [](const OrtCustomOp*) -> size_t { return 3; };
  o.GetOutputType = [](const OrtCustomOp* op, size_t) { return type_of(op); };
  o.GetOutputTypeCount = [](const OrtCustomOp*) -> size_t { return 1; };
  o.KernelDestroy = [](void* kernel) { delete static_cast<Kernel*>(kernel); };
  o.GetInputCharacteristic = [](const OrtCustomOp*, size_t) -> int32_t { return ORT_REQUIRED; };
  o.GetOutputCharacteristic = [](const OrtCustomOp*, size_t) -> int32_t { return ORT_REQUIRED; };
  o.GetInputMemoryType = [](const OrtCustomOp*, size_t) -> int32_t { return ORT_MEM_DEFAULT; };
  o.GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
  o.GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 1; };
  o.GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
  o.GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 1; };
  o.CreateKernelV2 = [](const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info,
                        void** kernel) -> OrtStatus* {
    try {
      return create_kernel(info, kernel);
    } catch (const std::exception& e) {
      return fail("?", e.what());
    }
  };
  o.KernelComputeV2 = [](void* kernel, OrtKernelContext* context) -> OrtStatus* {
    const Kernel& k = *static_cast<const Kernel*>(kernel);
    try {
      return compute(k, context);
    } catch (const std::exception& e) {
      return fail(k.node, e.what());
    }
  };
  return Op{o, type};
}

Op g_ops[] = {make_op(ORT_FLOAT), make_op(ORT_FLOAT16), make_op(ORT_BFLOAT16)};

// The domain outlives every session: created once per process, never released.
OrtCustomOpDomain* g_domain = nullptr;
OrtStatus* g_domain_status = nullptr;

void create_domain() {
  g_domain_status = ort::CreateCustomOpDomain::of(g_api)("gn_deploy", &g_domain);
  for (Op& op : g_ops) {
    if (g_domain_status != nullptr) return;
    g_domain_status = ort::CustomOpDomainAdd::of(g_api)(g_domain, &op.base);
  }
}

}  // namespace

extern "C" GN_API OrtStatus* RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  const OrtApi* api = base->GetApi(kApiVersion);
  if (api == nullptr) {
    char text[160];
    std::snprintf(text, sizeof text,
                  "gn-deploy's FusedGroupNorm library needs ONNX Runtime 1.17 or newer, not %s",
                  base->GetVersionString());
    return ort::CreateStatus::of(base->GetApi(1))(ORT_FAIL, text);
  }
  static std::once_flag once;
  std::call_once(once, [api] {
    g_api = api;
    create_domain();
  });
  if (g_domain_status != nullptr) {
    return ort::CreateStatus::of(g_api)(ORT_FAIL, ort::GetErrorMessage::of(g_api)(g_domain_status));
  }
  return ort::AddCustomOpDomain::of(g_api)(options, g_domain);
}
