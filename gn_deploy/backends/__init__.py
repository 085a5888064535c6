"""Execution backends: ONNX Runtime, torch, TensorRT."""
