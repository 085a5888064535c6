# gn-deploy: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := build/demo
# torch is pinned here, in the set-up only: 2.13.0 is the CPU wheel this workplace serves.
TORCH_PIN ?= torch==2.13.0
# The oldest ONNX Runtime gn-deploy's op library supports: the tests load the library into it.
ORT_OLDEST ?= .venv-ort-oldest
ORT_OLDEST_PIN ?= onnxruntime==1.20.1

.PHONY: demo test kernels plugin test-trt-lean test-trt-rtx bench-fuse bench-kernels clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e '.[torch,dev,trt-rtx]'
	touch $@

$(ORT_OLDEST)/.installed:
	$(PYTHON) -m venv $(ORT_OLDEST)
	$(ORT_OLDEST)/bin/python -m pip install -q "$(ORT_OLDEST_PIN)"
	touch $@

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(BIN)/gn-deploy export --model gn_deploy.models:demo_unet --input x:1x4x32x32 \
		--dynamic x:0=batch -o $(DEMO)/demo.onnx
	$(BIN)/gn-deploy fuse $(DEMO)/demo.onnx -o $(DEMO)/demo.fused.onnx --target onnx \
		--report $(DEMO)/fuse-onnx.json
	$(BIN)/gn-deploy fuse $(DEMO)/demo.onnx -o $(DEMO)/demo.op.onnx --target fused-op \
		--report $(DEMO)/fuse-op.json
	$(BIN)/gn-deploy validate --model gn_deploy.models:demo_unet --input x:2x4x32x32 \
		$(DEMO)/demo.onnx $(DEMO)/demo.fused.onnx $(DEMO)/demo.op.onnx
	$(BIN)/gn-deploy build $(DEMO)/demo.fused.onnx -o $(DEMO)/demo.rtx.engine \
		--runtime tensorrt-rtx --compute-capability 8.6,12.0 \
		--shapes x:1x4x32x32,2x4x32x32,4x4x32x32 --precision fp16 --report $(DEMO)/build.json

# The CUDA kernel library; skipped with a message where nvcc is missing.
kernels:
	@if command -v nvcc >/dev/null 2>&1; then \
		cmake -S plugins/groupnorm -B build/groupnorm -DCMAKE_BUILD_TYPE=Release >/dev/null && \
		cmake --build build/groupnorm -j2; \
	else echo "nvcc not found: skipping the CUDA kernels (their tests will skip)"; fi

# The TensorRT plugin library needs TensorRT's headers (no registry has them): point at the
# include/ folder of a TensorRT install or of a NVIDIA/TensorRT checkout.
TENSORRT_INCLUDE_DIR ?=
plugin:
	@test -n "$(TENSORRT_INCLUDE_DIR)" || { echo "usage: make plugin TENSORRT_INCLUDE_DIR=/path/to/TensorRT/include"; exit 2; }
	cmake -S plugins/groupnorm -B build/groupnorm-trt -DCMAKE_BUILD_TYPE=Release \
		-DTensorRT_INCLUDE_DIR=$(abspath $(TENSORRT_INCLUDE_DIR)) >/dev/null
	cmake --build build/groupnorm-trt -j2

# The plugin in TensorRT 11's lean runtime from PyPI (loads plugins on a CPU machine).
test-trt-lean: $(STAMP) plugin
	$(BIN)/python -m pip install -q tensorrt-lean-cu13-libs tensorrt-lean-cu13-bindings
	$(BIN)/python -m pytest -rs tests/test_trt_lean.py tests/test_plugin_support.py

# The plugin inside TensorRT-RTX's real builder (engines built ahead of time on this CPU).
test-trt-rtx: $(STAMP) plugin
	$(BIN)/python -m pytest -rs tests/test_trt_rtx_plugin.py tests/test_trt_rtx_build.py

test: $(STAMP) kernels $(ORT_OLDEST)/.installed
	$(BIN)/ruff check gn_deploy tests scripts
	GN_DEPLOY_ORT_OLDEST_PYTHON=$(ORT_OLDEST)/bin/python $(BIN)/python -m pytest

bench-fuse: $(STAMP)
	$(BIN)/gn-deploy bench fuse --repeat 9 -o docs/benchmarks/fuse.md

bench-kernels: $(STAMP) kernels
	$(BIN)/gn-deploy bench kernels -o docs/benchmarks/kernels.md

clean:
	rm -rf $(VENV) $(ORT_OLDEST) build
