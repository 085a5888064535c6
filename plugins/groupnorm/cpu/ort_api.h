// The part of ONNX Runtime's C API (onnxruntime_c_api.h, "OrtApi") that the custom-op library
// calls, declared here from the documented ABI because no package registry serves the headers.
//
// The ABI is stable by design: OrtApi is a table of function pointers that only ever grows at
// its end, and OrtApiBase::GetApi(version) returns it for any version up to the runtime's. An
// entry is therefore named by its position in the table, and the library asks for the lowest
// version holding every entry it uses (kApiVersion), so it loads into every runtime since then.
// tests/test_ort_library.py loads the library into the installed onnxruntime and into the oldest
// supported one (1.20) and runs every entry.
#ifndef GN_DEPLOY_ORT_API_H
#define GN_DEPLOY_ORT_API_H

#include <cstddef>
#include <cstdint>

extern "C" {

struct OrtStatus;
struct OrtApi;
struct OrtKernelInfo;
struct OrtKernelContext;
struct OrtValue;
struct OrtTensorTypeAndShapeInfo;
struct OrtCustomOpDomain;
struct OrtSessionOptions;

enum OrtErrorCode { ORT_OK = 0, ORT_FAIL = 1, ORT_INVALID_ARGUMENT = 2 };

// ONNXTensorElementDataType values this library meets.
enum OrtElementType { ORT_UNDEFINED = 0, ORT_FLOAT = 1, ORT_FLOAT16 = 10, ORT_BFLOAT16 = 16 };

enum OrtCharacteristic { ORT_REQUIRED = 0 };
enum OrtMemoryType { ORT_MEM_DEFAULT = 0 };

struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};

// OrtCustomOp as of its version 16 (ONNX Runtime 1.16): errors come back from CreateKernelV2 and
// KernelComputeV2 as statuses. The runtime reads no member past those at this version.
struct OrtCustomOp {
  uint32_t version;
  void* (*CreateKernel)(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info);
  const char* (*GetName)(const OrtCustomOp* op);
  const char* (*GetExecutionProviderType)(const OrtCustomOp* op);
  int32_t (*GetInputType)(const OrtCustomOp* op, size_t index);
  size_t (*GetInputTypeCount)(const OrtCustomOp* op);
  int32_t (*GetOutputType)(const OrtCustomOp* op, size_t index);
  size_t (*GetOutputTypeCount)(const OrtCustomOp* op);
  void (*KernelCompute)(void* kernel, OrtKernelContext* context);
  void (*KernelDestroy)(void* kernel);
  int32_t (*GetInputCharacteristic)(const OrtCustomOp* op, size_t index);
  int32_t (*GetOutputCharacteristic)(const OrtCustomOp* op, size_t index);
  int32_t (*GetInputMemoryType)(const OrtCustomOp* op, size_t index);
  int (*GetVariadicInputMinArity)(const OrtCustomOp* op);
  int (*GetVariadicInputHomogeneity)(const OrtCustomOp* op);
  int (*GetVariadicOutputMinArity)(const OrtCustomOp* op);
  int (*GetVariadicOutputHomogeneity)(const OrtCustomOp* op);
  OrtStatus* (*CreateKernelV2)(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info,
                               void** kernel);
  OrtStatus* (*KernelComputeV2)(void* kernel, OrtKernelContext* context);
};

}  // extern "C"

constexpr uint32_t kCustomOpVersion = 16;
// KernelContext_ParallelFor arrived in version 17 (ONNX Runtime 1.17).
constexpr uint32_t kApiVersion = 17;

namespace ort {

// Positions in the OrtApi table, with the signature of each entry used.
template <size_t Index, class Fn>
struct Entry {
  static Fn of(const OrtApi* api) { return reinterpret_cast<const Fn*>(api)[Index]; }
};

using CreateStatus = Entry<0, OrtStatus* (*)(int32_t code, const char* message)>;
using GetErrorMessage = Entry<2, const char* (*)(const OrtStatus* status)>;
using CreateCustomOpDomain = Entry<26, OrtStatus* (*)(const char* domain, OrtCustomOpDomain** out)>;
using CustomOpDomainAdd = Entry<27, OrtStatus* (*)(OrtCustomOpDomain* domain, const OrtCustomOp* op)>;
using AddCustomOpDomain = Entry<28, OrtStatus* (*)(OrtSessionOptions* options, OrtCustomOpDomain* domain)>;
using GetTensorMutableData = Entry<51, OrtStatus* (*)(OrtValue* value, void** out)>;
using GetTensorElementType = Entry<60, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, int32_t* out)>;
using GetDimensionsCount = Entry<61, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, size_t* out)>;
using GetDimensions = Entry<62, OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, int64_t* values, size_t count)>;
using GetTensorTypeAndShape = Entry<65, OrtStatus* (*)(const OrtValue* value, OrtTensorTypeAndShapeInfo** out)>;
using KernelInfoGetAttributeFloat = Entry<85, OrtStatus* (*)(const OrtKernelInfo* info, const char* name, float* out)>;
using KernelInfoGetAttributeInt64 = Entry<86, OrtStatus* (*)(const OrtKernelInfo* info, const char* name, int64_t* out)>;
using KernelInfoGetAttributeString = Entry<87, OrtStatus* (*)(const OrtKernelInfo* info, const char* name, char* out, size_t* size)>;
using KernelContextGetInputCount = Entry<88, OrtStatus* (*)(const OrtKernelContext* context, size_t* out)>;
using KernelContextGetInput = Entry<90, OrtStatus* (*)(const OrtKernelContext* context, size_t index, const OrtValue** out)>;
using KernelContextGetOutput = Entry<91, OrtStatus* (*)(OrtKernelContext* context, size_t index, const int64_t* dims, size_t count, OrtValue** out)>;
using ReleaseStatus = Entry<93, void (*)(OrtStatus* status)>;
using ReleaseTensorTypeAndShapeInfo = Entry<99, void (*)(OrtTensorTypeAndShapeInfo* info)>;
using KernelInfoGetAttributeArrayFloat = Entry<162, OrtStatus* (*)(const OrtKernelInfo* info, const char* name, float* out, size_t* size)>;
using KernelInfoGetAttributeArrayInt64 = Entry<163, OrtStatus* (*)(const OrtKernelInfo* info, const char* name, int64_t* out, size_t* size)>;
using KernelInfoGetNodeName = Entry<244, OrtStatus* (*)(const OrtKernelInfo* info, char* out, size_t* size)>;
using KernelContextParallelFor = Entry<274, OrtStatus* (*)(const OrtKernelContext* context, void (*fn)(void*, size_t), size_t total, size_t num_batch, void* data)>;

}  // namespace ort

#endif  // GN_DEPLOY_ORT_API_H
