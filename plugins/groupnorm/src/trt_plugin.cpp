// TensorRT adapter: FusedGroupNorm v1 (namespace gn_deploy) as an IPluginV3 over the kernels'
// C API. It translates TensorRT's types and enums and decides nothing itself: fields, formats
// and workspace come from plugin_support (TensorRT-free, CPU-tested); enqueue calls gn_forward.
// The library exports getCreators and setLoggerFinder and does not link libnvinfer.
#include <NvInferRuntime.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "groupnorm/groupnorm.h"
#include "groupnorm/plugin_support.h"

#define GN_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace gn_deploy {
namespace {

using namespace nvinfer1;

constexpr char kPluginName[] = "FusedGroupNorm";
constexpr char kPluginVersion[] = "1";
constexpr char kPluginNamespace[] = "gn_deploy";
constexpr int32_t kInputs = 3;

std::atomic<ILoggerFinder*> g_logger_finder{nullptr};

void log(ILogger::Severity severity, const std::string& message) noexcept {
  try {
    ILoggerFinder* finder = g_logger_finder.load();
    ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr) logger->log(severity, (std::string(kPluginName) + ": " + message).c_str());
  } catch (...) {
    // Logging must never throw across TensorRT's interface.
  }
}

bool to_gn_dtype(DataType type, int32_t* out) {
  switch (type) {
    case DataType::kFLOAT: *out = GN_FLOAT32; return true;
    case DataType::kHALF: *out = GN_FLOAT16; return true;
    case DataType::kBF16: *out = GN_BFLOAT16; return true;
    default: return false;
  }
}

// TensorRT's vector formats name the channel axis by rank: kHWC8 for 4-D, kDHWC8 for 5-D.
bool to_gn_format(TensorFormat format, int32_t rank, int32_t* out) {
  switch (format) {
    case TensorFormat::kLINEAR: *out = GN_FORMAT_LINEAR; return true;
    case TensorFormat::kHWC: *out = GN_FORMAT_HWC; return rank == 4;
    case TensorFormat::kDHWC: *out = GN_FORMAT_HWC; return rank == 5;
    case TensorFormat::kHWC8: *out = GN_FORMAT_HWC8; return rank == 4;
    case TensorFormat::kDHWC8: *out = GN_FORMAT_HWC8; return rank == 5;
    case TensorFormat::kHWC16: *out = GN_FORMAT_HWC16; return rank == 4;
    default: return false;
  }
}

int32_t to_gn_field_type(PluginFieldType type) {
  switch (type) {
    case PluginFieldType::kINT32: return GN_FIELD_INT32;
    case PluginFieldType::kINT64: return GN_FIELD_INT64;
    case PluginFieldType::kFLOAT32: return GN_FIELD_FLOAT32;
    case PluginFieldType::kFLOAT64: return GN_FIELD_FLOAT64;
    default: return GN_FIELD_OTHER;
  }
}

class FusedGroupNormPlugin final : public IPluginV3,
                                   public IPluginV3OneCore,
                                   public IPluginV3OneBuild,
                                   public IPluginV3OneRuntime {
 public:
  explicit FusedGroupNormPlugin(gn_plugin_config config) : config_(config) {}
  FusedGroupNormPlugin(const FusedGroupNormPlugin& other) : config_(other.config_) {}
  FusedGroupNormPlugin& operator=(const FusedGroupNormPlugin&) = delete;
  ~FusedGroupNormPlugin() override = default;

  // IPluginV3
  IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
    switch (type) {
      case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
      case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
      case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }

  IPluginV3* clone() noexcept override {
    try {
      return new FusedGroupNormPlugin(*this);
    } catch (...) {
      log(ILogger::Severity::kERROR, "out of memory while cloning the plugin");
      return nullptr;
    }
  }

  // IPluginV3OneCore
  AsciiChar const* getPluginName() const noexcept override { return kPluginName; }
  AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

  // IPluginV3OneBuild
  int32_t getNbOutputs() const noexcept override { return 1; }

  int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override {
    if (nbInputs != kInputs || nbOutputs != 1) return -1;
    outputTypes[0] = inputTypes[0];
    return 0;
  }

  int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapes*/,
                          int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                          IExprBuilder& /*builder*/) noexcept override {
    if (nbInputs != kInputs || nbOutputs != 1) {
      log(ILogger::Severity::kERROR, "expects inputs (x, gamma, beta) and one output");
      return -1;
    }
    DimsExprs const& x = inputs[0];
    if (x.nbDims < 2) {
      log(ILogger::Severity::kERROR, "x must have rank >= 2 ([N, C, *spatial])");
      return -1;
    }
    if (!x.d[1]->isConstant()) {
      log(ILogger::Severity::kERROR, "the channel axis (1) of x must be known at build time");
      return -1;
    }
    const int64_t channels = x.d[1]->getConstantValue();
    if (channels % config_.num_groups != 0) {
      log(ILogger::Severity::kERROR, "C = " + std::to_string(channels) +
                                         " is not divisible by num_groups = " +
                                         std::to_string(config_.num_groups));
      return -1;
    }
    outputs[0] = x;
    return 0;
  }

  bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut,
                                 int32_t nbInputs, int32_t nbOutputs) noexcept override {
    if (nbInputs != kInputs || nbOutputs != 1 || pos < 0 || pos > kInputs) return false;
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (pos == 1 || pos == 2) {  // gamma, beta
      return desc.type == DataType::kFLOAT && desc.format == TensorFormat::kLINEAR;
    }
    if (pos == kInputs) {  // y: as x
      return desc.type == inOut[0].desc.type && desc.format == inOut[0].desc.format;
    }
    int32_t dtype = 0;
    int32_t format = 0;
    const int32_t rank = desc.dims.nbDims;
    if (!to_gn_dtype(desc.type, &dtype) || !to_gn_format(desc.format, rank, &format)) return false;
    return gn_plugin_supports_format(dtype, format, rank, rank > 1 ? desc.dims.d[1] : -1,
                                     config_.channels_last) != 0;
  }

  int32_t configurePlugin(DynamicPluginTensorDesc const* /*in*/, int32_t nbInputs,
                          DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept override {
    return nbInputs == kInputs && nbOutputs == 1 ? 0 : -1;
  }

  size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          DynamicPluginTensorDesc const* /*outputs*/,
                          int32_t /*nbOutputs*/) const noexcept override {
    // The bound depends on the shapes only, never on the GPU: the engine may be built on a
    // machine without one and run on any other; enqueue then asks for no more than this.
    gn_params params{};
    size_t bytes = 0;
    if (nbInputs != kInputs || !make_params(inputs[0].max, inputs[0].desc, &params) ||
        gn_workspace_size(&params, &bytes) != GN_SUCCESS) {
      log(ILogger::Severity::kERROR, "cannot size the workspace for these shapes");
      return 0;
    }
    return bytes;
  }

  // IPluginV3OneRuntime
  int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*,
                        int32_t nbOutputs) noexcept override {
    gn_params params{};
    if (nbInputs != kInputs || nbOutputs != 1 || !make_params(in[0].dims, in[0], &params)) return -1;
    const gn_status status = gn_validate(&params);
    if (status != GN_SUCCESS) log(ILogger::Severity::kERROR, gn_status_string(status));
    return status == GN_SUCCESS ? 0 : -1;
  }

  int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override {
    gn_params params{};
    size_t bytes = 0;
    if (!make_params(inputDesc[0].dims, inputDesc[0], &params)) return -1;
    gn_status status = gn_workspace_size(&params, &bytes);
    if (status == GN_SUCCESS) {
      status = gn_forward(&params, inputs[0], static_cast<float const*>(inputs[1]),
                          static_cast<float const*>(inputs[2]), outputs[0], workspace, bytes,
                          stream);
    }
    if (status != GN_SUCCESS) {
      log(ILogger::Severity::kERROR, std::string("enqueue failed: ") + gn_status_string(status));
      return -1;
    }
    return 0;
  }

  IPluginV3* attachToContext(IPluginResourceContext* /*context*/) noexcept override {
    return clone();
  }

  PluginFieldCollection const* getFieldsToSerialize() noexcept override {
    fields_ = {PluginField("num_groups", &config_.num_groups, PluginFieldType::kINT32, 1),
               PluginField("epsilon", &config_.epsilon, PluginFieldType::kFLOAT32, 1),
               PluginField("activation", &config_.activation, PluginFieldType::kINT32, 1),
               PluginField("channels_last", &config_.channels_last, PluginFieldType::kINT32, 1)};
    collection_.nbFields = static_cast<int32_t>(fields_.size());
    collection_.fields = fields_.data();
    return &collection_;
  }

 private:
  template <typename Desc>
  bool make_params(Dims const& dims, Desc const& desc, gn_params* params) const noexcept {
    int32_t dtype = 0;
    int32_t format = 0;
    if (dims.nbDims < 2 || !to_gn_dtype(desc.type, &dtype) ||
        !to_gn_format(desc.format, dims.nbDims, &format)) {
      return false;
    }
    int64_t spatial = 1;
    for (int32_t i = 2; i < dims.nbDims; ++i) spatial *= dims.d[i];
    *params = gn_params{dims.d[0], dims.d[1], spatial, config_.num_groups, config_.epsilon,
                        config_.activation, gn_plugin_layout(format), dtype};
    return true;
  }
  bool make_params(Dims const& dims, DynamicPluginTensorDesc const& desc,
                   gn_params* params) const noexcept {
    return make_params(dims, desc.desc, params);
  }

  gn_plugin_config config_;
  std::array<PluginField, 4> fields_{};
  PluginFieldCollection collection_{};
};

class FusedGroupNormCreator final : public IPluginCreatorV3One {
 public:
  FusedGroupNormCreator() {
    names_ = {PluginField("num_groups", nullptr, PluginFieldType::kINT32, 1),
              PluginField("epsilon", nullptr, PluginFieldType::kFLOAT32, 1),
              PluginField("activation", nullptr, PluginFieldType::kINT32, 1),
              PluginField("channels_last", nullptr, PluginFieldType::kINT32, 1)};
    collection_.nbFields = static_cast<int32_t>(names_.size());
    collection_.fields = names_.data();
  }

  PluginFieldCollection const* getFieldNames() noexcept override { return &collection_; }
  AsciiChar const* getPluginName() const noexcept override { return kPluginName; }
  AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

  IPluginV3* createPlugin(AsciiChar const* name, PluginFieldCollection const* fc,
                          TensorRTPhase /*phase*/) noexcept override {
    try {
      std::vector<gn_field> fields;
      if (fc != nullptr) {
        for (int32_t i = 0; i < fc->nbFields; ++i) {
          PluginField const& f = fc->fields[i];
          fields.push_back(gn_field{f.name, f.data, to_gn_field_type(f.type), f.length});
        }
      }
      gn_plugin_config config{};
      std::array<char, 256> message{};
      const gn_status status = gn_plugin_parse_fields(
          fields.data(), static_cast<int32_t>(fields.size()), &config, message.data(),
          message.size());
      if (status != GN_SUCCESS) {
        log(ILogger::Severity::kERROR, std::string("cannot create '") +
                                           (name != nullptr ? name : "") + "': " + message.data());
        return nullptr;
      }
      return new FusedGroupNormPlugin(config);
    } catch (...) {
      log(ILogger::Severity::kERROR, "out of memory while creating the plugin");
      return nullptr;
    }
  }

 private:
  std::array<PluginField, 4> names_{};
  PluginFieldCollection collection_{};
};

}  // namespace
}  // namespace gn_deploy

GN_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  gn_deploy::g_logger_finder.store(finder);
}

GN_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static gn_deploy::FusedGroupNormCreator creator;
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
  nbCreators = 1;
  return creators;
}
