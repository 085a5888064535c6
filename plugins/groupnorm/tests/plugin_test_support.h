// Shared by the plugin test programs: pass/fail counting, a logger finder, and loading the
// plugin library's two exports (getCreators, setLoggerFinder) with dlopen, as TensorRT does.
#ifndef GN_DEPLOY_PLUGIN_TEST_SUPPORT_H
#define GN_DEPLOY_PLUGIN_TEST_SUPPORT_H

#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <string>

namespace plugin_test {

inline int g_failed = 0;
inline int g_passed = 0;

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

// "N passed, N failed" and the exit code.
inline int report() {
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}

class Finder : public nvinfer1::ILoggerFinder {
 public:
  explicit Finder(nvinfer1::ILogger* logger) : logger_(logger) {}
  nvinfer1::ILogger* findLogger() override { return logger_; }

 private:
  nvinfer1::ILogger* logger_;
};

// The library's creators, with finder installed as its logger finder; nullptr (and a printed
// reason) when the library cannot be loaded or lacks the exports.
inline nvinfer1::IPluginCreatorInterface* const* load_creators(const char* path, Finder* finder,
                                                               int32_t* count) {
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::printf("cannot load %s: %s\n", path, dlerror());
    return nullptr;
  }
  using GetCreators = nvinfer1::IPluginCreatorInterface* const* (*)(int32_t&);
  using SetLoggerFinder = void (*)(nvinfer1::ILoggerFinder*);
  auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
  auto set_logger_finder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
  check(get_creators != nullptr && set_logger_finder != nullptr,
        "exports getCreators, setLoggerFinder");
  if (get_creators == nullptr || set_logger_finder == nullptr) return nullptr;
  set_logger_finder(finder);
  return get_creators(*count);
}

// The first creator of the library the program's one argument names (usage printed when it is
// missing), count set to how many there are; nullptr when there is none to be had.
inline nvinfer1::IPluginCreatorV3One* first_creator(int argc, char** argv, Finder* finder,
                                                    int32_t* count) {
  if (argc != 2) {
    std::printf("usage: %s libgn_trt_plugin.so\n", argv[0]);
    return nullptr;
  }
  nvinfer1::IPluginCreatorInterface* const* creators = load_creators(argv[1], finder, count);
  if (creators == nullptr || *count < 1) return nullptr;
  return static_cast<nvinfer1::IPluginCreatorV3One*>(creators[0]);
}

}  // namespace plugin_test

#endif  // GN_DEPLOY_PLUGIN_TEST_SUPPORT_H
