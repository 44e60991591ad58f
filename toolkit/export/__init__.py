"""Producers: code that writes model files (ONNX, quantized ONNX, TensorRT engines)."""
