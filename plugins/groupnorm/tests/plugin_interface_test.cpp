// Drives libgn_trt_plugin through TensorRT's plugin interfaces only (no libnvinfer): creator
// fields, field validation with logged reasons, serialization round trip, capabilities, formats.
// Usage: plugin_interface_test path/to/libgn_trt_plugin.so   (exit code 0 when every check holds)
#include <NvInferRuntime.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "plugin_test_support.h"

using namespace nvinfer1;
using plugin_test::check;

namespace {

class CapturingLogger : public ILogger {
 public:
  void log(Severity severity, AsciiChar const* msg) noexcept override {
    if (severity <= Severity::kERROR) last_error = msg;
  }
  std::string last_error;
};

struct Fields {
  int32_t groups = 32;
  float epsilon = 1e-5f;
  int32_t activation = 1;
  int32_t channels_last = 0;
  std::vector<PluginField> list;
  PluginFieldCollection collection{};
  PluginFieldCollection const* build(bool with_groups = true, PluginFieldType eps_type =
                                                                  PluginFieldType::kFLOAT32) {
    list.clear();
    if (with_groups) list.emplace_back("num_groups", &groups, PluginFieldType::kINT32, 1);
    list.emplace_back("epsilon", &epsilon, eps_type, 1);
    list.emplace_back("activation", &activation, PluginFieldType::kINT32, 1);
    list.emplace_back("channels_last", &channels_last, PluginFieldType::kINT32, 1);
    list.emplace_back("plugin_namespace", "gn_deploy", PluginFieldType::kCHAR, 9);
    collection.nbFields = static_cast<int32_t>(list.size());
    collection.fields = list.data();
    return &collection;
  }
};

DynamicPluginTensorDesc desc(DataType type, TensorFormat format, std::vector<int64_t> dims) {
  DynamicPluginTensorDesc d{};
  d.desc.type = type;
  d.desc.format = format;
  d.desc.dims.nbDims = static_cast<int32_t>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) d.desc.dims.d[i] = dims[i];
  d.min = d.max = d.opt = d.desc.dims;
  return d;
}

bool supports(IPluginV3OneBuild* build, DataType type, TensorFormat format,
              std::vector<int64_t> dims) {
  const int64_t c = dims[1];
  DynamicPluginTensorDesc io[4] = {desc(type, format, dims),
                                   desc(DataType::kFLOAT, TensorFormat::kLINEAR, {c}),
                                   desc(DataType::kFLOAT, TensorFormat::kLINEAR, {c}),
                                   desc(type, format, dims)};
  for (int32_t pos = 0; pos < 4; ++pos) {
    if (!build->supportsFormatCombination(pos, io, 3, 1)) return false;
  }
  return true;
}

template <typename T>
T read(PluginFieldCollection const* fc, const char* name) {
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    if (std::strcmp(fc->fields[i].name, name) == 0) return *static_cast<T const*>(fc->fields[i].data);
  }
  return T{-1};
}

}  // namespace

int main(int argc, char** argv) {
  CapturingLogger logger;
  plugin_test::Finder finder(&logger);
  int32_t count = 0;
  IPluginCreatorV3One* creator = plugin_test::first_creator(argc, argv, &finder, &count);
  if (creator == nullptr) return 2;
  check(count == 1, "one creator");
  check(std::string(creator->getInterfaceInfo().kind) == "PLUGIN CREATOR_V3ONE", "creator is V3One");
  check(std::string(creator->getPluginName()) == "FusedGroupNorm" &&
            std::string(creator->getPluginVersion()) == "1" &&
            std::string(creator->getPluginNamespace()) == "gn_deploy",
        "creator identity");
  PluginFieldCollection const* names = creator->getFieldNames();
  check(names->nbFields == 4 && std::string(names->fields[0].name) == "num_groups" &&
            std::string(names->fields[1].name) == "epsilon" &&
            std::string(names->fields[2].name) == "activation" &&
            std::string(names->fields[3].name) == "channels_last",
        "field names");

  Fields fields;
  IPluginV3* plugin = creator->createPlugin("gn", fields.build(), TensorRTPhase::kBUILD);
  check(plugin != nullptr, "valid fields create a plugin");
  if (plugin == nullptr) return 1;

  auto* runtime = static_cast<IPluginV3OneRuntime*>(
      plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  PluginFieldCollection const* serialized = runtime->getFieldsToSerialize();
  check(read<int32_t>(serialized, "num_groups") == 32 &&
            read<float>(serialized, "epsilon") == 1e-5f &&
            read<int32_t>(serialized, "activation") == 1,
        "serialized fields");
  IPluginV3* restored = creator->createPlugin("gn", serialized, TensorRTPhase::kRUNTIME);
  check(restored != nullptr, "serialized fields recreate the plugin");
  if (restored != nullptr) {
    auto* again = static_cast<IPluginV3OneRuntime*>(
        restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME))->getFieldsToSerialize();
    check(read<int32_t>(again, "num_groups") == 32 && read<float>(again, "epsilon") == 1e-5f &&
              read<int32_t>(again, "activation") == 1 && read<int32_t>(again, "channels_last") == 0,
          "round trip keeps every field");
    delete restored;
  }
  IPluginV3* copy = plugin->clone();
  check(copy != nullptr, "clone");
  delete copy;

  auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
  check(std::string(core->getPluginName()) == "FusedGroupNorm", "core capability");
  auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
  check(build->getNbOutputs() == 1, "one output");
  DataType in_types[3] = {DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT};
  DataType out_type = DataType::kFLOAT;
  check(build->getOutputDataTypes(&out_type, 1, in_types, 3) == 0 && out_type == DataType::kHALF,
        "output type follows x");

  check(supports(build, DataType::kFLOAT, TensorFormat::kLINEAR, {2, 64, 8, 8}), "fp32 linear");
  check(supports(build, DataType::kHALF, TensorFormat::kLINEAR, {2, 64, 8, 8}), "fp16 linear");
  check(supports(build, DataType::kBF16, TensorFormat::kLINEAR, {2, 64, 4, 8, 8}), "bf16 linear 5-D");
  check(supports(build, DataType::kHALF, TensorFormat::kHWC8, {2, 64, 8, 8}), "fp16 HWC8");
  check(supports(build, DataType::kBF16, TensorFormat::kDHWC8, {2, 64, 4, 8, 8}), "bf16 DHWC8");
  check(supports(build, DataType::kFLOAT, TensorFormat::kHWC, {2, 64, 8, 8}), "fp32 HWC");
  check(supports(build, DataType::kHALF, TensorFormat::kHWC16, {2, 64, 8, 8}), "fp16 HWC16");
  check(!supports(build, DataType::kHALF, TensorFormat::kHWC8, {2, 36, 8, 8}), "HWC8 padded C refused");
  check(!supports(build, DataType::kHALF, TensorFormat::kHWC8, {2, 64, 4, 8, 8}), "HWC8 on 5-D refused");
  check(!supports(build, DataType::kINT8, TensorFormat::kLINEAR, {2, 64, 8, 8}), "int8 refused");
  check(!supports(build, DataType::kFLOAT, TensorFormat::kHWC8, {2, 64, 8, 8}), "fp32 HWC8 refused");
  {
    DynamicPluginTensorDesc io[4] = {desc(DataType::kHALF, TensorFormat::kLINEAR, {2, 64, 8, 8}),
                                     desc(DataType::kHALF, TensorFormat::kLINEAR, {64}),
                                     desc(DataType::kFLOAT, TensorFormat::kLINEAR, {64}),
                                     desc(DataType::kFLOAT, TensorFormat::kLINEAR, {2, 64, 8, 8})};
    check(!build->supportsFormatCombination(1, io, 3, 1), "gamma must be fp32");
    check(!build->supportsFormatCombination(3, io, 3, 1), "y must match x");
  }
  delete plugin;

  // channels_last=1: 4-D x in unpadded channels-last only, every dtype; 5-D fp16 as before.
  Fields last;
  last.channels_last = 1;
  IPluginV3* nhwc = creator->createPlugin("gn", last.build(), TensorRTPhase::kBUILD);
  check(nhwc != nullptr, "channels_last=1 creates a plugin");
  if (nhwc != nullptr) {
    auto* b = static_cast<IPluginV3OneBuild*>(nhwc->getCapabilityInterface(PluginCapabilityType::kBUILD));
    check(supports(b, DataType::kHALF, TensorFormat::kHWC, {2, 36, 8, 8}), "channels_last: fp16 HWC");
    check(supports(b, DataType::kFLOAT, TensorFormat::kHWC, {2, 64, 8, 8}), "channels_last: fp32 HWC");
    check(!supports(b, DataType::kHALF, TensorFormat::kLINEAR, {2, 64, 8, 8}), "channels_last: no 4-D linear");
    check(!supports(b, DataType::kHALF, TensorFormat::kHWC8, {2, 64, 8, 8}), "channels_last: no HWC8");
    check(supports(b, DataType::kHALF, TensorFormat::kLINEAR, {2, 64, 4, 8, 8}), "channels_last: 5-D fp16 linear");
    auto* r = static_cast<IPluginV3OneRuntime*>(nhwc->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(read<int32_t>(r->getFieldsToSerialize(), "channels_last") == 1, "channels_last serialized");
    delete nhwc;
  }

  struct Bad {
    const char* what;
    int32_t groups;
    float epsilon;
    int32_t activation;
    bool with_groups;
    PluginFieldType eps_type;
    const char* expected;
  };
  const Bad bad[] = {
      {"num_groups <= 0", 0, 1e-5f, 0, true, PluginFieldType::kFLOAT32, "num_groups"},
      {"missing num_groups", 32, 1e-5f, 0, false, PluginFieldType::kFLOAT32, "missing field num_groups"},
      {"negative epsilon", 32, -1.0f, 0, true, PluginFieldType::kFLOAT32, "epsilon"},
      {"epsilon of wrong type", 32, 1e-5f, 0, true, PluginFieldType::kCHAR, "epsilon must be a float"},
      {"unknown activation", 32, 1e-5f, 7, true, PluginFieldType::kFLOAT32, "activation"},
  };
  for (const Bad& b : bad) {
    Fields f;
    f.groups = b.groups;
    f.epsilon = b.epsilon;
    f.activation = b.activation;
    logger.last_error.clear();
    IPluginV3* p = creator->createPlugin("bad", f.build(b.with_groups, b.eps_type), TensorRTPhase::kBUILD);
    check(p == nullptr, std::string("refuses ") + b.what);
    check(logger.last_error.find(b.expected) != std::string::npos &&
              logger.last_error.find("FusedGroupNorm") == 0,
          std::string("logs why for ") + b.what + " (got: " + logger.last_error + ")");
    delete p;
  }

  return plugin_test::report();
}
