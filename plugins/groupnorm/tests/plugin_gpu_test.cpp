// Drives libgn_trt_plugin on a GPU through TensorRT's plugin interfaces only (no libnvinfer),
// as the builder and an execution context would: create, supportsFormatCombination,
// configurePlugin, getWorkspaceSize at the profile's maximum, onShapeChange and enqueue at a
// smaller shape, in every format the plugin offers; y is checked against a float64 reference.
// Usage: plugin_gpu_test path/to/libgn_trt_plugin.so   (exit code 0 when every check holds)
#include <NvInferRuntime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "plugin_test_support.h"

using namespace nvinfer1;
using plugin_test::check;

namespace {

class Logger : public ILogger {
 public:
  void log(Severity severity, AsciiChar const* msg) noexcept override {
    if (severity <= Severity::kERROR) std::printf("plugin: %s\n", msg);
  }
};

Dims dims_of(const std::vector<int64_t>& v) {
  Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
  return d;
}

size_t element_size(DataType t) { return t == DataType::kFLOAT ? 4 : 2; }

float to_float(uint16_t bits, DataType t) {
  if (t == DataType::kHALF) return __half2float(__ushort_as_half(bits));
  return __bfloat162float(__ushort_as_bfloat16(bits));
}

uint16_t from_float(float v, DataType t) {
  if (t == DataType::kHALF) return __half_as_ushort(__float2half_rn(v));
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// Host values of x quantised to its type, written to the device buffer's bytes.
std::vector<unsigned char> encode(const std::vector<float>& v, DataType t) {
  std::vector<unsigned char> bytes(v.size() * element_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DataType::kFLOAT) {
      std::memcpy(&bytes[i * 4], &v[i], 4);
    } else {
      const uint16_t b = from_float(v[i], t);
      std::memcpy(&bytes[i * 2], &b, 2);
    }
  }
  return bytes;
}

std::vector<double> decode(const std::vector<unsigned char>& bytes, DataType t) {
  const size_t n = bytes.size() / element_size(t);
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == DataType::kFLOAT) {
      float f;
      std::memcpy(&f, &bytes[i * 4], 4);
      out[i] = f;
    } else {
      uint16_t b;
      std::memcpy(&b, &bytes[i * 2], 2);
      out[i] = to_float(b, t);
    }
  }
  return out;
}

// Float64 GN of x laid out channels-first or channels-last, SiLU when act.
std::vector<double> reference(const std::vector<double>& x, int64_t n, int64_t c, int64_t s,
                              int64_t g, bool last, const std::vector<float>& gamma,
                              const std::vector<float>& beta, float eps, bool act) {
  std::vector<double> y(x.size());
  const int64_t cg = c / g;
  auto at = [&](int64_t b, int64_t ch, int64_t p) {
    return last ? (b * s + p) * c + ch : (b * c + ch) * s + p;
  };
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t k = 0; k < g; ++k) {
      double sum = 0, sq = 0;
      for (int64_t ch = k * cg; ch < (k + 1) * cg; ++ch) {
        for (int64_t p = 0; p < s; ++p) sum += x[at(b, ch, p)];
      }
      const double mean = sum / static_cast<double>(cg * s);
      for (int64_t ch = k * cg; ch < (k + 1) * cg; ++ch) {
        for (int64_t p = 0; p < s; ++p) sq += (x[at(b, ch, p)] - mean) * (x[at(b, ch, p)] - mean);
      }
      const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(cg * s) + eps);
      for (int64_t ch = k * cg; ch < (k + 1) * cg; ++ch) {
        for (int64_t p = 0; p < s; ++p) {
          double o = (x[at(b, ch, p)] - mean) * rstd * gamma[ch] + beta[ch];
          if (act) o = o / (1.0 + std::exp(-o));
          y[at(b, ch, p)] = o;
        }
      }
    }
  }
  return y;
}

struct Case {
  const char* name;
  DataType type;
  TensorFormat format;
  std::vector<int64_t> max_dims;  // the profile's maximum
  std::vector<int64_t> run_dims;  // what arrives at enqueue
  int32_t groups;
  bool channels_last;          // x's memory layout, for the reference
  int32_t channels_last_field = 0;  // the op's channels_last attribute
};

DynamicPluginTensorDesc dynamic_desc(DataType type, TensorFormat format,
                                     const std::vector<int64_t>& run,
                                     const std::vector<int64_t>& max) {
  DynamicPluginTensorDesc d{};
  d.desc.type = type;
  d.desc.format = format;
  d.desc.dims = dims_of(run);
  d.min = dims_of(run);
  d.opt = dims_of(run);
  d.max = dims_of(max);
  return d;
}

bool cuda_ok(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) check(false, what + ": " + cudaGetErrorString(e));
  return e == cudaSuccess;
}

void run_case(IPluginCreatorV3One* creator, const Case& tc) {
  const int32_t activation = 1;
  const float epsilon = 1e-5f;
  std::vector<PluginField> list = {
      PluginField("num_groups", &tc.groups, PluginFieldType::kINT32, 1),
      PluginField("epsilon", &epsilon, PluginFieldType::kFLOAT32, 1),
      PluginField("activation", &activation, PluginFieldType::kINT32, 1),
      PluginField("channels_last", &tc.channels_last_field, PluginFieldType::kINT32, 1)};
  PluginFieldCollection fields{static_cast<int32_t>(list.size()), list.data()};
  IPluginV3* plugin = creator->createPlugin("gn", &fields, TensorRTPhase::kBUILD);
  check(plugin != nullptr, std::string(tc.name) + ": create");
  if (plugin == nullptr) return;
  auto* build =
      static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
  auto* runtime = static_cast<IPluginV3OneRuntime*>(
      plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  const int64_t c = tc.run_dims[1];
  DynamicPluginTensorDesc io[4] = {
      dynamic_desc(tc.type, tc.format, tc.run_dims, tc.max_dims),
      dynamic_desc(DataType::kFLOAT, TensorFormat::kLINEAR, {c}, {c}),
      dynamic_desc(DataType::kFLOAT, TensorFormat::kLINEAR, {c}, {c}),
      dynamic_desc(tc.type, tc.format, tc.run_dims, tc.max_dims)};
  bool supported = true;
  for (int32_t pos = 0; pos < 4; ++pos) supported &= build->supportsFormatCombination(pos, io, 3, 1);
  check(supported, std::string(tc.name) + ": format offered");
  check(build->configurePlugin(io, 3, io + 3, 1) == 0, std::string(tc.name) + ": configure");
  const size_t workspace_bytes = build->getWorkspaceSize(io, 3, io + 3, 1);

  PluginTensorDesc run[4];
  for (int i = 0; i < 4; ++i) run[i] = io[i].desc;
  check(runtime->onShapeChange(run, 3, run + 3, 1) == 0, std::string(tc.name) + ": shape change");

  int64_t n = tc.run_dims[0], s = 1;
  for (size_t i = 2; i < tc.run_dims.size(); ++i) s *= tc.run_dims[i];
  const size_t count = static_cast<size_t>(n * c * s);
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.5f, 2.0f);
  std::uniform_real_distribution<float> uniform(0.5f, 1.5f);
  std::vector<float> x(count), gamma(c), beta(c);
  for (auto& v : x) v = normal(gen);
  for (auto& v : gamma) v = uniform(gen);
  for (auto& v : beta) v = normal(gen);
  const std::vector<unsigned char> x_bytes = encode(x, tc.type);
  void *dx = nullptr, *dy = nullptr, *dg = nullptr, *db = nullptr, *dw = nullptr;
  cudaStream_t stream = nullptr;
  bool ok = cuda_ok(cudaMalloc(&dx, x_bytes.size()), "malloc") &&
            cuda_ok(cudaMalloc(&dy, x_bytes.size()), "malloc") &&
            cuda_ok(cudaMalloc(&dg, c * 4), "malloc") && cuda_ok(cudaMalloc(&db, c * 4), "malloc") &&
            cuda_ok(cudaMalloc(&dw, workspace_bytes > 0 ? workspace_bytes : 1), "malloc") &&
            cuda_ok(cudaStreamCreate(&stream), "stream") &&
            cuda_ok(cudaMemcpy(dx, x_bytes.data(), x_bytes.size(), cudaMemcpyHostToDevice), "copy") &&
            cuda_ok(cudaMemcpy(dg, gamma.data(), c * 4, cudaMemcpyHostToDevice), "copy") &&
            cuda_ok(cudaMemcpy(db, beta.data(), c * 4, cudaMemcpyHostToDevice), "copy") &&
            cuda_ok(cudaMemset(dy, 0xff, x_bytes.size()), "poison y");
  if (ok) {
    const void* inputs[3] = {dx, dg, db};
    void* outputs[1] = {dy};
    check(runtime->enqueue(run, run + 3, inputs, outputs, dw, stream) == 0,
          std::string(tc.name) + ": enqueue");
    ok = cuda_ok(cudaStreamSynchronize(stream), std::string(tc.name) + ": run");
  }
  if (ok) {
    std::vector<unsigned char> y_bytes(x_bytes.size());
    cudaMemcpy(y_bytes.data(), dy, y_bytes.size(), cudaMemcpyDeviceToHost);
    const std::vector<double> y = decode(y_bytes, tc.type);
    const std::vector<double> ref = reference(decode(x_bytes, tc.type), n, c, s, tc.groups,
                                              tc.channels_last, gamma, beta, epsilon, true);
    const double tol = tc.type == DataType::kFLOAT ? 2e-5 : tc.type == DataType::kHALF ? 2e-3 : 1e-2;
    double worst = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      const double err = std::fabs(y[i] - ref[i]) / (1.0 + std::fabs(ref[i]));
      worst = std::isfinite(y[i]) ? std::max(worst, err) : INFINITY;
    }
    check(worst <= tol, std::string(tc.name) + ": max error " + std::to_string(worst));
  }
  for (void* p : {dx, dy, dg, db, dw}) cudaFree(p);
  if (stream != nullptr) cudaStreamDestroy(stream);

  // An empty batch is a successful no-op.
  std::vector<int64_t> empty = tc.run_dims;
  empty[0] = 0;
  PluginTensorDesc none[4];
  for (int i = 0; i < 4; ++i) none[i] = run[i];
  none[0].dims = dims_of(empty);
  none[3].dims = dims_of(empty);
  const void* nothing[3] = {nullptr, nullptr, nullptr};
  void* nowhere[1] = {nullptr};
  check(runtime->onShapeChange(none, 3, none + 3, 1) == 0 &&
            runtime->enqueue(none, none + 3, nothing, nowhere, nullptr, nullptr) == 0,
        std::string(tc.name) + ": empty batch");
  delete plugin;
}

}  // namespace

int main(int argc, char** argv) {
  Logger logger;
  plugin_test::Finder finder(&logger);
  int32_t count = 0;
  IPluginCreatorV3One* creator = plugin_test::first_creator(argc, argv, &finder, &count);
  if (creator == nullptr) return 2;
  const Case cases[] = {
      {"fp32 LINEAR", DataType::kFLOAT, TensorFormat::kLINEAR, {4, 64, 24, 24}, {2, 64, 24, 24}, 8, false},
      {"fp16 LINEAR", DataType::kHALF, TensorFormat::kLINEAR, {4, 320, 32, 32}, {1, 320, 32, 32}, 32, false},
      {"bf16 LINEAR 5-D", DataType::kBF16, TensorFormat::kLINEAR, {2, 64, 4, 16, 16}, {1, 64, 4, 16, 16}, 32, false},
      {"fp16 HWC8", DataType::kHALF, TensorFormat::kHWC8, {4, 320, 32, 32}, {2, 320, 32, 32}, 32, true},
      {"bf16 HWC8", DataType::kBF16, TensorFormat::kHWC8, {2, 128, 64, 64}, {1, 128, 64, 64}, 32, true},
      {"fp16 HWC16", DataType::kHALF, TensorFormat::kHWC16, {2, 128, 48, 48}, {2, 128, 40, 40}, 32, true},
      {"fp16 DHWC8", DataType::kHALF, TensorFormat::kDHWC8, {2, 64, 4, 16, 16}, {1, 64, 4, 16, 16}, 16, true},
      {"fp32 HWC", DataType::kFLOAT, TensorFormat::kHWC, {2, 96, 20, 20}, {2, 96, 18, 20}, 24, true},
      {"fp16 HWC channels_last=1", DataType::kHALF, TensorFormat::kHWC, {2, 320, 16, 16}, {1, 320, 16, 16}, 32, true, 1},
      {"bf16 HWC C=36 channels_last=1", DataType::kBF16, TensorFormat::kHWC, {2, 36, 10, 12}, {2, 36, 10, 12}, 6, true, 1},
      {"fp32 LINEAR large groups", DataType::kFLOAT, TensorFormat::kLINEAR, {1, 8, 512, 512}, {1, 8, 512, 512}, 2, false},
  };
  for (const Case& tc : cases) run_case(creator, tc);
  return plugin_test::report();
}
